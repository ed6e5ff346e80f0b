package redisview_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/projections/redisview"
	"github.com/interlock-go/interlock/projections/sinktest"
)

func TestConformance(t *testing.T) {
	var client *redis.Client
	var prefix string
	version := int64(0)
	sinktest.Run(t, sinktest.Config[*redisview.Batch]{
		New: func(t *testing.T) projections.Sink[*redisview.Batch] {
			client, prefix = redistest.Client(t)
			return redisview.NewSink(client, prefix)
		},
		Put: func(ctx context.Context, b *redisview.Batch, k string, v int) error {
			version++
			b.UpdateKey(k, version).Set("v", v)
			return nil
		},
		Get: func(ctx context.Context, k string) (int, bool, error) {
			s, err := client.HGet(ctx, prefix+":"+k, "v").Result()
			if errors.Is(err, redis.Nil) {
				return 0, false, nil
			}
			if err != nil {
				return 0, false, err
			}
			v, err := strconv.Atoi(s)
			return v, true, err
		},
	})
}

// TestIdempotent: events applied again (a redelivery after a crash) change
// nothing; a later event still applies; and the guard survives Redis
// forgetting its scripts.
func TestIdempotent(t *testing.T) {
	client, prefix := redistest.Client(t)
	sink := redisview.NewSink(client, prefix)
	ctx := context.Background()
	id := ulid.Make()
	ev := func(v int64) aggregate.EventEnvelope { return aggregate.EventEnvelope{AggregateID: id, Version: v} }
	apply := func(from, to int64) {
		t.Helper()
		err := sink.Apply(ctx, "view", nil, func(ctx context.Context, b *redisview.Batch) error {
			for v := from; v <= to; v++ {
				b.Update(ev(v)).Incr("balance", 10).Set("last", v)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(balance, last int64) {
		t.Helper()
		got, err := client.HGetAll(ctx, sink.Key(id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got["balance"] != strconv.FormatInt(balance, 10) || got["last"] != strconv.FormatInt(last, 10) || got[redisview.VersionField] != strconv.FormatInt(last, 10) {
			t.Fatalf("hash %v, want balance %d at version %d", got, balance, last)
		}
	}
	apply(1, 3)
	check(30, 3)
	apply(2, 3) // redelivered
	check(30, 3)
	apply(1, 4) // redelivered, and one new
	check(40, 4)
	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	apply(5, 5)
	check(50, 5)
	boom := errors.New("handler failed")
	err := sink.Apply(ctx, "view", nil, func(ctx context.Context, b *redisview.Batch) error {
		b.Update(ev(6)).Incr("balance", 10)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	check(50, 5)
}
