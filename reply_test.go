package interlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
)

type fanState struct{ N int64 }

type fanOut struct {
	interlock.Command
	Count int `avro:"count"`
}

type fanned struct {
	I int64 `avro:"i"`
}

// TestReplyOfManyEvents: a command whose events are too many for their
// positions to fit in one reply (about 15 000) still gets its reply: with
// the last position of each partition, which is what waiting for a
// projection needs. So does its retry. Before, the reply was dropped and
// Dispatch waited for ever.
func TestReplyOfManyEvents(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	fan := aggregate.Define[fanState]("fan",
		aggregate.Handle(func(a *aggregate.Root[fanState], c fanOut) error {
			for i := range c.Count {
				a.Emit(fanned{I: int64(i)})
			}
			return nil
		}),
		aggregate.Apply(func(s *fanState, e fanned) { s.N++ }))
	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
		interlock.WithLogger(testLogger())).RegisterAggregate(fan))
	id, cmdID := interlock.NewID(), interlock.NewID()
	const n = 40_000
	cmd := fanOut{Command: interlock.To(id).WithID(cmdID), Count: n}
	for _, attempt := range []string{"first", "retry"} {
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		res, err := interlock.Dispatch(dctx, app, cmd)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", attempt, err)
		}
		if res.Version != n || len(res.Positions) != 1 || res.Positions[0].Offset != n-1 {
			t.Fatalf("%s: version %d, positions %v; want version %d and the last event's position, offset %d", attempt, res.Version, res.Positions, n, n-1)
		}
	}
}

// TestRetryPastItsDeadlineGetsTheOutcome (invariant 3): a retry of an
// applied command that reaches the processor after its deadline gets the
// first outcome, not a rejection for its deadline: the command was applied.
func TestRetryPastItsDeadlineGetsTheOutcome(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	gateway := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch))
	processor := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleProcess))
	open := bank.OpenAccount{Command: interlock.To(interlock.NewID()).WithID(interlock.NewID()), Owner: "ada"}
	if _, err := interlock.Dispatch(ctx, gateway, open); err != nil {
		t.Fatal(err)
	}
	if err := processor.Close(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := interlock.Dispatch(short, gateway, open); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("retry with no processor running: %v, want a deadline error", err)
	}
	for len(kafkatest.ReadAll(t, brokers, name+".bank-account.commands")) < 2 {
		time.Sleep(20 * time.Millisecond)
	}
	again := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleProcess))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := again.Stats()
		if st.Duplicates+st.CommandsRejected > 0 {
			if st.Duplicates != 1 || st.CommandsRejected != 0 {
				t.Fatalf("stats %+v: the retry past its deadline was rejected; want it answered as the duplicate it is", st)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the retry was not handled in 30 s")
		}
	}
}
