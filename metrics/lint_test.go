package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/interlock-go/interlock/consumer"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/projections"
)

// TestLint: every metric passes Prometheus's naming and help checks
// (promlint).
func TestLint(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := mustNew(t, reg)
	// Series of every family, so each is linted.
	m.OnBatch(consumer.Batch{Commands: 1, Applied: 1, Committed: true, Duration: time.Millisecond})
	m.OnRestore(consumer.Restore{Topic: "t", Events: 1, Duration: time.Millisecond})
	m.OnBadRecord(consumer.BadRecord{Topic: "t", Reason: "bad_ulid"})
	m.OnPark(projections.Park{Projection: "p", Topic: "t", Reason: "undecodable"})
	m.Watch(fakeSource{lag: map[string]map[int32]int64{"t": {0: 1}}})
	_, _ = m.Middleware()(func(context.Context, *middleware.Message) (middleware.Outcome, error) {
		return middleware.Outcome{}, nil
	})(context.Background(), &middleware.Message{Side: middleware.Handle, Type: "T", Aggregate: "a", Command: deposit{}, Metadata: middleware.Metadata{}})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
