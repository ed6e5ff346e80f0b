// Package metrics exposes an Interlock application's work as Prometheus
// metrics: commands by type and outcome with their latency (a middleware),
// transactions and restores (a processor observer), and the processor's
// counters and consumer lag, read at scrape time.
//
// One Metrics value serves one application, in three lines:
//
//	m, err := metrics.New(nil) // or a prometheus.Registerer of your own
//	app, err := interlock.NewBuilder(interlock.WithObserver(m), ...).
//		RegisterAggregate(accounts).Use(m.Middleware()).Build()
//	m.Watch(app)
//
// and m.Handler() serves them on /metrics. Label values are only names
// known at build time (command types, aggregate types, side, outcome, and
// the fixed kinds and reasons of bad records) and
// Kafka topics and partitions: never IDs or payloads, so the number of
// series stays bounded. To run several applications in one process, give
// each its own Metrics on the same registry wrapped with a distinguishing
// label (prometheus.WrapRegistererWith), and serve that registry with
// promhttp.HandlerFor.
//
// The README's "Metrics, tracing and health" section lists every metric.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/interlock-go/interlock/consumer"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
)

// Metrics holds an application's Prometheus metrics. It is a middleware
// (Middleware), a processor observer (consumer.BatchObserver and
// consumer.RestoreObserver, for interlock.WithObserver) and, once given an
// application with Watch, a collector of its counters. Safe for concurrent
// use.
type Metrics struct {
	gatherer prometheus.Gatherer

	commands *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	transactions *prometheus.CounterVec
	batchSize    prometheus.Histogram
	txDuration   prometheus.Histogram
	restores     *prometheus.HistogramVec
	replayed     *prometheus.CounterVec
	badRecords   *prometheus.CounterVec
	parked       *prometheus.CounterVec

	stats *statsCollector
}

// Source is what Watch reads at each scrape: an *interlock.App.
type Source interface {
	// Stats returns the processor's counters since it started.
	Stats() consumer.Stats
	// Lag returns, per commands topic and owned partition, the committed
	// commands not yet fetched.
	Lag() map[string]map[int32]int64
}

// Label names.
const (
	labelSide       = "side"
	labelAggregate  = "aggregate"
	labelType       = "type"
	labelOutcome    = "outcome"
	labelTopic      = "topic"
	labelPartition  = "partition"
	labelProjection = "projection"
	labelKind       = "kind"
	labelReason     = "reason"
)

// Kinds of bad records, the values of the kind label.
const (
	kindCommand = "command"
	kindEvent   = "event"
)

// Outcomes, the values of the outcome label.
const (
	outcomeApplied   = "applied"
	outcomeRejected  = "rejected"
	outcomeFailed    = "failed"
	outcomeSent      = "sent"
	outcomeAnswered  = "answered"
	outcomeCommitted = "committed"
	outcomeAborted   = "aborted"
)

// latencyBuckets span a handler run in memory (tens of microseconds) to a
// dispatch waiting out a rebalance (seconds).
var latencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// New returns the metrics of one application, registered with reg. A nil
// reg is a new prometheus.Registry of their own. It fails when reg already
// holds metrics of the same names (another Metrics: wrap reg with a label
// per application).
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_commands_total",
			Help: "Commands by outcome (applied, rejected, failed; sent for Send), on the dispatch side (the caller's) and the handle side (handler runs in the processor).",
		}, []string{labelSide, labelAggregate, labelType, labelOutcome}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "interlock_command_duration_seconds",
			Help:    "Dispatch side: a Dispatch from call to reply (Send is not observed). Handle side: the handler's run in the processor.",
			Buckets: latencyBuckets,
		}, []string{labelSide, labelAggregate, labelType}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_transactions_total",
			Help: "Processor transactions by outcome: committed, or aborted (including an unknown outcome, after which the state is rebuilt).",
		}, []string{labelOutcome}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "interlock_transaction_commands",
			Help:    "Command records per processor transaction.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000},
		}),
		txDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "interlock_transaction_duration_seconds",
			Help:    "Processor transactions from begin to commit or abort.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
		restores: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "interlock_restore_duration_seconds",
			Help:    "Partition restores (replaying the events partition on assignment), waits for open transactions included.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600},
		}, []string{labelTopic}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_events_replayed_total",
			Help: "Events read back from the events topic by completed restores.",
		}, []string{labelTopic}),
		badRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_bad_records_total",
			Help: "Records the processor could not use, by kind (command: rejected for what the record is; event: its aggregate cannot be rebuilt) and reason (bad_ulid, missing_header, bad_header, unknown_type, unknown_schema, undecodable, upcast_failed, too_large, other). The partition goes on.",
		}, []string{labelKind, labelReason}),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlock_projection_parked_total",
			Help: "Poison events a projection parked in its dead-letter topic (its aggregate's later events wait behind them), by reason: those of interlock_bad_records_total, or handler_failed.",
		}, []string{labelProjection, labelReason}),
		stats: newStatsCollector(),
	}
	cs := []prometheus.Collector{m.commands, m.latency, m.transactions, m.batchSize, m.txDuration, m.restores, m.replayed, m.badRecords, m.parked, m.stats}
	var errs []error
	var done []prometheus.Collector
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		} else {
			done = append(done, c)
		}
	}
	if len(errs) > 0 {
		// Only ours: Unregister removes any collector of equal descriptors.
		for _, c := range done {
			reg.Unregister(c)
		}
		return nil, fmt.Errorf("metrics: registering: %w", errors.Join(errs...))
	}
	// Known label values start at zero, so rates and alerts see a series
	// before the first abort.
	m.transactions.WithLabelValues(outcomeCommitted)
	m.transactions.WithLabelValues(outcomeAborted)
	for _, r := range producer.Reasons {
		m.badRecords.WithLabelValues(kindCommand, r)
		m.badRecords.WithLabelValues(kindEvent, r)
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	} else {
		// A wrapped registerer cannot be read back: serve ours alone.
		r := prometheus.NewRegistry()
		r.MustRegister(cs...)
		m.gatherer = r
	}
	return m, nil
}

// Watch makes m read src's counters and lag at every scrape; src is the
// application built with m (an *interlock.App). A later call replaces
// src; Watch(nil) stops reading it. Before the first call those metrics
// are absent.
func (m *Metrics) Watch(src Source) {
	if src == nil {
		m.stats.src.Store(nil)
		return
	}
	m.stats.src.Store(&src)
}

// Handler serves the metrics in the Prometheus exposition formats, for
// /metrics: everything registered with the registerer given to New when it
// can be read back (a *prometheus.Registry, prometheus.DefaultRegisterer),
// Interlock's metrics alone otherwise.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}

// statsCollector reads an application's counters at scrape time.
type statsCollector struct {
	src    atomic.Pointer[Source]
	counts []statDesc
	cached *prometheus.Desc
	lag    *prometheus.Desc
	// projLag and projBehind are the projections' lag in records and
	// in time.
	projLag, projBehind *prometheus.Desc
}

// statDesc is one counter of consumer.Stats.
type statDesc struct {
	desc  *prometheus.Desc
	value func(consumer.Stats) int64
}

func newStatsCollector() *statsCollector {
	counter := func(name, help string, value func(consumer.Stats) int64) statDesc {
		return statDesc{prometheus.NewDesc(name, help, nil, nil), value}
	}
	return &statsCollector{
		counts: []statDesc{
			counter("interlock_snapshot_hits_total", "Snapshots loaded from the snapshot store (restores and evicted aggregates loaded again).",
				func(s consumer.Stats) int64 { return s.SnapshotsLoaded }),
			counter("interlock_snapshot_misses_total", "Aggregates looked up in the snapshot store that had no snapshot (a new aggregate's first command is one).",
				func(s consumer.Stats) int64 { return s.SnapshotMisses }),
			counter("interlock_snapshot_writes_total", "Snapshots written to the snapshot store.",
				func(s consumer.Stats) int64 { return s.SnapshotsWritten }),
			counter("interlock_snapshot_ignored_total", "Snapshots ignored as corrupt, of another state type, or inconsistent with the log.",
				func(s consumer.Stats) int64 { return s.SnapshotsIgnored }),
			counter("interlock_snapshot_store_errors_total", "Failed snapshot store calls (writes, loads, claims); processing goes on from memory and the log.",
				func(s consumer.Stats) int64 { return s.StoreErrors }),
			counter("interlock_snapshot_write_errors_total", "Failed snapshot writes, of the failed snapshot store calls; the aggregates stay dirty and are written again later.",
				func(s consumer.Stats) int64 { return s.SnapshotWriteErrors }),
			counter("interlock_cache_evictions_total", "Aggregates dropped from the processor's memory to stay within the cache bounds.",
				func(s consumer.Stats) int64 { return s.Evictions }),
			counter("interlock_command_duplicates_total", "Retried commands (same command ID) answered with their first outcome.",
				func(s consumer.Stats) int64 { return s.Duplicates }),
			counter("interlock_restore_full_replays_total", "Restores that read a non-empty events partition from its start.",
				func(s consumer.Stats) int64 { return s.FullReplays }),
			counter("interlock_batches_given_back_total", "Batches of commands handed back unhandled because a command's schema could not be had from the schema registry; each is tried again a second later.",
				func(s consumer.Stats) int64 { return s.BatchesGivenBack }),
		},
		cached: prometheus.NewDesc("interlock_cache_aggregates", "Aggregates held in the processor's memory.", nil, nil),
		lag: prometheus.NewDesc("interlock_consumer_lag", "Committed commands waiting behind the last one fetched, per owned commands partition.",
			[]string{labelTopic, labelPartition}, nil),
		projLag: prometheus.NewDesc("interlock_projection_lag_records", "Records of an events partition after the last event a projection applied (any instance; transaction markers included, so a caught-up partition shows 0 or 1).",
			[]string{labelProjection, labelTopic, labelPartition}, nil),
		projBehind: prometheus.NewDesc("interlock_projection_lag_seconds", "How long the oldest event a projection has not applied yet on a partition this instance owns has waited since it was written; 0 when none waits.",
			[]string{labelProjection, labelTopic, labelPartition}, nil),
	}
}

// Projectors is what Watch reads of a source that has projections (an
// *interlock.App) for their lag.
type Projectors interface {
	Projectors() []*projections.Projector
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range c.counts {
		ch <- s.desc
	}
	ch <- c.cached
	ch <- c.lag
	ch <- c.projLag
	ch <- c.projBehind
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.src.Load()
	if p == nil {
		return
	}
	src := *p
	st := src.Stats()
	for _, s := range c.counts {
		ch <- prometheus.MustNewConstMetric(s.desc, prometheus.CounterValue, float64(s.value(st)))
	}
	ch <- prometheus.MustNewConstMetric(c.cached, prometheus.GaugeValue, float64(st.Cached))
	for topic, parts := range src.Lag() {
		for p, lag := range parts {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(lag), topic, fmt.Sprint(p))
		}
	}
	ps, ok := src.(Projectors)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, pr := range ps.Projectors() {
		parts, err := pr.Lag(ctx)
		if err != nil {
			continue // a scrape must not fail for one projection
		}
		for _, p := range parts {
			part := fmt.Sprint(p.Partition)
			ch <- prometheus.MustNewConstMetric(c.projLag, prometheus.GaugeValue, float64(p.Lag), pr.Name(), p.Topic, part)
			ch <- prometheus.MustNewConstMetric(c.projBehind, prometheus.GaugeValue, p.Behind.Seconds(), pr.Name(), p.Topic, part)
		}
	}
}
