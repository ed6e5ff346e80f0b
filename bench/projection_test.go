package bench

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/services"
)

// TestProjectionPhase: the projection phase reads every event of an app's
// events topic through both projectors and reports their rates.
func TestProjectionPhase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	b := &bencher{cfg: benchConfig{partitions: 3, timeout: 30 * time.Second}, work: bankWorkload(), brokers: brokers,
		progress: io.Discard, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(b.log)).RegisterAggregate(bank.Accounts()).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	events := int64(0)
	for range 5 {
		id := interlock.NewID()
		if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			if _, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1}); err != nil {
				t.Fatal(err)
			}
		}
		events += 5
	}
	if err := app.Close(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := b.projectionPhase(ctx, name, events, services.Lookup(t, services.EnvPostgres, "PostgreSQL"))
	if err != nil {
		t.Fatal(err)
	}
	for what, r := range map[string]throughput{"kafka_to_kafka": res.KafkaToKafka, "postgres": res.Postgres} {
		if r.Records != events || r.Seconds <= 0 || r.PerSec <= 0 {
			t.Errorf("%s: %+v", what, r)
		}
	}
	if n := len(kafkatest.ReadAll(t, brokers, name+".export")); n != int(events) {
		t.Errorf("%d records exported, want %d", n, events)
	}
}
