package consumer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/snapshot"
)

// TestIdleRestoreRetried: a partition no command reached whose restore
// failed (here its events topic did not exist yet) is restored again
// within a second of the failure, not at the next flush interval (an hour
// here), so the processor gets ready as soon as it can.
func TestIdleRestoreRetried(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	route, state := testRoute(t, name)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, topic := range []string{route.CommandsTopic, name + ".replies"} {
		if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	p, err := New(ctx, Config{
		ClientOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Group: name + ".processors", TransactionalID: name + ".processor",
		RepliesTopic: name + ".replies", Aggregates: []Aggregate{{Route: route, State: state, Fingerprint: 1, Snapshots: snapshot.Never()}},
		FlushInterval: time.Hour, SessionTimeout: 6 * time.Second, TransactionTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.WithoutCancel(ctx))

	waitFor := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %v (stats %+v)", what, d, p.Stats())
			}
		}
	}
	waitFor("a first restore that fails", 30*time.Second, func() bool { return p.Stats().Restores > 0 })
	if p.Ready() {
		t.Fatal("ready without an events topic")
	}
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, route.EventsTopic); err != nil {
		t.Fatal(err)
	}
	waitFor("ready once the events topic exists", 15*time.Second, p.Ready)
}
