package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/consumer"
	"github.com/interlock-go/interlock/metrics"
	"github.com/interlock-go/interlock/middleware"
)

// scrape GETs h's /metrics and parses the text exposition.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return mfs
}

// series returns the value of each series of family name (a counter's or
// gauge's value, a histogram's count), keyed by its labels written
// "k=v,k=v" in name order.
func series(mfs map[string]*dto.MetricFamily, name string) map[string]float64 {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		var kv []string
		for _, l := range m.GetLabel() {
			kv = append(kv, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(kv)
		var v float64
		switch {
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		case m.Histogram != nil:
			v = float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			v = m.GetUntyped().GetValue()
		}
		out[strings.Join(kv, ",")] = v
	}
	return out
}

func mustNew(t testing.TB, reg prometheus.Registerer) *metrics.Metrics {
	t.Helper()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type deposit struct {
	aggregate.Command
	Amount int64
}

// TestMiddlewareOutcomes: each outcome is counted under its side, type and
// outcome, and latency is observed for everything but Send.
func TestMiddlewareOutcomes(t *testing.T) {
	t.Parallel()
	m := mustNew(t, nil)
	mw := m.Middleware()
	cases := []struct {
		name    string
		side    middleware.Side
		async   bool
		err     error
		outcome string
	}{
		{"dispatch applied", middleware.Dispatch, false, nil, "applied"},
		{"dispatch rejected", middleware.Dispatch, false, aggregate.Reject(errors.New("no")), "rejected"},
		{"dispatch conflict", middleware.Dispatch, false, &aggregate.RejectedError{Reason: "stale", Conflict: &aggregate.ConcurrencyError{Expected: 1, Actual: 2}}, "rejected"},
		{"dispatch failed", middleware.Dispatch, false, context.DeadlineExceeded, "failed"},
		{"send", middleware.Dispatch, true, nil, "sent"},
		{"send failed", middleware.Dispatch, true, errors.New("kafka down"), "failed"},
		{"handle applied", middleware.Handle, false, nil, "applied"},
		{"handle rejected", middleware.Handle, false, aggregate.Reject(errors.New("no")), "rejected"},
		{"handle failed", middleware.Handle, false, fmt.Errorf("wrapped: %w", errors.New("panic")), "failed"},
		{"query answered", middleware.Query, false, nil, "answered"},
		{"query failed", middleware.Query, false, errors.New("projection behind"), "failed"},
		{"query rejected", middleware.Query, false, aggregate.Reject(errors.New("not yours")), "rejected"},
	}
	for _, c := range cases {
		_, err := mw(func(ctx context.Context, msg *middleware.Message) (middleware.Outcome, error) {
			time.Sleep(time.Millisecond)
			return middleware.Outcome{Version: 1}, c.err
		})(context.Background(), &middleware.Message{
			Side: c.side, Type: "DepositMoney", Aggregate: "account", Command: deposit{Amount: 1},
			Async: c.async, Metadata: middleware.Metadata{},
		})
		if !errors.Is(err, c.err) {
			t.Fatalf("%s: the middleware changed the error: %v", c.name, err)
		}
	}
	mfs := scrape(t, m.Handler())
	want := map[string]float64{
		"aggregate=account,outcome=applied,side=dispatch,type=DepositMoney":  1,
		"aggregate=account,outcome=rejected,side=dispatch,type=DepositMoney": 2,
		"aggregate=account,outcome=failed,side=dispatch,type=DepositMoney":   2,
		"aggregate=account,outcome=sent,side=dispatch,type=DepositMoney":     1,
		"aggregate=account,outcome=applied,side=handle,type=DepositMoney":    1,
		"aggregate=account,outcome=rejected,side=handle,type=DepositMoney":   1,
		"aggregate=account,outcome=failed,side=handle,type=DepositMoney":     1,
		"aggregate=account,outcome=answered,side=query,type=DepositMoney":    1,
		"aggregate=account,outcome=failed,side=query,type=DepositMoney":      1,
		"aggregate=account,outcome=rejected,side=query,type=DepositMoney":    1,
	}
	if got := series(mfs, "interlock_commands_total"); !equal(got, want) {
		t.Errorf("interlock_commands_total:\n got %v\nwant %v", got, want)
	}
	wantLatency := map[string]float64{
		"aggregate=account,side=dispatch,type=DepositMoney": 4, // not the two Sends
		"aggregate=account,side=handle,type=DepositMoney":   3,
		"aggregate=account,side=query,type=DepositMoney":    3,
	}
	if got := series(mfs, "interlock_command_duration_seconds"); !equal(got, wantLatency) {
		t.Errorf("interlock_command_duration_seconds counts:\n got %v\nwant %v", got, wantLatency)
	}
	for _, s := range mfs["interlock_command_duration_seconds"].GetMetric() {
		if sum := s.GetHistogram().GetSampleSum(); sum < 0.001*float64(s.GetHistogram().GetSampleCount()) {
			t.Errorf("latency sum %v s for %d commands of at least 1ms each", sum, s.GetHistogram().GetSampleCount())
		}
	}
}

func equal(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestObserver: transactions by outcome with their sizes and durations,
// restores with their durations and events, per topic.
func TestObserver(t *testing.T) {
	t.Parallel()
	m := mustNew(t, nil)
	if got := series(scrape(t, m.Handler()), "interlock_transactions_total"); !equal(got, map[string]float64{"outcome=committed": 0, "outcome=aborted": 0}) {
		t.Fatalf("before any batch, interlock_transactions_total = %v, want both outcomes at 0", got)
	}
	m.OnBatch(consumer.Batch{Commands: 3, Applied: 2, Rejected: 1, Committed: true, Duration: 20 * time.Millisecond})
	m.OnBatch(consumer.Batch{Commands: 40, Applied: 40, Committed: true, Duration: 30 * time.Millisecond})
	m.OnBatch(consumer.Batch{Commands: 5, Failed: 5, Committed: false, Duration: time.Second})
	m.OnRestore(consumer.Restore{Topic: "bank.account.events", Partition: 0, Events: 100, Duration: 2 * time.Second})
	m.OnRestore(consumer.Restore{Topic: "bank.account.events", Partition: 1, Events: 0, Duration: time.Millisecond})
	m.OnRestore(consumer.Restore{Topic: "bank.loan.events", Partition: 0, From: 7, Events: 5, Duration: 3 * time.Millisecond})
	mfs := scrape(t, m.Handler())

	checks := []struct {
		name string
		want map[string]float64
	}{
		{"interlock_transactions_total", map[string]float64{"outcome=committed": 2, "outcome=aborted": 1}},
		{"interlock_transaction_commands", map[string]float64{"": 3}},
		{"interlock_transaction_duration_seconds", map[string]float64{"": 3}},
		{"interlock_restore_duration_seconds", map[string]float64{"topic=bank.account.events": 2, "topic=bank.loan.events": 1}},
		{"interlock_events_replayed_total", map[string]float64{"topic=bank.account.events": 100, "topic=bank.loan.events": 5}},
	}
	for _, c := range checks {
		if got := series(mfs, c.name); !equal(got, c.want) {
			t.Errorf("%s:\n got %v\nwant %v", c.name, got, c.want)
		}
	}
	h := mfs["interlock_transaction_commands"].GetMetric()[0].GetHistogram()
	if h.GetSampleSum() != 48 {
		t.Errorf("batch sizes sum to %v, want 48", h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == 5 && b.GetCumulativeCount() != 2 {
			t.Errorf("batches of at most 5 commands: %d, want 2", b.GetCumulativeCount())
		}
	}
}

type fakeSource struct {
	stats consumer.Stats
	lag   map[string]map[int32]int64
}

func (f fakeSource) Stats() consumer.Stats           { return f.stats }
func (f fakeSource) Lag() map[string]map[int32]int64 { return f.lag }

// TestWatch: the application's counters and lag are read at scrape time,
// absent before Watch, replaced by a later Watch.
func TestWatch(t *testing.T) {
	t.Parallel()
	m := mustNew(t, nil)
	if mfs := scrape(t, m.Handler()); mfs["interlock_snapshot_hits_total"] != nil || mfs["interlock_consumer_lag"] != nil {
		t.Fatal("application metrics before Watch")
	}
	m.Watch(fakeSource{
		stats: consumer.Stats{
			SnapshotsLoaded: 1, SnapshotMisses: 2, SnapshotsWritten: 3, SnapshotsIgnored: 4, StoreErrors: 5,
			Evictions: 6, Duplicates: 7, FullReplays: 8, Cached: 9, SnapshotWriteErrors: 10, BatchesGivenBack: 11,
		},
		lag: map[string]map[int32]int64{"bank.account.commands": {0: 0, 1: 12}, "bank.loan.commands": {0: 3}},
	})
	mfs := scrape(t, m.Handler())
	for name, want := range map[string]float64{
		"interlock_snapshot_hits_total":         1,
		"interlock_snapshot_misses_total":       2,
		"interlock_snapshot_writes_total":       3,
		"interlock_snapshot_ignored_total":      4,
		"interlock_snapshot_store_errors_total": 5,
		"interlock_cache_evictions_total":       6,
		"interlock_command_duplicates_total":    7,
		"interlock_restore_full_replays_total":  8,
		"interlock_cache_aggregates":            9,
		"interlock_snapshot_write_errors_total": 10,
		"interlock_batches_given_back_total":    11,
	} {
		if got := series(mfs, name); !equal(got, map[string]float64{"": want}) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	wantLag := map[string]float64{
		"partition=0,topic=bank.account.commands": 0,
		"partition=1,topic=bank.account.commands": 12,
		"partition=0,topic=bank.loan.commands":    3,
	}
	if got := series(mfs, "interlock_consumer_lag"); !equal(got, wantLag) {
		t.Errorf("interlock_consumer_lag:\n got %v\nwant %v", got, wantLag)
	}
	m.Watch(fakeSource{})
	if got := series(scrape(t, m.Handler()), "interlock_snapshot_hits_total"); !equal(got, map[string]float64{"": 0}) {
		t.Errorf("after Watch of another source: hits %v", got)
	}
	m.Watch(nil)
	if mfs := scrape(t, m.Handler()); mfs["interlock_snapshot_hits_total"] != nil {
		t.Error("application metrics after Watch(nil)")
	}
}

// TestRegisterers: a second Metrics on the same registry fails without
// removing the first's; a wrapped registerer (not a Gatherer) is served
// with Interlock's metrics alone; the default registry serves everything
// registered there too.
func TestRegisterers(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	first := mustNew(t, reg)
	if _, err := metrics.New(reg); err == nil {
		t.Fatal("two Metrics on one registry")
	}
	first.OnBatch(consumer.Batch{Commands: 1, Applied: 1, Committed: true})
	if got := series(scrape(t, first.Handler()), "interlock_transactions_total"); got["outcome=committed"] != 1 {
		t.Fatalf("the failed New removed the first's metrics: %v", got)
	}

	// Two applications on one registry, told apart by a label.
	shared := prometheus.NewRegistry()
	bank := mustNew(t, prometheus.WrapRegistererWith(prometheus.Labels{"app": "bank"}, shared))
	loans := mustNew(t, prometheus.WrapRegistererWith(prometheus.Labels{"app": "loans"}, shared))
	bank.OnBatch(consumer.Batch{Commands: 1, Applied: 1, Committed: true})
	loans.OnBatch(consumer.Batch{Commands: 1, Applied: 1, Committed: false})
	got := series(scrape(t, promhttp.HandlerFor(shared, promhttp.HandlerOpts{})), "interlock_transactions_total")
	want := map[string]float64{
		"app=bank,outcome=committed": 1, "app=bank,outcome=aborted": 0,
		"app=loans,outcome=committed": 0, "app=loans,outcome=aborted": 1,
	}
	if !equal(got, want) {
		t.Fatalf("two applications on one registry:\n got %v\nwant %v", got, want)
	}
	// A wrapped registerer cannot be read back: each Handler serves its
	// own metrics, without the wrapper's label.
	if got := series(scrape(t, loans.Handler()), "interlock_transactions_total"); !equal(got, map[string]float64{"outcome=committed": 0, "outcome=aborted": 1}) {
		t.Fatalf("the wrapped Metrics serves %v", got)
	}

	// Everything else registered next to Interlock's is served as well.
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "users_own_total", Help: "A user's own metric."}))
	rec := httptest.NewRecorder()
	first.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "users_own_total 0") {
		t.Fatalf("the registry's other metrics are not served:\n%s", body)
	}
}
