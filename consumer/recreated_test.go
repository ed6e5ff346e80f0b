package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/snapshot"
)

// TestRecreatedTopicForgetsTheWatermark: the store holds a watermark of an
// events topic since deleted and created again. The first owner finds it
// past the partition's end and replays from the start; the store forgets
// that watermark, so a later owner, once the new topic has grown past it,
// does not trust it: it replays from the watermark the first owner wrote,
// and its state is the fold of the log.
func TestRecreatedTopicForgetsTheWatermark(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	route, state := testRoute(t, kafkatest.Name(t))
	cl := eventsTopic(t, ctx, brokers, route, 1)
	produce := func(id ulid.ULID, version int64, e any) {
		if err := cl.ProduceSync(ctx, eventRecord(t, route, 0, id, version, e)).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// The old topic's watermark, 5, left in the store.
	store := snapshot.NewMemory()
	sp := snapshot.Partition{Topic: route.EventsTopic, ID: 0}
	old, err := store.Claim(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, sp, old.Token, nil, 5); err != nil {
		t.Fatal(err)
	}
	y, z := ulid.Make(), ulid.Make()
	produce(y, 1, bank.AccountOpened{Owner: "y"})
	produce(y, 2, bank.MoneyDeposited{Amount: 1})
	produce(y, 3, bank.MoneyDeposited{Amount: 1})

	cfg := Config{ClientOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Store: store}
	first := testProcessor(route, state, cfg)
	part := first.partitionOf(route.CommandsTopic, 0)
	if errs := first.restore(ctx, []*partition{part}); len(errs) > 0 {
		t.Fatal(errs)
	}
	first.flushAll(ctx) // y at version 3, the watermark at 3
	// Events the first owner committed and never flushed before it lost
	// the partition.
	produce(y, 4, bank.MoneyDeposited{Amount: 1})
	produce(y, 5, bank.MoneyDeposited{Amount: 1})
	produce(z, 1, bank.AccountOpened{Owner: "z"})
	produce(z, 2, bank.MoneyDeposited{Amount: 1})

	second := testProcessor(route, state, cfg)
	part = second.partitionOf(route.CommandsTopic, 0)
	if errs := second.restore(ctx, []*partition{part}); len(errs) > 0 {
		t.Fatal(errs)
	}
	if part.entries[y] == nil && !second.load(ctx, part, []ulid.ULID{y}) {
		t.Fatal("loading y failed")
	}
	e := part.entries[y]
	if e == nil || e.inst.Version != 5 || e.inst.State.(*bank.Account).Balance != 4 {
		var got any
		if e != nil {
			got = e.inst
		}
		t.Fatalf("y as the second owner sees it: %+v; the fold of its events is version 5, balance 4", got)
	}
}
