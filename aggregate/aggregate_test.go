package aggregate_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
)

type cart struct {
	Items map[string]int
	Log   []string
	Last  *string
}

type add struct {
	aggregate.Command
	Item string
}

type added struct{ Item string }

type ghost struct{}

type boom struct{ aggregate.Command }

type haunt struct{ aggregate.Command }

func carts() *aggregate.Definition[cart] {
	return aggregate.Define[cart]("cart",
		aggregate.Handle(func(a *aggregate.Root[cart], c add) error {
			a.Emit(added{Item: c.Item})
			if c.Item == "forbidden" {
				return errors.New("forbidden item")
			}
			return nil
		}),
		aggregate.Handle(func(a *aggregate.Root[cart], c boom) error { panic("kaboom") }),
		aggregate.Handle(func(a *aggregate.Root[cart], c haunt) error {
			a.Emit(ghost{})
			return nil
		}),
		aggregate.Apply(func(s *cart, e added) {
			if s.Items == nil {
				s.Items = map[string]int{}
			}
			s.Items[e.Item]++
			s.Log = append(s.Log, e.Item)
			s.Last = &e.Item
		}),
	)
}

func TestCloneIsDeep(t *testing.T) {
	d := carts()
	inst := d.New(ulid.Make())
	if err := d.Apply(inst, added{Item: "apple"}); err != nil {
		t.Fatal(err)
	}
	c := d.Clone(inst)
	if _, err := d.Execute(c, add{Command: aggregate.To(inst.ID), Item: "pear"}); err != nil {
		t.Fatal(err)
	}
	orig := inst.State.(*cart)
	if len(orig.Items) != 1 || len(orig.Log) != 1 || *orig.Last != "apple" || inst.Version != 1 {
		t.Fatalf("executing on a clone changed the original: %+v version %d", orig, inst.Version)
	}
	if got := c.State.(*cart); got.Items["pear"] != 1 || c.Version != 2 {
		t.Fatalf("clone after execute: %+v version %d", got, c.Version)
	}
}

func TestExecuteOutcomes(t *testing.T) {
	d := carts()
	id := ulid.Make()
	tests := []struct {
		name     string
		cmd      any
		rejected bool
		want     string
	}{
		{"handler error after emit", add{Command: aggregate.To(id), Item: "forbidden"}, true, "forbidden item"},
		{"version conflict", add{Command: aggregate.To(id).Expect(3), Item: "x"}, true, "expected version 3, aggregate is at 0"},
		{"panic", boom{Command: aggregate.To(id)}, false, "panicked: kaboom"},
		{"event without applier", haunt{Command: aggregate.To(id)}, false, "has no applier"},
		{"unknown command", struct{ aggregate.Command }{}, true, "does not handle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Execute(d.New(id), tt.cmd)
			var rej *aggregate.RejectedError
			if err == nil || errors.As(err, &rej) != tt.rejected || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want rejected=%v containing %q", err, tt.rejected, tt.want)
			}
		})
	}
	_, err := d.Execute(d.New(id), add{Command: aggregate.To(id).Expect(1), Item: "x"})
	if !errors.Is(err, aggregate.ErrConcurrency) || !errors.Is(err, aggregate.ErrRejected) {
		t.Fatalf("conflict must match ErrConcurrency and ErrRejected: %v", err)
	}
	sentinel := errors.New("sentinel")
	if err := aggregate.Reject(sentinel); !errors.Is(err, sentinel) {
		t.Fatalf("a rejection keeps the handler's error in-process: %v", err)
	}
}

func TestValidate(t *testing.T) {
	type ptrCmd struct {
		*aggregate.Command
	}
	tests := []struct {
		name string
		def  aggregate.Type
		want string
	}{
		{"no handler", aggregate.Define[cart]("empty"), "handles no command"},
		{"state not struct", aggregate.Define[int]("n", aggregate.Handle(func(*aggregate.Root[int], add) error { return nil })), "must be a struct"},
		{"pointer envelope", aggregate.Define[cart]("p", aggregate.Handle(func(*aggregate.Root[cart], ptrCmd) error { return nil })), "by pointer"},
		{"bad name", aggregate.Define[cart]("9lives", aggregate.Handle(func(*aggregate.Root[cart], add) error { return nil })), "lowercase"},
		{"declared event without applier", aggregate.Define[cart]("c", aggregate.Handle(func(*aggregate.Root[cart], add) error { return nil }),
			aggregate.Emits[cart, ghost]()), "event aggregate_test.ghost has no applier"},
		{"nil declared error", aggregate.Define[cart]("c", aggregate.Handle(func(*aggregate.Root[cart], add) error { return nil }),
			aggregate.Errors[cart](nil)), "a nil error"},
		{"two declared errors, one message", aggregate.Define[cart]("c", aggregate.Handle(func(*aggregate.Root[cart], add) error { return nil }),
			aggregate.Errors[cart](errors.New("full"), errors.New("full"))), `two errors say "full"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.def.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
	if err := carts().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestPrepare(t *testing.T) {
	c := add{Command: aggregate.To(ulid.Make())}
	if err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	if c.CommandID == (ulid.ULID{}) || c.CorrelationID != c.CommandID.String() {
		t.Fatalf("Prepare did not fill the defaults: %+v", c.Command)
	}
	var none add
	if err := none.Prepare(); !errors.Is(err, aggregate.ErrMissingID) {
		t.Fatalf("no aggregate ID: %v", err)
	}
	env, ok := aggregate.EnvelopeOf(c)
	if !ok || env.CommandID != c.CommandID {
		t.Fatalf("EnvelopeOf = %+v, %v", env, ok)
	}
	var target add
	if !aggregate.SetEnvelope(&target, env) || target.CommandID != c.CommandID {
		t.Fatal("SetEnvelope did not set the envelope")
	}
}

// TestWithKey: an idempotency key gives one command ID per aggregate and
// key, the same in every call, a valid ULID, and distinct for another key
// or another aggregate; an empty key sets nothing.
func TestWithKey(t *testing.T) {
	a, b := ulid.Make(), ulid.Make()
	first := aggregate.To(a).WithKey("order-42")
	if first.CommandID == (ulid.ULID{}) || first.CommandID != aggregate.KeyID(a, "order-42") {
		t.Fatalf("WithKey set %v, want KeyID's %v", first.CommandID, aggregate.KeyID(a, "order-42"))
	}
	if again := aggregate.To(a).WithKey("order-42"); again.CommandID != first.CommandID {
		t.Fatalf("the same key gave %v, then %v", first.CommandID, again.CommandID)
	}
	if _, err := ulid.ParseStrict(first.CommandID.String()); err != nil {
		t.Fatalf("%v is not a ULID: %v", first.CommandID, err)
	}
	for _, other := range []ulid.ULID{aggregate.KeyID(a, "order-43"), aggregate.KeyID(b, "order-42"), aggregate.KeyID(a, "")} {
		if other == first.CommandID {
			t.Fatalf("another key or aggregate gave the same command ID %v", other)
		}
	}
	if c := aggregate.To(a).WithKey(""); c.CommandID != (ulid.ULID{}) {
		t.Fatalf("an empty key set the command ID %v", c.CommandID)
	}
}

// TestDeclaredErrors: a handler error matching a declared error has that
// error's message as its code, which leads back to the declared error.
func TestDeclaredErrors(t *testing.T) {
	errFull, errClosed := errors.New("cart full"), errors.New("cart closed")
	def := aggregate.Define[cart]("c", aggregate.Handle(func(*aggregate.Root[cart], add) error { return nil }),
		aggregate.Errors[cart](errFull, errClosed))
	wrapped := fmt.Errorf("%w: 10 items", errClosed)
	if code := def.ErrorCode(wrapped); code != "cart closed" || def.ErrorFor(code) != errClosed {
		t.Errorf("code of %v: %q -> %v; want %q -> errClosed", wrapped, code, def.ErrorFor(code), "cart closed")
	}
	if code := def.ErrorCode(errors.New("other")); code != "" || def.ErrorFor("") != nil || def.ErrorFor("nope") != nil {
		t.Errorf("an undeclared error has code %q", code)
	}
}

// A decoder returns a pointer to the event it made: Apply takes it as
// well as the value, so a replay does not copy every event into an
// interface first.
func TestApplyTakesAPointerToTheEvent(t *testing.T) {
	d := carts()
	inst := d.New(ulid.Make())
	if err := d.Apply(inst, added{Item: "apple"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(inst, &added{Item: "pear"}); err != nil {
		t.Fatal(err)
	}
	if got := inst.State.(*cart); inst.Version != 2 || got.Items["pear"] != 1 || got.Items["apple"] != 1 {
		t.Fatalf("after a value and a pointer: %+v version %d", got, inst.Version)
	}
	if err := d.Apply(inst, (*added)(nil)); err == nil || inst.Version != 2 {
		t.Fatalf("a nil event: %v, version %d", err, inst.Version)
	}
	if err := d.Apply(inst, &ghost{}); err == nil || !strings.Contains(err.Error(), "has no applier") {
		t.Fatalf("a pointer to an event without applier: %v", err)
	}
}

// commandSeen is a command whose type the compiler cannot see at the call.
var commandSeen any

// EnvelopeOf runs several times for every command dispatched: it must not
// allocate.
func TestEnvelopeOfDoesNotAllocate(t *testing.T) {
	commandSeen = add{Command: aggregate.To(ulid.Make()), Item: "x"}
	if allocs := testing.AllocsPerRun(100, func() {
		if env, ok := aggregate.EnvelopeOf(commandSeen); !ok || env.AggregateID == (ulid.ULID{}) {
			t.Fatal("no envelope")
		}
	}); allocs != 0 {
		t.Fatalf("%.0f allocations per EnvelopeOf", allocs)
	}
}
