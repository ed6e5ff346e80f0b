package interlock_test

import (
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/kafkatest"
)

type clock struct{ At time.Time }

type Stamp struct{ interlock.Command }

type ReadClock struct{ interlock.CommandOf[time.Time] }

type Stamped struct{ At time.Time }

func clocks() *aggregate.Definition[clock] {
	return aggregate.Define[clock]("clock",
		aggregate.Handle(func(a *aggregate.Root[clock], c Stamp) error {
			a.Emit(Stamped{At: time.Now()}) // nanoseconds, local zone
			return nil
		}),
		aggregate.HandleResult(func(a *aggregate.Root[clock], c ReadClock) (time.Time, error) {
			return a.State().At, nil
		}),
		aggregate.Apply(func(s *clock, e Stamped) { s.At = e.At }),
	)
}

// TestStateIsTheFoldOfTheLog (invariant 4): an event whose encoding drops
// detail (Avro keeps microseconds) leaves the processor with the state a
// replay of the log builds, not the handler's more precise one.
func TestStateIsTheFoldOfTheLog(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	build := func() *interlock.App {
		return launch(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithLogger(testLogger())).
			RegisterAggregate(clocks()))
	}
	id := interlock.NewID()
	first := build()
	if _, err := interlock.Dispatch(ctx, first, Stamp{Command: interlock.To(id)}); err != nil {
		t.Fatal(err)
	}
	before, err := interlock.Dispatch(ctx, first, ReadClock{interlock.ToResult[time.Time](id)})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second := build()
	defer second.Close(ctx)
	after, err := interlock.Dispatch(ctx, second, ReadClock{interlock.ToResult[time.Time](id)})
	if err != nil {
		t.Fatal(err)
	}
	if !before.Value.Equal(after.Value) {
		t.Fatalf("state before restart %v, after replay %v: the processor must hold the fold of the log", before.Value, after.Value)
	}
	if after.Value.IsZero() {
		t.Fatal("the replayed state has no time")
	}
}
