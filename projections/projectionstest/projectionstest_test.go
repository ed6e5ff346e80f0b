package projectionstest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

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

// exporter is a Kafka-to-Kafka processor: a record per ping, none for a
// ping of 0.
func exporter() *projections.Projection[*projections.Output] {
	p := projections.New("exporter", projections.Kafka())
	projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[ping]) error {
		if e.Data.N != 0 {
			out.Produce(&kgo.Record{Topic: "pings", Key: []byte(e.AggregateID.String()), Value: []byte(strconv.Itoa(e.Data.N))})
		}
		return nil
	})
	return p
}

func TestThenProduces(t *testing.T) {
	id := ulid.Make()
	rec := func(v string) *kgo.Record {
		return &kgo.Record{Topic: "pings", Key: []byte(id.String()), Value: []byte(v)}
	}
	cases := []struct {
		name     string
		scenario func(t testing.TB)
		want     string // in the failure, "" for none
	}{
		{"right record", func(t testing.TB) { projectionstest.Saga(t, exporter()).When(id, ping{N: 3}).ThenProduces(rec("3")) }, ""},
		{"none", func(t testing.TB) { projectionstest.Saga(t, exporter()).When(id, ping{}).ThenProduces() }, ""},
		{"wrong value", func(t testing.TB) { projectionstest.Saga(t, exporter()).When(id, ping{N: 3}).ThenProduces(rec("4")) }, `want [{pings key "` + id.String() + `" value "4"}]`},
		{"wrong topic", func(t testing.TB) {
			projectionstest.Saga(t, exporter()).When(id, ping{N: 3}).ThenProduces(&kgo.Record{Topic: "pongs", Key: []byte(id.String()), Value: []byte("3")})
		}, "record 0"},
		{"unexpected record", func(t testing.TB) { projectionstest.Saga(t, exporter()).When(id, ping{N: 3}).ThenProduces() }, "produced 1 records"},
		{"missing record", func(t testing.TB) { projectionstest.Saga(t, exporter()).When(id, ping{}).ThenProduces(rec("0")) }, "produced 0 records"},
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

func TestProjectRecords(t *testing.T) {
	p := projections.New("orders", projections.Effects())
	var got []string
	projections.OnRecord(p, "orders", func(ctx context.Context, _ *struct{}, r *kgo.Record) error {
		if string(r.Value) == "bad" {
			return errors.New("not an order")
		}
		got = append(got, string(r.Key)+"="+string(r.Value))
		return nil
	})
	projectionstest.ProjectRecords(t, p, nil,
		&kgo.Record{Topic: "orders", Key: []byte("ann"), Value: []byte("1")},
		&kgo.Record{Topic: "orders", Key: []byte("ann"), Value: []byte("2")})
	if fmt.Sprint(got) != "[ann=1 ann=2]" {
		t.Fatalf("handled %v", got)
	}
	errs := run(func(t testing.TB) {
		projectionstest.ProjectRecords(t, p, nil, &kgo.Record{Topic: "orders", Key: []byte("bob"), Value: []byte("bad")})
	})
	if len(errs) != 1 || !strings.Contains(errs[0], "record 1 (orders): not an order") {
		t.Fatalf("failures %v, want the handler's error", errs)
	}
	// A record of a topic the projection does not read (a misspelt topic,
	// a forgotten OnRecord) fails the test rather than passing unhandled.
	errs = run(func(t testing.TB) {
		projectionstest.ProjectRecords(t, p, nil, &kgo.Record{Topic: "order", Key: []byte("bob"), Value: []byte("1")})
	})
	if len(errs) != 1 || !strings.Contains(errs[0], `no record handler for topic "order"`) {
		t.Fatalf("failures %v, want one naming the topic without a handler", errs)
	}
}
