package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/consumer"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/metrics"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/snapshot"
)

// flakyStore is an in-memory snapshot store whose writes fail on demand.
type flakyStore struct {
	*snapshot.Memory
	failSaves atomic.Bool
}

func (s *flakyStore) Save(ctx context.Context, p snapshot.Partition, token int64, snaps []snapshot.Snapshot, watermark int64) error {
	if s.failSaves.Load() {
		return errors.New("store down")
	}
	return s.Memory.Save(ctx, p, token, snaps, watermark)
}

// failWithdrawalsOf13 fails (not rejects) withdrawals of 13 in the
// processor, as a broken dependency would.
var failWithdrawalsOf13 = middleware.For(func(ctx context.Context, c bank.WithdrawMoney, m *middleware.Message, next middleware.Handler) (middleware.Outcome, error) {
	if c.Amount == 13 {
		return middleware.Outcome{}, errors.New("ledger service unreachable")
	}
	return next(ctx, m)
})

// restoreCount counts completed restores.
type restoreCount struct{ n atomic.Int64 }

func (r *restoreCount) OnRestore(consumer.Restore) { r.n.Add(1) }

func testLogger() *slog.Logger {
	if os.Getenv("INTERLOCK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestMetricsOfARun runs an application through two lives on one snapshot
// store and checks that a scrape shows every metric, non-zero where work
// happened:
//
//   - the first life applies commands and writes snapshots, but its last
//     flush fails, so one account has none and the watermark stays behind;
//   - the second restores from that watermark (a snapshot hit, events
//     replayed), opens an account (a store lookup that misses), answers a
//     retried command with its first outcome, applies, rejects, fails and
//     sends commands through a one-aggregate cache (evictions and loads),
//     and finally fails a snapshot write.
func TestMetricsOfARun(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store := &flakyStore{Memory: snapshot.NewMemory()}
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	start := func(opts ...interlock.Option) *interlock.App {
		t.Helper()
		app, err := interlock.NewBuilder(append([]interlock.Option{
			interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
			interlock.WithLogger(testLogger()), interlock.WithSnapshotStore(store),
			interlock.WithSessionTimeout(10 * time.Second), interlock.WithTransactionTimeout(5 * time.Second),
			interlock.WithObserver(m),
		}, opts...)...).
			RegisterAggregate(bank.Accounts(), interlock.Snapshots(snapshot.EveryN(2))).
			Use(m.Middleware()).
			UseHandle(failWithdrawalsOf13).
			Build()
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Close(context.Background()) })
		m.Watch(app)
		return app
	}
	open := func(app *interlock.App) ulid.ULID {
		t.Helper()
		id := interlock.NewID()
		if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	deposit := func(id ulid.ULID, amount int64) bank.DepositMoney {
		return bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: amount}
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	// First life: three accounts at version 2, each snapshotted (EveryN(2)).
	first := start(interlock.WithFlushInterval(time.Hour))
	ids := []ulid.ULID{open(first), open(first), open(first)}
	for _, id := range ids {
		if _, err := interlock.Dispatch(ctx, first, deposit(id, 100)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("the first snapshots", func() bool { return first.Stats().SnapshotsWritten >= 3 })
	late := open(first) // one event: no snapshot due
	retried := deposit(ids[0], 5)
	retried.CommandOf = retried.CommandOf.WithID(interlock.NewID())
	if _, err := interlock.Dispatch(ctx, first, retried); err != nil {
		t.Fatal(err)
	}
	store.failSaves.Store(true) // the final flush fails
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	store.failSaves.Store(false)

	// Second life. Readiness is awaited through an observer: polling
	// App.Ready during a restore races with it (see the report of issue 6).
	restores := &restoreCount{}
	second := start(interlock.WithFlushInterval(50*time.Millisecond), interlock.WithCache(1, 1<<30), interlock.WithObserver(restores))
	waitFor("the restores", func() bool { return restores.n.Load() >= 3 })
	if st := second.Stats(); st.EventsReplayed == 0 {
		t.Fatalf("the restore replayed nothing: %+v", st)
	}
	ids = append(ids, open(second)) // looked up in the store: a miss
	if res, err := interlock.Dispatch(ctx, second, retried); err != nil || res.Version != 3 {
		t.Fatalf("retried command: %+v, %v; want its first outcome, version 3", res, err)
	}
	for _, id := range append(ids, late) {
		if _, err := interlock.Dispatch(ctx, second, deposit(id, 10)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = interlock.Dispatch(ctx, second, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](ids[1]), Amount: 1_000_000})
	if !errors.Is(err, interlock.ErrRejected) {
		t.Fatalf("overdraft: %v, want a rejection", err)
	}
	if _, err := interlock.Send(ctx, second, deposit(ids[2], 1)); err != nil {
		t.Fatal(err)
	}
	_, err = interlock.Dispatch(ctx, second, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](ids[1]), Amount: 13})
	if !errors.Is(err, interlock.ErrFailed) {
		t.Fatalf("a withdrawal that fails in the processor: %v, want ErrFailed", err)
	}
	waitFor("evictions and reloads", func() bool {
		if _, err := interlock.Dispatch(ctx, second, deposit(ids[0], 1)); err != nil {
			t.Fatal(err)
		}
		st := second.Stats()
		return st.Evictions > 0 && st.SnapshotsLoaded > 0
	})
	store.failSaves.Store(true)
	waitFor("a failed snapshot write", func() bool {
		if _, err := interlock.Dispatch(ctx, second, deposit(ids[1], 1)); err != nil {
			t.Fatal(err)
		}
		return second.Stats().StoreErrors > 0
	})

	events, commands := name+".bank-account.events", name+".bank-account.commands"
	type check struct {
		metric string
		labels string // "k=v,..." in name order; "*" sums every series
		min    float64
	}
	checks := []check{
		{"interlock_commands_total", "aggregate=bank-account,outcome=applied,side=dispatch,type=DepositMoney", 1},
		{"interlock_commands_total", "aggregate=bank-account,outcome=rejected,side=dispatch,type=WithdrawMoney", 1},
		{"interlock_commands_total", "aggregate=bank-account,outcome=sent,side=dispatch,type=DepositMoney", 1},
		{"interlock_commands_total", "aggregate=bank-account,outcome=applied,side=handle,type=OpenAccount", 5},
		{"interlock_commands_total", "aggregate=bank-account,outcome=applied,side=handle,type=DepositMoney", 1},
		{"interlock_commands_total", "aggregate=bank-account,outcome=rejected,side=handle,type=WithdrawMoney", 1},
		{"interlock_commands_total", "aggregate=bank-account,outcome=failed,side=dispatch,type=WithdrawMoney", 1},
		{"interlock_commands_total", "aggregate=bank-account,outcome=failed,side=handle,type=WithdrawMoney", 1},
		{"interlock_command_duration_seconds", "aggregate=bank-account,side=dispatch,type=DepositMoney", 1},
		{"interlock_command_duration_seconds", "aggregate=bank-account,side=handle,type=DepositMoney", 1},
		{"interlock_transactions_total", "outcome=committed", 1},
		{"interlock_transactions_total", "outcome=aborted", 0},
		{"interlock_transaction_commands", "", 1},
		{"interlock_transaction_duration_seconds", "", 1},
		{"interlock_restore_duration_seconds", "topic=" + events, 3},
		{"interlock_events_replayed_total", "topic=" + events, 1},
		{"interlock_snapshot_hits_total", "", 1},
		{"interlock_snapshot_misses_total", "", 1},
		{"interlock_snapshot_writes_total", "", 1},
		{"interlock_snapshot_ignored_total", "", 0},
		{"interlock_snapshot_store_errors_total", "", 1},
		{"interlock_snapshot_write_errors_total", "", 1},
		{"interlock_cache_aggregates", "", 1},
		{"interlock_cache_evictions_total", "", 1},
		{"interlock_command_duplicates_total", "", 1},
		{"interlock_restore_full_replays_total", "", 0},
		{"interlock_consumer_lag", "partition=0,topic=" + commands, 0},
		{"interlock_consumer_lag", "partition=1,topic=" + commands, 0},
		{"interlock_consumer_lag", "partition=2,topic=" + commands, 0},
	}
	// The observers hear of a batch a moment after its reply: scrape until
	// every check passes, then report the last scrape.
	var failed []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mfs := scrape(t, m.Handler())
		failed = failed[:0]
		for _, c := range checks {
			got, ok := series(mfs, c.metric)[c.labels]
			if !ok || got < c.min {
				failed = append(failed, c.metric+"{"+c.labels+"}: "+formatSeries(series(mfs, c.metric)))
			}
		}
		if len(failed) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(failed) > 0 {
		t.Fatalf("metrics missing or below their minimum:\n%s", strings.Join(failed, "\n"))
	}
	// No label value is an ID.
	for name, mf := range scrape(t, m.Handler()) {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if _, err := ulid.ParseStrict(l.GetValue()); err == nil {
					t.Errorf("%s has an ID as its %s label", name, l.GetName())
				}
			}
		}
	}
}

func formatSeries(s map[string]float64) string {
	if s == nil {
		return "absent"
	}
	return fmt.Sprint(s)
}

// TestProjectionLagMetrics: a projection held back shows its lag in
// records and in time on the partitions it owns, and none once it caught
// up.
func TestProjectionLagMetrics(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var seen atomic.Int64
	p := projections.New("slow", projections.Effects())
	projections.On(p, func(ctx context.Context, _ *struct{}, e projections.Event[bank.MoneyDeposited]) error {
		if seen.Add(1) > 1 {
			<-gate // the second deposit waits: the later ones lag
		}
		return nil
	})
	app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(p).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	defer close(gate)
	m.Watch(app)
	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	key := "partition=0,projection=slow,topic=" + name + ".bank-account.events"
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mfs := scrape(t, m.Handler())
		records, seconds := series(mfs, "interlock_projection_lag_records")[key], series(mfs, "interlock_projection_lag_seconds")[key]
		if records >= 3 && seconds > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag %v records, %v s; want the waiting deposits, in records and time", records, seconds)
		}
	}
}

// TestConsumerLagMetric: commands waiting behind the batch a processor
// works on show as interlock_consumer_lag of their partition (and in
// App.Lag), and the lag falls to 0 once they are handled. The processor
// fetches one record batch at a time, so its first batch leaves the
// others waiting.
func TestConsumerLagMetric(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := func(roles interlock.Role, opts ...interlock.Option) *interlock.Builder {
		return interlock.NewBuilder(append([]interlock.Option{interlock.WithBrokers(brokers...), interlock.WithName(name),
			interlock.WithPartitions(1), interlock.WithLogger(testLogger()), interlock.WithRoles(roles)}, opts...)...).
			RegisterAggregate(bank.Accounts())
	}
	gateway, err := build(interlock.RoleDispatch).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer gateway.Close(context.Background())
	// Five commands wait before any processor runs, each in its own
	// record batch (Send returns once its record is written).
	const waiting = 5
	for range waiting {
		if _, err := interlock.Send(ctx, gateway, bank.OpenAccount{Command: interlock.To(interlock.NewID()), Owner: "ada"}); err != nil {
			t.Fatal(err)
		}
	}

	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	hold := func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, msg *middleware.Message) (middleware.Outcome, error) {
			if first.CompareAndSwap(false, true) {
				close(entered)
				<-release
			}
			return next(ctx, msg)
		}
	}
	processor, err := build(interlock.RoleProcess, interlock.WithObserver(m),
		interlock.WithClientOptions(kgo.FetchMaxBytes(1), kgo.FetchMaxPartitionBytes(1))).UseHandle(hold).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := processor.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer processor.Close(context.Background())
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	m.Watch(processor)
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the processor never handled a command")
	}
	topic := name + ".bank-account.commands"
	key := "partition=0,topic=" + topic
	// One batch per fetch leaves the other four behind; a fetch of more
	// than one would leave fewer, never none.
	lag := processor.Lag()[topic][0]
	if lag < 1 || lag > waiting-1 {
		t.Errorf("App.Lag = %d while the first command is handled, want the commands behind it (1 to %d)", lag, waiting-1)
	}
	if got := series(scrape(t, m.Handler()), "interlock_consumer_lag")[key]; got != float64(lag) {
		t.Errorf("interlock_consumer_lag{%s} = %v, App.Lag %d", key, got, lag)
	}
	unblock()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := processor.Stats()
		got, ok := series(scrape(t, m.Handler()), "interlock_consumer_lag")[key]
		if st.CommandsApplied == waiting && ok && got == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the commands were handled: %d applied, lag %v (present %v); want %d and 0", st.CommandsApplied, got, ok, waiting)
		}
	}
}
