// Package aggregatetest tests aggregates in the given/when/then style, with
// no Kafka and no application: given the events an aggregate already has,
// when it handles a command, then it emits these events, or rejects the
// command, or ends in this state.
//
//	s := aggregatetest.For(t, bank.Accounts())
//	s.Given(bank.AccountOpened{Owner: "ada"}, bank.MoneyDeposited{Amount: 100}).
//		When(bank.WithdrawMoney{Amount: 500}).
//		ThenRejected("insufficient funds")
//
// The command runs exactly as the command processor runs it: the Given
// events are applied with [aggregate.Definition.Apply], the command is
// executed with [aggregate.Definition.Execute] on a clone of that state, and
// the clone is kept only when the command succeeds. A rejected command
// therefore leaves the Given state and version in place, as it does in
// production.
//
// Failed expectations are reported with t.Errorf, so one scenario reports
// every mismatch; mistakes in the scenario itself (an event without applier,
// a value that is not a command) stop the test with t.Fatalf.
package aggregatetest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
)

// defaultID is the aggregate ID of every scenario that does not choose one:
// fixed, so failure messages are the same from run to run.
var defaultID = ulid.ULID{15: 1} // 00000000000000000000000001

// Scenario tests one aggregate type. Each call to Given starts from a new
// aggregate, so one Scenario serves any number of given/when/then runs.
type Scenario[S any] struct {
	t   testing.TB
	def *aggregate.Definition[S]
	id  ulid.ULID
}

// For returns a scenario for the aggregate type def, reporting to t. It stops
// the test when def is invalid (the application builder would refuse it).
func For[S any](t testing.TB, def *aggregate.Definition[S]) *Scenario[S] {
	t.Helper()
	if err := def.Validate(); err != nil {
		t.Fatalf("aggregatetest: invalid aggregate definition: %v", err)
	}
	return &Scenario[S]{t: t, def: def, id: defaultID}
}

// WithID returns a copy of the scenario whose aggregate has the given ID
// instead of the fixed default.
func (s *Scenario[S]) WithID(id ulid.ULID) *Scenario[S] {
	c := *s
	c.id = id
	return &c
}

// ID is the aggregate ID the scenario's commands are for.
func (s *Scenario[S]) ID() ulid.ULID { return s.id }

// Given starts a run from an aggregate that has already recorded events, in
// order: its version is len(events). With no events the aggregate is new
// (version 0).
func (s *Scenario[S]) Given(events ...any) *Given[S] {
	s.t.Helper()
	inst := s.def.New(s.id)
	for i, e := range events {
		if err := s.def.Apply(inst, e); err != nil {
			s.t.Fatalf("aggregatetest: Given event %d (%s): %v", i, show(e), err)
		}
	}
	return &Given[S]{s: s, inst: inst, given: events}
}

// When is Given().When(cmd): the command is the aggregate's first.
func (s *Scenario[S]) When(cmd any) *Then[S] {
	s.t.Helper()
	return s.Given().When(cmd)
}

// Given is an aggregate rebuilt from its past events, ready for a command.
type Given[S any] struct {
	s     *Scenario[S]
	inst  *aggregate.Instance
	given []any
}

// When runs cmd, a command value (a struct embedding aggregate.Command or
// aggregate.CommandOf), against a clone of the Given aggregate. An envelope
// left zero is filled as Dispatch fills it: the scenario's aggregate ID, a
// new command ID and correlation ID. Expectations are stated on the result.
func (g *Given[S]) When(cmd any) *Then[S] {
	t := g.s.t
	t.Helper()
	cmd = g.prepare(cmd)
	work := g.s.def.Clone(g.inst)
	out, err := g.s.def.Execute(work, cmd)
	th := &Then[S]{t: t, label: fmt.Sprintf("When(%T)", cmd), events: out.Events, result: out.Result, err: err}
	if err != nil {
		// The runtime discards the clone: the aggregate stays as it was.
		th.inst = g.inst
		return th
	}
	th.inst = work
	// Invariant 4: the state a handler leaves must equal the fold of the
	// events. It differs only when a handler changes state outside an applier.
	replayed := g.s.Given(g.given...).inst
	for _, e := range out.Events {
		if err := g.s.def.Apply(replayed, e); err != nil {
			t.Fatalf("aggregatetest: %s: replaying emitted event %s: %v", th.label, show(e), err)
		}
	}
	if !reflect.DeepEqual(replayed.State, work.State) {
		t.Errorf("aggregatetest: %s: state after the handler is not the fold of its events (does the handler change state outside an applier?)\n  handler left: %s\n  events give:  %s",
			th.label, show(*work.State.(*S)), show(*replayed.State.(*S)))
	}
	return th
}

// prepare fills the envelope of a copy of cmd the way the dispatcher does.
func (g *Given[S]) prepare(cmd any) any {
	t := g.s.t
	t.Helper()
	env, ok := aggregate.EnvelopeOf(cmd)
	if !ok {
		t.Fatalf("aggregatetest: When(%T): not a command (embed aggregate.Command or aggregate.CommandOf)", cmd)
	}
	if env.AggregateID == (ulid.ULID{}) {
		env.AggregateID = g.s.id
	} else if env.AggregateID != g.s.id {
		t.Fatalf("aggregatetest: When(%T): command is for aggregate %v, the scenario's aggregate is %v (use WithID)", cmd, env.AggregateID, g.s.id)
	}
	p := reflect.New(reflect.TypeOf(cmd))
	p.Elem().Set(reflect.ValueOf(cmd))
	aggregate.SetEnvelope(p.Interface(), env)
	if pr, ok := p.Interface().(interface{ Prepare() error }); ok {
		if err := pr.Prepare(); err != nil {
			t.Fatalf("aggregatetest: When(%T): invalid envelope: %v", cmd, err)
		}
	}
	return p.Elem().Interface()
}

// Then is the outcome of a command. Its methods check it and return the
// same Then, so expectations chain; each failed one is reported with Errorf.
type Then[S any] struct {
	t      testing.TB
	label  string
	inst   *aggregate.Instance
	events []any
	result any
	err    error
}

// ThenEvents expects the command to succeed and emit exactly want, in order
// (compared with reflect.DeepEqual). With no arguments it expects success
// with no event.
func (th *Then[S]) ThenEvents(want ...any) *Then[S] {
	th.t.Helper()
	if th.err != nil {
		th.t.Errorf("%s: want events %s, but the command %s", th.label, showAll(want), th.failure())
		return th
	}
	if reflect.DeepEqual(th.events, want) || len(th.events) == 0 && len(want) == 0 {
		return th
	}
	var diff string
	for i := range max(len(want), len(th.events)) {
		switch {
		case i >= len(th.events):
			diff = fmt.Sprintf("event %d: want %s, got none", i, show(want[i]))
		case i >= len(want):
			diff = fmt.Sprintf("event %d: want none, got %s", i, show(th.events[i]))
		case !reflect.DeepEqual(want[i], th.events[i]):
			diff = fmt.Sprintf("event %d: want %s, got %s", i, show(want[i]), show(th.events[i]))
		default:
			continue
		}
		break
	}
	th.t.Errorf("%s: events differ\n  want: %s\n  got:  %s\n  first difference: %s", th.label, showAll(want), showAll(th.events), diff)
	return th
}

// ThenRejected expects the command to be rejected (a *aggregate.RejectedError,
// so no event) with a reason that contains the given text; an empty text
// accepts any reason.
func (th *Then[S]) ThenRejected(reason string) *Then[S] {
	th.t.Helper()
	var rej *aggregate.RejectedError
	switch {
	case th.err == nil:
		th.t.Errorf("%s: want rejection %q, but the command succeeded with events %s", th.label, reason, showAll(th.events))
	case !errors.As(th.err, &rej):
		th.t.Errorf("%s: want rejection %q, but the command failed (not a rejection): %v", th.label, reason, th.err)
	case !strings.Contains(rej.Reason, reason):
		th.t.Errorf("%s: want rejection containing %q, got rejection %q", th.label, reason, rej.Reason)
	}
	return th
}

// ThenError expects the command to fail with an error that matches target
// (errors.Is), such as aggregate.ErrConcurrency or aggregate.ErrRejected.
func (th *Then[S]) ThenError(target error) *Then[S] {
	th.t.Helper()
	switch {
	case th.err == nil:
		th.t.Errorf("%s: want error matching %q, but the command succeeded with events %s", th.label, target, showAll(th.events))
	case !errors.Is(th.err, target):
		th.t.Errorf("%s: want error matching %q, got %v", th.label, target, th.err)
	}
	return th
}

// ThenState expects the aggregate's state after the command to equal want
// (reflect.DeepEqual). After a rejection that is the Given state.
func (th *Then[S]) ThenState(want S) *Then[S] {
	th.t.Helper()
	if got := th.State(); !reflect.DeepEqual(*got, want) {
		th.t.Errorf("%s: state differs\n  want: %s\n  got:  %s", th.label, show(want), show(*got))
	}
	return th
}

// ThenStateFunc calls check with the test and the aggregate's state after
// the command, for expectations on part of the state.
func (th *Then[S]) ThenStateFunc(check func(t testing.TB, state *S)) *Then[S] {
	th.t.Helper()
	check(th.t, th.State())
	return th
}

// ThenVersion expects the aggregate's version after the command: the number
// of Given events plus the number of events the command emitted.
func (th *Then[S]) ThenVersion(want int64) *Then[S] {
	th.t.Helper()
	if th.inst.Version != want {
		th.t.Errorf("%s: want version %d, got %d%s", th.label, want, th.inst.Version, th.suffix())
	}
	return th
}

// ThenResult expects the command to succeed and its handler to return want
// (reflect.DeepEqual, so the type must match too). A handler registered
// with aggregate.Handle returns aggregate.None{}.
func (th *Then[S]) ThenResult(want any) *Then[S] {
	th.t.Helper()
	switch {
	case th.err != nil:
		th.t.Errorf("%s: want result %s, but the command %s", th.label, show(want), th.failure())
	case !reflect.DeepEqual(th.result, want):
		th.t.Errorf("%s: want result %s, got %s", th.label, show(want), show(th.result))
	}
	return th
}

// Events are the events the command emitted (none when it failed).
func (th *Then[S]) Events() []any { return th.events }

// Result is the handler's result (nil when the command failed).
func (th *Then[S]) Result() any { return th.result }

// Err is the command's error: nil, a *aggregate.RejectedError, or a failure
// of the handler (a panic, an event without applier).
func (th *Then[S]) Err() error { return th.err }

// State is the aggregate's state after the command; after a failure, the
// Given state.
func (th *Then[S]) State() *S { return th.inst.State.(*S) }

// Version is the aggregate's version after the command.
func (th *Then[S]) Version() int64 { return th.inst.Version }

// failure describes why the command did not succeed.
func (th *Then[S]) failure() string {
	var rej *aggregate.RejectedError
	if errors.As(th.err, &rej) {
		return fmt.Sprintf("was rejected: %s", rej.Reason)
	}
	return fmt.Sprintf("failed: %v", th.err)
}

// suffix adds the command's error, if any, to a message about state.
func (th *Then[S]) suffix() string {
	if th.err == nil {
		return ""
	}
	return " (the command " + th.failure() + ")"
}

// show formats a value with its type, e.g. bank.MoneyDeposited{Amount:100}.
func show(v any) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprintf("%T%+v", v, v)
}

func showAll(vs []any) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = show(v)
	}
	return "[" + strings.Join(s, ", ") + "]"
}
