package interlock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/pgtest"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/projections/postgres"
)

// Regression tests of the dead letters, from a review: each failed before
// its fix.

// Retry on a Kafka-sink projection for a key with nothing parked is
// answered.
func TestKafkaRetryWithNothingParked(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	p := projections.New("export", projections.Kafka(), projections.WithPolicy(projections.DeadLetter))
	projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[bank.MoneyDeposited]) error {
		return nil
	})
	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(p))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	err := app.Projection("export").Retry(ctx, "nothing-parked")
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Retry of a key with nothing parked hangs on the Kafka sink")
	}
	if err != nil {
		t.Fatalf("Retry of a key with nothing parked: %v, want it answered as resolved", err)
	}
}

type memSink struct {
	mu      sync.Mutex
	applied []string
}

type memTx struct{ w []string }

func (s *memSink) Apply(ctx context.Context, _ string, _ []projections.Checkpoint, fn func(context.Context, *memTx) error) error {
	tx := &memTx{}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	s.mu.Lock()
	s.applied = append(s.applied, tx.w...)
	s.mu.Unlock()
	return nil
}

// poisonedPair starts two projector instances of a projection named
// "held" whose handler fails on a deposit of 13 until cured, has such a
// deposit parked by one of them, and returns that one (owner), the other,
// the command-side app and the poisoned account.
func poisonedPair(t *testing.T, ctx context.Context, sink *memSink, cured *atomic.Bool) (app, owner, other *interlock.App, bad ulid.ULID) {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app = startApp(t, brokers, name)
	bad = open(t, ctx, app)
	var sawPoison atomic.Int32
	mk := func(inst int32) *projections.Projection[*memTx] {
		p := projections.New("held", projections.Sink[*memTx](sink), projections.WithPolicy(projections.DeadLetter), projections.WithRetries(0, time.Millisecond))
		projections.On(p, func(ctx context.Context, tx *memTx, e projections.Event[bank.MoneyDeposited]) error {
			if e.Data.Amount == 13 && !cured.Load() {
				sawPoison.Store(inst)
				return errors.New("unlucky")
			}
			tx.w = append(tx.w, fmt.Sprintf("%s:%d", e.AggregateID, e.Data.Amount))
			return nil
		})
		return p
	}
	a := projectorApp(t, brokers, name, mk(1))
	b := projectorApp(t, brokers, name, mk(2))
	time.Sleep(8 * time.Second) // both in the group
	if _, err := interlock.Dispatch(ctx, app, deposit(bad, 13)); err != nil {
		t.Fatal(err)
	}
	for len(kafkatest.ReadAll(t, brokers, name+".held.dlq")) == 0 {
		time.Sleep(200 * time.Millisecond)
	}
	if sawPoison.Load() == 2 {
		a, b = b, a
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	return app, a, b, bad
}

// An aggregate held on one instance stays held on the instance that
// takes its partition over.
func TestHeldKeyFollowsItsPartition(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sink := &memSink{}
	app, owner, other, bad := poisonedPair(t, ctx, sink, new(atomic.Bool))
	owner.Close(ctx)
	res, err := interlock.Dispatch(ctx, app, deposit(bad, 5))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Projection("held").WaitFor(ctx, res.Positions); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, w := range sink.applied {
		if w == bad.String()+":5" {
			t.Errorf("the event after a parked one was applied by the instance that took the partition over (not held)")
		}
	}
}

type flakySink struct {
	*postgres.Sink
	pool    *pgxpool.Pool
	failing *atomic.Bool
}

func (s flakySink) Setup(ctx context.Context) error {
	if err := s.Sink.Setup(ctx); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS audit2 (id text, version bigint, amount bigint)`)
	return err
}

func (s flakySink) Apply(ctx context.Context, projection string, cps []projections.Checkpoint, fn func(context.Context, pgx.Tx) error) error {
	if s.failing.Load() {
		return errors.New("database unreachable")
	}
	return s.Sink.Apply(ctx, projection, cps, fn)
}

// uncommittedPark is a PostgreSQL projection "audit" whose handler fails
// on a deposit of 13 until cured, the database going away right after, so
// that the batch moving past the parked event never commits; its sink's
// first reading of the events' checkpoints is slow when slow is set.
type uncommittedPark struct {
	brokers              []string
	name                 string
	pool                 *pgxpool.Pool
	bad                  ulid.ULID
	failing, cured, slow atomic.Bool
}

// newUncommittedPark has an account's deposit of 13 parked by a first
// instance of the projection, closed before any commit past it (a crash,
// as far as the sink is concerned), with the database back.
func newUncommittedPark(t *testing.T, ctx context.Context) *uncommittedPark {
	t.Helper()
	u := &uncommittedPark{brokers: kafkatest.Brokers(t), name: kafkatest.Name(t)}
	u.pool, _ = pgtest.Pool(t)
	app := startApp(t, u.brokers, u.name)
	u.bad = open(t, ctx, app)
	if _, err := interlock.Dispatch(ctx, app, deposit(u.bad, 13)); err != nil {
		t.Fatal(err)
	}
	a := projectorApp(t, u.brokers, u.name, u.projection())
	for len(kafkatest.ReadAll(t, u.brokers, u.name+".audit.dlq")) == 0 {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	a.Close(cctx) // its checkpoint never moved past the parked event
	ccancel()
	u.failing.Store(false)
	return u
}

func (u *uncommittedPark) projection() *projections.Projection[pgx.Tx] {
	sink := slowCheckpoints{flakySink{postgres.NewSink(u.pool), u.pool, &u.failing}, &u.slow}
	p := projections.New("audit", projections.Sink[pgx.Tx](sink), projections.WithPolicy(projections.DeadLetter), projections.WithRetries(0, time.Millisecond))
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[bank.MoneyDeposited]) error {
		if e.Data.Amount == 13 && !u.cured.Load() {
			u.failing.Store(true) // the database goes away right after: the batch without the poison cannot commit
			return errors.New("unlucky")
		}
		_, err := tx.Exec(ctx, `INSERT INTO audit2 (id, version, amount) VALUES ($1, $2, $3)`, e.AggregateID.String(), e.Version, e.Data.Amount)
		return err
	})
	return p
}

// appliedOnce fails t unless the bad deposit is in the read model once.
func (u *uncommittedPark) appliedOnce(t *testing.T, ctx context.Context) {
	t.Helper()
	var n int
	if err := u.pool.QueryRow(ctx, `SELECT count(*) FROM audit2 WHERE id = $1 AND amount = 13`, u.bad.String()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("the exactly-once sink applied the retried event %d times, want once", n)
	}
}

// slowCheckpoints is flakySink whose first reading of the events topic's
// checkpoints, when slow is set, takes 3 s: a database under load while
// an instance takes partitions over.
type slowCheckpoints struct {
	flakySink
	slow *atomic.Bool
}

func (s slowCheckpoints) Checkpoints(ctx context.Context, projection, topic string) (map[int32]int64, error) {
	if strings.HasSuffix(topic, ".events") && s.slow.CompareAndSwap(true, false) {
		time.Sleep(3 * time.Second)
	}
	return s.flakySink.Checkpoints(ctx, projection, topic)
}

// A park written before a sink commit that never happened is written
// again after a restart; a retry applies the event once all the same.
func TestDuplicateParkAppliedOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u := newUncommittedPark(t, ctx)
	b := projectorApp(t, u.brokers, u.name, u.projection())
	defer b.Close(ctx)
	if err := b.Projection("audit").WaitFor(ctx, lastPositions(t, u.brokers, u.name+".bank-account.events")); err != nil {
		t.Fatal(err)
	}
	for _, r := range kafkatest.ReadAll(t, u.brokers, u.name+".audit.dlq") {
		t.Logf("dlq: %s from offset %s (%s)", header(r, "interlock-type"), header(r, projections.HeaderDLQOffset), header(r, projections.HeaderDLQError))
	}
	u.cured.Store(true)
	if err := b.Projection("audit").Retry(ctx, u.bad.String()); err != nil {
		t.Fatal(err)
	}
	u.appliedOnce(t, ctx)
}

// A retry requested while the partition of its parked event has not been
// committed past that event (the batch that parked it never committed)
// waits for that commit: served at once, it would apply the event, and
// the batch's next try, no longer held, would apply it again.
func TestRetryBeforeParkCommitted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u := newUncommittedPark(t, ctx)
	u.cured.Store(true)
	u.slow.Store(true) // the new owner's first polls come back empty
	b := projectorApp(t, u.brokers, u.name, u.projection())
	defer b.Close(ctx)
	if err := b.Projection("audit").Retry(ctx, u.bad.String()); err != nil {
		t.Fatal(err)
	}
	if err := b.Projection("audit").WaitFor(ctx, lastPositions(t, u.brokers, u.name+".bank-account.events")); err != nil {
		t.Fatal(err)
	}
	u.appliedOnce(t, ctx)
}

// A Kafka-sink batch longer than the transaction timeout does not stop
// the projection: a new session goes on.
func TestKafkaSinkOutlivesSlowBatch(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	export := name + ".export"
	kafkatest.CreateTopic(t, brokers, export, 1)
	var slow atomic.Bool
	slow.Store(true)
	p := projections.New("export", projections.Kafka())
	projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[bank.MoneyDeposited]) error {
		out.Produce(&kgo.Record{Topic: export, Value: []byte("x")})
		if slow.CompareAndSwap(true, false) {
			time.Sleep(5 * time.Second) // over the transaction timeout
		}
		return nil
	})
	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
		interlock.WithLogger(testLogger()), interlock.WithTransactionTimeout(2*time.Second)).RegisterAggregate(bank.Accounts()).RegisterProjection(p))
	id := open(t, ctx, app)
	res, err := interlock.Dispatch(ctx, app, deposit(id, 1))
	if err != nil {
		t.Fatal(err)
	}
	werr := app.Projection("export").WaitFor(ctx, res.Positions)
	t.Logf("WaitFor: %v; Err: %v", werr, app.Projection("export").Err())
	if app.Projection("export").Err() != nil {
		t.Errorf("a slow batch stopped the projection for good: %v", app.Projection("export").Err())
	}
}

// A retry request read while no instance owns the key's partition is
// answered once one does.
func TestRetryDuringTakeover(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sink := &memSink{}
	var cured atomic.Bool
	_, owner, other, bad := poisonedPair(t, ctx, sink, &cured)
	cured.Store(true)
	owner.Close(ctx)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	if err := other.Projection("held").Retry(rctx, bad.String()); err != nil {
		t.Fatalf("retry right after the owner left: %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if !slices.Contains(sink.applied, bad.String()+":13") {
		t.Fatalf("the retried event was not applied: %v", sink.applied)
	}
}

// Projector.Close(ctx) returns when ctx ends, even while a batch runs.
func TestProjectorCloseHonoursCtx(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := startApp(t, brokers, name)
	id := open(t, ctx, app)
	sink := &memSink{}
	started := make(chan struct{}, 1)
	p := projections.New("slow", projections.Sink[*memTx](sink))
	projections.On(p, func(ctx context.Context, tx *memTx, e projections.Event[bank.MoneyDeposited]) error {
		select {
		case started <- struct{}{}:
		default:
		}
		time.Sleep(12 * time.Second) // a handler that does not watch ctx
		return nil
	})
	a := projectorApp(t, brokers, name, p)
	if _, err := interlock.Dispatch(ctx, app, deposit(id, 1)); err != nil {
		t.Fatal(err)
	}
	<-started
	cctx, ccancel := context.WithTimeout(ctx, time.Second)
	defer ccancel()
	t0 := time.Now()
	err := a.Close(cctx)
	t.Logf("Close with a 1 s ctx took %v: %v", time.Since(t0), err)
	if time.Since(t0) > 5*time.Second {
		t.Errorf("Close overran its ctx by %v", time.Since(t0)-time.Second)
	}
}

type retryCrashSink struct {
	*postgres.Sink
	pool    *pgxpool.Pool
	crash   *atomic.Bool
	inRetry chan struct{}
}

func (s retryCrashSink) Setup(ctx context.Context) error {
	if err := s.Sink.Setup(ctx); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS audit3 (id text, version bigint, amount bigint)`)
	return err
}

func (s retryCrashSink) Apply(ctx context.Context, projection string, cps []projections.Checkpoint, fn func(context.Context, pgx.Tx) error) error {
	err := s.Sink.Apply(ctx, projection, cps, fn)
	if err == nil && len(cps) == 1 && strings.Contains(cps[0].Topic, "#") && s.crash.Load() {
		close(s.inRetry)
		time.Sleep(3 * time.Second) // the process dies here, after the commit, before the answer
	}
	return err
}

// A retry committed in the sink but not answered (a crash) is not applied
// again by the next Retry of the key.
func TestRetryAfterLostAnswer(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	pool, _ := pgtest.Pool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := startApp(t, brokers, name)
	bad := open(t, ctx, app)
	var cured, crash atomic.Bool
	inRetry := make(chan struct{})
	mk := func() *projections.Projection[pgx.Tx] {
		p := projections.New("audit", projections.Sink[pgx.Tx](retryCrashSink{postgres.NewSink(pool), pool, &crash, inRetry}), projections.WithPolicy(projections.DeadLetter), projections.WithRetries(0, time.Millisecond))
		projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[bank.MoneyDeposited]) error {
			if e.Data.Amount == 13 && !cured.Load() {
				return errors.New("unlucky")
			}
			_, err := tx.Exec(ctx, `INSERT INTO audit3 (id, version, amount) VALUES ($1, $2, $3)`, e.AggregateID.String(), e.Version, e.Data.Amount)
			return err
		})
		return p
	}
	res, err := interlock.Dispatch(ctx, app, deposit(bad, 13))
	if err != nil {
		t.Fatal(err)
	}
	a := projectorApp(t, brokers, name, mk())
	if err := a.Projection("audit").WaitFor(ctx, res.Positions); err != nil {
		t.Fatal(err)
	}
	cured.Store(true)
	crash.Store(true)
	go func() {
		rctx, rcancel := context.WithTimeout(ctx, 8*time.Second)
		defer rcancel()
		t.Logf("first Retry: %v", a.Projection("audit").Retry(rctx, bad.String()))
	}()
	<-inRetry
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	a.Close(cctx)
	ccancel()
	crash.Store(false)
	b := projectorApp(t, brokers, name, mk())
	defer b.Close(ctx)
	if list, err := b.Projection("audit").Parked(ctx); err == nil {
		t.Logf("parked after the restart: %d", len(list))
	}
	if err := b.Projection("audit").Retry(ctx, bad.String()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit3 WHERE amount = 13`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("a retried event was applied %d times by the exactly-once sink, want once", n)
	}
}
