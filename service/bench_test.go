package service_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/bench"
	"github.com/interlock-go/interlock/internal/benchtest"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/service"
)

// A user's domain, not the bank: a tally whose Count command emits two
// events and returns the new total.
type Tally struct {
	Label string `avro:"label"`
	Total int64  `avro:"total"`
}

type OpenTally struct {
	interlock.Command
	Label string `avro:"label"`
}

type Count struct {
	interlock.CommandOf[Total]
	By int64 `avro:"by"`
}

type Total struct {
	Total int64 `avro:"total" json:"total"`
}

type TallyOpened struct {
	Label string `avro:"label"`
}

type Counted struct {
	By int64 `avro:"by"`
}

type TotalReached struct {
	Total int64 `avro:"total"`
}

func tallies() *aggregate.Definition[Tally] {
	return aggregate.Define[Tally]("tally",
		aggregate.Handle(func(a *aggregate.Root[Tally], c OpenTally) error {
			if a.Version() > 0 {
				return errors.New("already open")
			}
			a.Emit(TallyOpened{Label: c.Label})
			return nil
		}),
		aggregate.HandleResult(func(a *aggregate.Root[Tally], c Count) (Total, error) {
			if a.Version() == 0 {
				return Total{}, errors.New("not open")
			}
			a.Emit(Counted{By: c.By})
			a.Emit(TotalReached{Total: a.State().Total})
			return Total{Total: a.State().Total}, nil
		}),
		aggregate.Apply(func(s *Tally, e TallyOpened) { s.Label = e.Label }),
		aggregate.Apply(func(s *Tally, e Counted) { s.Total += e.By }),
		aggregate.Apply(func(*Tally, TotalReached) {}),
	)
}

// tallyBench is the user's workload: each tally opened, then counted by 1,
// and every event exported to another topic.
func tallyBench() bench.Workload {
	return bench.Workload{
		Aggregate: tallies(),
		Setup: func(id ulid.ULID, i int) any {
			return OpenTally{Command: interlock.To(id), Label: fmt.Sprint("tally-", i)}
		},
		Command: func(id ulid.ULID) any { return Count{CommandOf: interlock.ToResult[Total](id), By: 1} },
		Export: func(topic string) projections.Runner {
			p := projections.New("tally-export", projections.Kafka())
			projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[Counted]) error {
				out.Produce(&kgo.Record{Topic: topic, Key: []byte(e.AggregateID.String()), Value: fmt.Appendf(nil, "%d", e.Data.By)})
				return nil
			})
			return p
		},
	}
}

// tallyBuild is the user's application.
func tallyBuild(ctx context.Context, cfg *service.Config) (*interlock.Builder, error) {
	return interlock.NewBuilder(cfg.Options()...).RegisterAggregate(tallies()), nil
}

// TestBenchOfAUserBinary: a binary of the user's domain built with
// WithBench runs bench, on tiny counts, and prints every field of the
// report, measured on its own aggregate.
func TestBenchOfAUserBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"bench", "--quick", "--json",
		"--partitions", "2", "--aggregates", "20", "--commands", "200", "--restore-events", "400",
		"--senders", "8", "--dispatchers", "4", "--probe", "300ms", "--sync-duration", "300ms",
		"--cache", "1000", "--timeout", "30s"}
	if kafkatest.Real() {
		args = append(args, "--brokers", strings.Join(kafkatest.Brokers(t), ","))
	}
	var out, progress bytes.Buffer
	if err := service.Run(ctx, args, &out, &progress, tallyBuild, service.WithBench(tallyBench())); err != nil {
		t.Fatalf("bench: %v\nprogress:\n%s", err, progress.String())
	}
	r := benchtest.Check(t, out.Bytes(), benchtest.Measured{KafkaProjection: true})
	benchtest.CheckProgress(t, progress.String())
	if r.Num("partitions") != 2 || r.Num("commands_async.commands") != 200 || r.Num("commands_async.accounts") != 20 || r.Num("memory.cache_max_aggregates") != 1000 {
		t.Errorf("the report does not echo the flags:\n%s", out.String())
	}
	if got := r.Num("raw_consume.records"); got != 400 {
		t.Errorf("raw_consume read %v records, want the 400 written", got)
	}
	if !strings.Contains(progress.String(), "over 20 aggregates") || !strings.Contains(r["app"].(string), "bench-") {
		t.Errorf("progress does not show the run:\n%s", progress.String())
	}
}

// TestBenchWithoutWorkload: a binary built without WithBench lists bench,
// and running it fails with an error that names the option to add.
func TestBenchWithoutWorkload(t *testing.T) {
	var out, errs bytes.Buffer
	if err := service.Run(context.Background(), []string{"-h"}, &out, &errs, tallyBuild); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\n  bench ") {
		t.Errorf("the usage does not list bench:\n%s", out.String())
	}
	err := service.Run(context.Background(), []string{"bench", "--quick"}, &out, &errs, tallyBuild, service.WithProgram("tallies"))
	if err == nil || !strings.Contains(err.Error(), "service.WithBench") || !strings.Contains(err.Error(), "tallies") {
		t.Fatalf("bench without a workload: %v, want an error naming service.WithBench", err)
	}
	err = service.Run(context.Background(), []string{"bench"}, &out, &errs, tallyBuild, service.WithBench(bench.Workload{Aggregate: tallies()}))
	if !errors.Is(err, bench.ErrNoWorkload) {
		t.Errorf("bench with a workload without commands: %v, want ErrNoWorkload", err)
	}
	// A command of the binary's own named bench replaces the standard one.
	ran := false
	err = service.Run(context.Background(), []string{"bench"}, &out, &errs, tallyBuild,
		service.WithCommand("bench", "mine", func(context.Context, []string, io.Writer, io.Writer) error { ran = true; return nil }))
	if err != nil || !ran {
		t.Errorf("a bench command of the binary's own: ran %v, err %v", ran, err)
	}
}
