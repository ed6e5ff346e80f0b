package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
)

// bankWorkload is the bank example's workload, as cmd/interlock has it.
func bankWorkload() Workload {
	return Workload{
		Aggregate: bank.Accounts(),
		Setup: func(id ulid.ULID, i int) any {
			return bank.OpenAccount{Command: interlock.To(id), Owner: fmt.Sprintf("owner-%d", i)}
		},
		Command: func(id ulid.ULID) any {
			return bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1}
		},
		Export:    func(topic string) projections.Runner { return bank.Export("bench-export", topic) },
		ReadModel: func(pool *pgxpool.Pool) projections.Runner { return bank.Balances("bench-balances", pool) },
	}
}

// TestStreamIsWhatTheProcessorWrites: the events raw_txn_produce writes
// for a workload are those a processor writes for the same commands: the
// same values, the same headers in the same order, with the same values
// but for the IDs and the time, which are new for every event.
func TestStreamIsWhatTheProcessorWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := bankWorkload()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1)).
		RegisterAggregate(w.Aggregate).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.WithoutCancel(ctx))
	id := interlock.NewID()
	for i, cmd := range []any{w.Setup(id, 0), w.Command(id), w.Command(id)} {
		if _, err := interlock.DispatchValue(ctx, app, cmd); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	topic := name + "." + w.Aggregate.Name() + ".events"
	written := kafkatest.ReadAll(t, brokers, topic)

	s, err := newEventStream(w, topic, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.ids[0], s.insts[0] = id, w.Aggregate.New(id)
	fresh := []string{producer.HeaderEventID, producer.HeaderCommandID, producer.HeaderCorrelationID, producer.HeaderCausationID, producer.HeaderTime}
	if len(written) != 3 {
		t.Fatalf("the processor wrote %d events, want 3", len(written))
	}
	for i, want := range written {
		got, err := s.record(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got.Topic != want.Topic || got.Partition != want.Partition || !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value) {
			t.Errorf("event %d: %s/%d key %q value %x, want %s/%d key %q value %x", i, got.Topic, got.Partition, got.Key, got.Value, want.Topic, want.Partition, want.Key, want.Value)
		}
		if len(got.Headers) != len(want.Headers) {
			t.Errorf("event %d: headers %v, want %v", i, got.Headers, want.Headers)
			continue
		}
		for j, h := range want.Headers {
			g := got.Headers[j]
			if g.Key != h.Key || !slices.Contains(fresh, h.Key) && !bytes.Equal(g.Value, h.Value) {
				t.Errorf("event %d: header %d is %s=%q, want %s=%q", i, j, g.Key, g.Value, h.Key, h.Value)
			}
		}
	}
}

// TestRunNeedsAWorkload: Run refuses a workload without its commands
// before it starts anything.
func TestRunNeedsAWorkload(t *testing.T) {
	for _, w := range []Workload{{}, {Aggregate: bank.Accounts()}, {Aggregate: bank.Accounts(), Setup: bankWorkload().Setup}} {
		if err := Run(context.Background(), w, []string{"--quick"}, io.Discard, io.Discard); !errors.Is(err, ErrNoWorkload) {
			t.Errorf("Run(%+v) = %v, want ErrNoWorkload", w, err)
		}
	}
}

// TestBenchTable checks that the table names every phase and target.
func TestBenchTable(t *testing.T) {
	var out bytes.Buffer
	r := &benchReport{Broker: "b", App: "a", Partitions: 6}
	if err := printBench(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"raw_txn_produce", "raw_consume", "commands_async", "commands_sync max", "restore_full", "restore_watermark", "memory: peak heap", "commands_async / raw_txn_produce", "restore_full / raw_consume", "sync p99",
		"projection kafka_to_kafka", "cpu of this process", "not measured (the workload has no Export)", "not measured (no --postgres, or the workload has no ReadModel)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	// Measured projectors print their rates.
	out.Reset()
	r.Projection = projectionResult{KafkaToKafka: throughput{Records: 600, Seconds: 2, PerSec: 300}, Postgres: throughput{Records: 600, Seconds: 3, PerSec: 200}}
	if err := printBench(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"300 events/s", "200 events/s"} {
		if !strings.Contains(out.String(), want) || strings.Contains(out.String(), "not measured") {
			t.Errorf("table with both projectors measured lacks %q or says not measured:\n%s", want, out.String())
		}
	}
}

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--partitions", "0"}, "--partitions 0"},
		{[]string{"--accounts", "2", "--partitions", "6"}, "need at least one per partition"},
		{[]string{"--aggregates", "2", "--partitions", "6"}, "--aggregates 2: need at least one per partition"},
		{[]string{"--restore-events", "10", "--accounts", "100"}, "need at least two per aggregate"},
		{[]string{"--batch", "-1"}, "--batch -1"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		if _, err := parseBench(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseBench(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	c, err := parseBench([]string{"--quick", "--commands", "7"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.commands != 7 || c.restoreEvents != 50_000 || c.syncDuration != 3*time.Second || c.aggregates != 500 {
		t.Errorf("--quick with --commands 7: %+v, want the explicit count kept and the others quick", c)
	}
	// --accounts is --aggregates, and wins over --quick as it does.
	for _, flag := range []string{"--accounts", "--aggregates"} {
		c, err := parseBench([]string{"--quick", flag, "40"}, io.Discard)
		if err != nil || c.aggregates != 40 {
			t.Errorf("--quick %s 40: %d aggregates, %v; want 40", flag, c.aggregates, err)
		}
	}
	if _, err := parseBench([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}
