package aggregatetest_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/aggregatetest"
)

// recorder is a testing.TB that records failures instead of reporting them,
// so the helper's own failures can be asserted. Fatalf ends the goroutine
// (runtime.Goexit) as testing.T does; scenarios therefore run under run.
type recorder struct {
	testing.TB // nil: any other method panics, exposing an unexpected call
	mu         sync.Mutex
	errs       []string
	fatal      bool
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.fatal = true
	r.mu.Unlock()
	runtime.Goexit()
}

// run runs f with a recorder on its own goroutine, as the testing package
// runs a test, and returns the recorder once f returns or calls Fatalf.
func run(f func(t testing.TB)) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

// counter is a second test domain, with handlers that misbehave on purpose.
type counter struct {
	N   int64
	Log []string // a reference: the clone must be deep
}

type (
	add struct {
		aggregate.Command
		By int64
	}
	addThenFail struct{ aggregate.Command }
	sneak       struct{ aggregate.Command }
	boom        struct{ aggregate.Command }
	noop        struct{ aggregate.Command }
	orphan      struct{ aggregate.Command }
	whoami      struct{ aggregate.CommandOf[ids] }
	added       struct{ By int64 }
	unapplied   struct{}
	ids         struct {
		Root, Cmd   ulid.ULID
		Correlation string
	}
)

func counters() *aggregate.Definition[counter] {
	return aggregate.Define[counter]("counter",
		aggregate.Handle(func(a *aggregate.Root[counter], c add) error {
			a.Emit(added{By: c.By})
			return nil
		}),
		aggregate.Handle(func(a *aggregate.Root[counter], c addThenFail) error {
			a.Emit(added{By: 1})
			return errors.New("changed my mind")
		}),
		aggregate.Handle(func(a *aggregate.Root[counter], c sneak) error {
			a.State().N = 99 // wrong: not through an applier
			return nil
		}),
		aggregate.Handle(func(a *aggregate.Root[counter], c boom) error { panic("boom") }),
		aggregate.Handle(func(a *aggregate.Root[counter], c noop) error { return nil }),
		aggregate.Handle(func(a *aggregate.Root[counter], c orphan) error {
			a.Emit(unapplied{})
			return nil
		}),
		aggregate.HandleResult(func(a *aggregate.Root[counter], c whoami) (ids, error) {
			return ids{Root: a.ID(), Cmd: c.AggregateID, Correlation: c.CorrelationID}, nil
		}),
		aggregate.Apply(func(s *counter, e added) {
			s.N += e.By
			s.Log = append(s.Log, fmt.Sprint("+", e.By))
		}),
	)
}

func TestScenario(t *testing.T) {
	other := ulid.MustParse("01ARZ3NDEKTSV4RRFFQ69G5FAV")
	tests := []struct {
		name     string
		scenario func(t testing.TB)
		want     []string // substrings of the reported failures, in order; none: pass
		fatal    bool
	}{
		{
			name: "right expectations pass",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).
					Given(Received{Qty: 10}, Shipped{Qty: 1}).
					When(Ship{Qty: 3}).
					ThenEvents(Shipped{Qty: 3}).
					ThenResult(Remaining{Items: 6}).
					ThenState(Stock{Items: 6}).
					ThenStateFunc(func(t testing.TB, s *Stock) {
						if s.Items != 6 {
							t.Errorf("items %d", s.Items)
						}
					}).
					ThenVersion(3)
			},
		},
		{
			name: "first command of a new aggregate",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).When(Receive{Qty: 5}).
					ThenEvents(Received{Qty: 5}).ThenResult(aggregate.None{}).ThenVersion(1)
			},
		},
		{
			name: "right rejection passes and leaves the Given state",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 2}).
					When(Ship{Qty: 3}).
					ThenRejected("out of stock: 2 left").
					ThenRejected("").
					ThenError(aggregate.ErrRejected).
					ThenState(Stock{Items: 2}).
					ThenVersion(1)
			},
		},
		{
			name: "rejection after Emit discards the emitted events",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, counters()).Given(added{By: 5}).
					When(addThenFail{}).
					ThenRejected("changed my mind").
					ThenState(counter{N: 5, Log: []string{"+5"}}).
					ThenVersion(1)
			},
		},
		{
			name: "no events",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, counters()).Given(added{By: 1}).When(noop{}).ThenEvents().ThenVersion(1)
			},
		},
		{
			name: "expected version conflict",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 2}).
					When(Ship{CommandOf: aggregate.CommandOf[Remaining]{}.Expect(0), Qty: 1}).
					ThenError(aggregate.ErrConcurrency).
					ThenRejected("expected version 0, aggregate is at 1")
			},
		},
		{
			name: "matching expected version",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 2}).
					When(Ship{CommandOf: aggregate.CommandOf[Remaining]{}.Expect(1), Qty: 1}).
					ThenEvents(Shipped{Qty: 1})
			},
		},
		{
			name: "envelope filled with the scenario's ID",
			scenario: func(t testing.TB) {
				s := aggregatetest.For(t, counters())
				th := s.When(whoami{})
				got := th.Result().(ids)
				if got.Root != s.ID() || got.Cmd != s.ID() || got.Correlation == "" {
					t.Errorf("envelope %+v, scenario ID %v", got, s.ID())
				}
				s = s.WithID(other)
				got = s.When(whoami{CommandOf: aggregate.ToResult[ids](other)}).Result().(ids)
				if got.Root != other || got.Cmd != other {
					t.Errorf("envelope %+v, scenario ID %v", got, other)
				}
			},
		},
		{
			name: "a scenario is reusable",
			scenario: func(t testing.TB) {
				s := aggregatetest.For(t, counters())
				g := s.Given(added{By: 1})
				g.When(add{By: 2}).ThenState(counter{N: 3, Log: []string{"+1", "+2"}})
				g.When(add{By: 3}).ThenState(counter{N: 4, Log: []string{"+1", "+3"}})
				s.Given().When(add{By: 1}).ThenVersion(1)
			},
		},
		{
			name: "wrong event payload",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 10}).When(Ship{Qty: 3}).ThenEvents(Shipped{Qty: 4})
			},
			want: []string{"events differ\n  want: [aggregatetest_test.Shipped{Qty:4}]\n  got:  [aggregatetest_test.Shipped{Qty:3}]\n  first difference: event 0: want aggregatetest_test.Shipped{Qty:4}, got aggregatetest_test.Shipped{Qty:3}"},
		},
		{
			name: "missing event",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 10}).When(Ship{Qty: 3}).ThenEvents(Shipped{Qty: 3}, Shipped{Qty: 1})
			},
			want: []string{"first difference: event 1: want aggregatetest_test.Shipped{Qty:1}, got none"},
		},
		{
			name: "unexpected event",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 10}).When(Ship{Qty: 3}).ThenEvents()
			},
			want: []string{"event 0: want none, got aggregatetest_test.Shipped{Qty:3}"},
		},
		{
			name: "events wanted but rejected",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).When(Ship{Qty: 3}).ThenEvents(Shipped{Qty: 3})
			},
			want: []string{"When(aggregatetest_test.Ship): want events [aggregatetest_test.Shipped{Qty:3}], but the command was rejected: out of stock: 0 left"},
		},
		{
			name: "rejection wanted but succeeded",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 10}).When(Ship{Qty: 3}).ThenRejected("out of stock")
			},
			want: []string{`want rejection "out of stock", but the command succeeded with events [aggregatetest_test.Shipped{Qty:3}]`},
		},
		{
			name: "wrong rejection reason",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).When(Receive{Qty: -1}).ThenRejected("out of stock")
			},
			want: []string{`want rejection containing "out of stock", got rejection "quantity must be positive"`},
		},
		{
			name: "failure is not a rejection",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, counters()).When(boom{}).ThenRejected("boom").ThenError(aggregate.ErrRejected)
			},
			want: []string{
				`want rejection "boom", but the command failed (not a rejection): aggregate "counter": handler of aggregatetest_test.boom panicked: boom`,
				`want error matching "command rejected", got aggregate "counter": handler of aggregatetest_test.boom panicked: boom`,
			},
		},
		{
			name: "event without applier fails the command",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, counters()).When(orphan{}).ThenEvents(unapplied{})
			},
			want: []string{"failed: aggregate \"counter\": emitted event aggregatetest_test.unapplied has no applier"},
		},
		{
			name: "error wanted but succeeded",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 10}).When(Ship{Qty: 3}).ThenError(aggregate.ErrConcurrency)
			},
			want: []string{`want error matching "concurrency conflict", but the command succeeded`},
		},
		{
			name: "wrong error",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).When(Ship{Qty: 3}).ThenError(aggregate.ErrConcurrency)
			},
			want: []string{`want error matching "concurrency conflict", got command rejected: out of stock: 0 left`},
		},
		{
			name: "wrong state",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 10}).When(Ship{Qty: 3}).ThenState(Stock{Items: 10})
			},
			want: []string{"state differs\n  want: aggregatetest_test.Stock{Items:10}\n  got:  aggregatetest_test.Stock{Items:7}"},
		},
		{
			name: "state check reports through the scenario's t",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).When(Receive{Qty: 1}).ThenStateFunc(func(t testing.TB, s *Stock) {
					t.Errorf("items %d", s.Items)
				})
			},
			want: []string{"items 1"},
		},
		{
			name: "wrong version",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 1}).When(Ship{Qty: 3}).ThenVersion(2)
			},
			want: []string{"want version 2, got 1 (the command was rejected: out of stock: 1 left)"},
		},
		{
			name: "wrong result",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 10}).When(Ship{Qty: 3}).
					ThenResult(Remaining{Items: 6}).
					ThenResult(int64(7))
			},
			want: []string{
				"want result aggregatetest_test.Remaining{Items:6}, got aggregatetest_test.Remaining{Items:7}",
				"want result int647, got aggregatetest_test.Remaining{Items:7}",
			},
		},
		{
			name: "result wanted but rejected",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).When(Ship{Qty: 3}).ThenResult(Remaining{})
			},
			want: []string{"but the command was rejected: out of stock"},
		},
		{
			name: "handler changing state outside an applier",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, counters()).When(sneak{}).ThenEvents()
			},
			want: []string{"not the fold of its events (does the handler change state outside an applier?)\n  handler left: aggregatetest_test.counter{N:99 Log:[]}\n  events give:  aggregatetest_test.counter{N:0 Log:[]}"},
		},
		{
			name: "invalid definition",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, aggregate.Define[Stock]("Bad Name"))
				t.Errorf("not reached")
			},
			want:  []string{`invalid aggregate definition: aggregate name "Bad Name"`},
			fatal: true,
		},
		{
			name: "Given event without applier",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).Given(Received{Qty: 1}, unapplied{})
				t.Errorf("not reached")
			},
			want:  []string{"Given event 1 (aggregatetest_test.unapplied{}): aggregate \"stock\": event aggregatetest_test.unapplied has no applier"},
			fatal: true,
		},
		{
			name: "When with a value that is not a command",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).When(Received{Qty: 1})
				t.Errorf("not reached")
			},
			want:  []string{"When(aggregatetest_test.Received): not a command"},
			fatal: true,
		},
		{
			name: "When with a command for another aggregate",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).When(Receive{Command: aggregate.To(other), Qty: 1})
				t.Errorf("not reached")
			},
			want:  []string{"command is for aggregate 01ARZ3NDEKTSV4RRFFQ69G5FAV, the scenario's aggregate is 00000000000000000000000001"},
			fatal: true,
		},
		{
			name: "When with a negative expected version",
			scenario: func(t testing.TB) {
				aggregatetest.For(t, stock()).When(Receive{Command: aggregate.Command{}.Expect(-1), Qty: 1})
				t.Errorf("not reached")
			},
			want:  []string{"invalid envelope: aggregate: expected version -1 is negative"},
			fatal: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(tt.scenario)
			if r.fatal != tt.fatal {
				t.Errorf("fatal = %v, want %v", r.fatal, tt.fatal)
			}
			if len(r.errs) != len(tt.want) {
				t.Fatalf("reported %d failures, want %d:\n%s", len(r.errs), len(tt.want), strings.Join(r.errs, "\n---\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(r.errs[i], w) {
					t.Errorf("failure %d:\n%s\nwant it to contain:\n%s", i, r.errs[i], w)
				}
			}
		})
	}
}

// TestGivenUntouched checks that the Given state survives a command, whether
// it succeeds or not: each When works on a deep clone.
func TestGivenUntouched(t *testing.T) {
	s := aggregatetest.For(t, counters())
	g := s.Given(added{By: 1})
	ok := g.When(add{By: 2})
	ok.State().Log[0] = "mutated"
	g.When(addThenFail{}).ThenState(counter{N: 1, Log: []string{"+1"}}).ThenVersion(1)
	g.When(noop{}).ThenState(counter{N: 1, Log: []string{"+1"}})
}
