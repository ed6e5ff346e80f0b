package interlock_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/schema/registrytest"
)

// flakyRegistry is a schema registry whose schema look-ups by ID fail
// while down is set.
type flakyRegistry struct {
	*registrytest.Memory
	down atomic.Bool
}

var errRegistryDown = errors.New("registry: connection refused")

func (r *flakyRegistry) SchemaByID(ctx context.Context, id uint32) (string, error) {
	if r.down.Load() {
		return "", errRegistryDown
	}
	return r.Memory.SchemaByID(ctx, id)
}

type tally struct{ Total int64 }

type tallied struct {
	Amount int64 `avro:"amount"`
}

// TestSentCommandWaitsForTheRegistry (invariant 7): a command written
// with a schema its processor does not know yet (by a newer version of a
// service, mid-rollout) while the schema registry does not answer is not
// the record's fault, and a command sent with Send has no caller to try
// it again: its batch is given back until the registry answers, then the
// command is applied, once. It used to be failed, and lost.
func TestSentCommandWaitsForTheRegistry(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	reg := &flakyRegistry{Memory: registrytest.NewMemory()}
	build := func(typ aggregate.Type, roles interlock.Role) *interlock.App {
		return startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
			interlock.WithRoles(roles), interlock.WithSchemaRegistry(reg), interlock.WithLogger(testLogger()),
			interlock.WithSessionTimeout(10*time.Second), interlock.WithTransactionTimeout(5*time.Second)).RegisterAggregate(typ))
	}
	apply := aggregate.Apply(func(s *tally, e tallied) { s.Total += e.Amount })

	// The processor runs the first version of the command.
	type Tally struct {
		interlock.Command
		Amount int64 `avro:"amount"`
	}
	processor := build(aggregate.Define[tally]("tally",
		aggregate.Handle(func(a *aggregate.Root[tally], c Tally) error { a.Emit(tallied{Amount: c.Amount}); return nil }), apply),
		interlock.RoleProcess|interlock.RoleDispatch)

	// A newer sender, registering the command's second version, sends a
	// command; the registry goes down before the processor meets it.
	func() {
		type Tally struct {
			interlock.Command
			Amount int64   `avro:"amount"`
			Memo   *string `avro:"memo"`
		}
		app := build(aggregate.Define[tally]("tally",
			aggregate.Handle(func(a *aggregate.Root[tally], c Tally) error { a.Emit(tallied{Amount: c.Amount}); return nil }), apply),
			interlock.RoleDispatch)
		reg.down.Store(true)
		memo := "from v2"
		if _, err := interlock.Send(ctx, app, Tally{Command: interlock.To(interlock.NewID()), Amount: 7, Memo: &memo}); err != nil {
			t.Fatal(err)
		}
	}()

	// The processor meets the command, and the registry down, and gives
	// the batch back, twice.
	for deadline := time.Now().Add(30 * time.Second); processor.Stats().BatchesGivenBack < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the processor gave no batch back: %+v", processor.Stats())
		}
	}
	if st := processor.Stats(); st.CommandsApplied != 0 || st.CommandsFailed != 0 || st.CommandsRejected != 0 {
		t.Fatalf("while the registry is down: %+v; want the command neither applied nor failed", st)
	}
	reg.down.Store(false)
	for deadline := time.Now().Add(30 * time.Second); processor.Stats().CommandsApplied == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the command was not applied once the registry answered: %+v", processor.Stats())
		}
	}
	if st := processor.Stats(); st.CommandsApplied != 1 || st.CommandsFailed != 0 {
		t.Fatalf("after the outage: %+v; want the command applied once", st)
	}
}
