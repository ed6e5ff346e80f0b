package projectionstest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/projections/projectionstest"
)

// recorder is a testing.TB that records failures, so the helpers' own
// failures can be asserted; Fatalf ends the goroutine as testing.T does.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func run(f func(t testing.TB)) []string {
	r := &recorder{}
	done := make(chan struct{})
	go func() { defer close(done); f(r) }()
	<-done
	return r.errs
}

type (
	ping struct{ N int }
	pong struct {
		aggregate.Command
		N int
	}
)

func saga() *projections.Projection[*projections.Output] {
	p := projections.New("pinger", projections.Kafka())
	projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[ping]) error {
		if e.Data.N < 0 {
			return errors.New("negative ping")
		}
		for i := range e.Data.N {
			if err := out.Send(pong{Command: aggregate.To(e.AggregateID), N: i}); err != nil {
				return err
			}
		}
		return nil
	})
	return p
}

func TestSagaScenario(t *testing.T) {
	id := ulid.Make()
	cases := []struct {
		name     string
		scenario func(t testing.TB)
		want     string // in the failure, "" for none
	}{
		{"right commands", func(t testing.TB) {
			projectionstest.Saga(t, saga()).When(id, ping{N: 2}).ThenSends(pong{Command: aggregate.To(id), N: 0}, pong{Command: aggregate.To(id), N: 1})
		}, ""},
		{"nothing", func(t testing.TB) { projectionstest.Saga(t, saga()).When(id, ping{}).ThenSendsNothing() }, ""},
		{"wrong payload", func(t testing.TB) {
			projectionstest.Saga(t, saga()).When(id, ping{N: 1}).ThenSends(pong{Command: aggregate.To(id), N: 7})
		}, "want"},
		{"wrong aggregate", func(t testing.TB) {
			projectionstest.Saga(t, saga()).When(id, ping{N: 1}).ThenSends(pong{Command: aggregate.To(ulid.Make()), N: 0})
		}, "want"},
		{"too few", func(t testing.TB) { projectionstest.Saga(t, saga()).When(id, ping{N: 2}).ThenSends(pong{N: 0}) }, "sent 2 commands"},
		{"fails as expected", func(t testing.TB) { projectionstest.Saga(t, saga()).When(id, ping{N: -1}).ThenFails("negative") }, ""},
		{"fails unexpectedly", func(t testing.TB) { projectionstest.Saga(t, saga()).When(id, ping{N: -1}).ThenSendsNothing() }, "negative ping"},
		{"does not fail", func(t testing.TB) { projectionstest.Saga(t, saga()).When(id, ping{N: 1}).ThenFails("negative") }, "want one containing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := run(tc.scenario)
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Fatalf("unexpected failure: %v", errs)
			case tc.want != "" && (len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), tc.want)):
				t.Fatalf("failures %v, want one containing %q", errs, tc.want)
			}
		})
	}
}

func TestProject(t *testing.T) {
	p := projections.New("totals", projections.Effects())
	total := map[ulid.ULID]int{}
	versions := []int64{}
	projections.On(p, func(ctx context.Context, _ *struct{}, e projections.Event[ping]) error {
		total[e.AggregateID] += e.Data.N
		versions = append(versions, e.Version)
		return nil
	})
	id := ulid.Make()
	projectionstest.Project(t, p, nil, id, ping{N: 2}, ping{N: 3}, "ignored: not followed")
	if total[id] != 5 || fmt.Sprint(versions) != "[1 2]" {
		t.Fatalf("total %d, versions %v", total[id], versions)
	}
}
