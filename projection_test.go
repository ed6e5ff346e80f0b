package interlock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/pgtest"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/projections/postgres"
)

// projectorApp starts an instance of the bank app that only runs the
// projections given, and returns it unclosed.
func projectorApp(t *testing.T, brokers []string, name string, ps ...projections.Runner) *interlock.App {
	t.Helper()
	return projectorAppWith(t, brokers, name, nil, ps...)
}

// projectorAppWith is projectorApp with more options.
func projectorAppWith(t *testing.T, brokers []string, name string, opts []interlock.Option, ps ...projections.Runner) *interlock.App {
	t.Helper()
	b := interlock.NewBuilder(append([]interlock.Option{interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()), interlock.WithRoles(interlock.RoleProject),
		interlock.WithSessionTimeout(6 * time.Second), interlock.WithTransactionTimeout(5 * time.Second),
	}, opts...)...).RegisterAggregate(bank.Accounts())
	for _, p := range ps {
		b.RegisterProjection(p)
	}
	return launch(t, b)
}

// readModel returns the bank_balances table.
func readModel(t *testing.T, pool *pgxpool.Pool) map[string]bank.AccountBalance {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, owner, balance, events FROM bank_balances`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bank.AccountBalance{}
	var id string
	var b bank.AccountBalance
	if _, err := pgx.ForEachRow(rows, []any{&id, &b.Owner, &b.Balance, &b.Events}, func() error {
		out[id] = b
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// fold returns each account's balance and event count as the log says.
func fold(t *testing.T, brokers []string, topic string) map[string]bank.AccountBalance {
	t.Helper()
	out := map[string]bank.AccountBalance{}
	for _, e := range kafkatest.ReadAll(t, brokers, topic) {
		b := out[string(e.Key)]
		b.Events++
		switch header(e, producer.HeaderType) {
		case "AccountOpened":
			b.Owner = "ada"
		case "MoneyDeposited":
			b.Balance += depositAmount(t, e)
		default:
			t.Fatalf("unexpected event %s", header(e, producer.HeaderType))
		}
		out[string(e.Key)] = b
	}
	return out
}

// lastPositions returns, per partition of topic, the position of its last
// event.
func lastPositions(t *testing.T, brokers []string, topic string) []interlock.Position {
	t.Helper()
	last := map[int32]int64{}
	for _, e := range kafkatest.ReadAll(t, brokers, topic) {
		last[e.Partition] = max(last[e.Partition], e.Offset)
	}
	var out []interlock.Position
	for p, o := range last {
		out = append(out, interlock.Position{Topic: topic, Partition: p, Offset: o})
	}
	return out
}

// TestProjectionExactlyOnce (invariant 6): projector instances join, and
// are killed mid-batch or stopped, again and again, while commands flow
// (rebalances move partitions between them); the PostgreSQL read model
// ends equal to the fold of the log, no event counted twice. A kill cuts
// an instance off Kafka and PostgreSQL while it has a batch's transaction
// open, as SIGKILL would: the transaction is rolled back, and its
// partitions move on once its session expires. A stop asks for a close
// that lets the batch in progress finish first. (The chaos suite also
// kills worker processes with SIGKILL.)
func TestProjectionExactlyOnce(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	pool, _ := pgtest.Pool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := startApp(t, brokers, name)
	ids := make([]ulid.ULID, 12)
	for i := range ids {
		ids[i] = open(t, ctx, app)
	}
	// Slow batches (2 ms per row update, up to 30 rows): kills and stops
	// land inside them.
	slow := func() projections.Option { return projections.WithMaxBatch(30) }
	if _, err := pool.Exec(ctx, `
CREATE TABLE bank_balances (id text PRIMARY KEY, owner text NOT NULL, balance bigint NOT NULL, events bigint NOT NULL);
CREATE FUNCTION slow() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER slow BEFORE UPDATE ON bank_balances FOR EACH ROW EXECUTE FUNCTION slow();`); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sent atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for !stop.Load() {
				if _, err := interlock.Dispatch(ctx, app, deposit(ids[r.IntN(len(ids))], int64(1+r.IntN(9)))); err != nil {
					t.Errorf("deposit: %v", err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	type instance struct {
		app   *interlock.App
		crash *crash
	}
	var live, killed []instance
	stops, midBatch := 0, 0
	for round := range 11 {
		c := newCrash()
		live = append(live, instance{projectorAppWith(t, brokers, name, []interlock.Option{c.kafka()}, bank.Balances("balances", c.pool(t, pool), slow())), c})
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		switch {
		case round%2 == 0 && round > 0:
			// Kill an instance while it has a batch's transaction open.
			crashes := make([]*crash, len(live))
			for i, in := range live {
				crashes[i] = in.crash
			}
			victim := inTransaction(t, pool, crashes, 10*time.Second)
			if victim == nil {
				victim = live[0].crash
			} else {
				midBatch++
			}
			victim.Kill()
			i := slices.IndexFunc(live, func(in instance) bool { return in.crash == victim })
			killed = append(killed, live[i])
			live = slices.Delete(live, i, i+1)
		case len(live) > 1:
			// Ask for a stop mid-batch (Close returns at once; the batch
			// finishes first).
			gone, cancel := context.WithTimeout(ctx, time.Millisecond)
			_ = live[0].app.Close(gone)
			cancel()
			live = live[1:]
			stops++
		}
	}
	stop.Store(true)
	wg.Wait()
	// The catch-up at full speed.
	if _, err := pool.Exec(ctx, `DROP TRIGGER slow ON bank_balances`); err != nil {
		t.Fatal(err)
	}
	for _, in := range live {
		in.app.Close(ctx)
	}
	// The killed instances, cut off since, are let back only to be closed
	// (a batch they try again then is refused: its checkpoint is stale).
	for _, in := range killed {
		in.crash.Revive()
		in.app.Close(ctx)
	}
	final := projectorApp(t, brokers, name, bank.Balances("balances", pool))
	defer final.Close(context.Background())
	topic := name + ".bank-account.events"
	if err := final.Projection("balances").WaitFor(ctx, lastPositions(t, brokers, topic)); err != nil {
		t.Fatal(err)
	}
	want, got := fold(t, brokers, topic), readModel(t, pool)
	if len(got) != len(want) {
		t.Fatalf("read model has %d accounts, the log %d", len(got), len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("account %s: read model %+v, fold of the log %+v", id, got[id], w)
		}
	}
	t.Logf("%d deposits; %d projector instances killed (%d of them mid-batch), %d stopped", sent.Load(), len(killed), midBatch, stops)
	if sent.Load() < 50 || midBatch < 3 {
		t.Fatalf("only %d deposits, %d kills mid-batch: the run proves little", sent.Load(), midBatch)
	}
}

// TestReadYourWrites: a query built with After sees the command just
// dispatched, from an instance that runs the projection and from one that
// only asks.
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	pool, _ := pgtest.Pool(t)
	ctx := ctxT(t)
	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(bank.Balances("balances", pool)))
	asker := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()), interlock.WithRoles(interlock.RoleDispatch)).RegisterAggregate(bank.Accounts()).
		RegisterProjection(bank.Balances("balances", pool)))
	id := open(t, ctx, app)
	for i, a := range []*interlock.App{app, asker, app, asker} {
		res, err := interlock.Dispatch(ctx, a, deposit(id, 10))
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		b, err := interlock.Ask(wctx, a, bank.BalanceOf{QueryOf: interlock.After[bank.AccountBalance](res.Positions), ID: id})
		cancel()
		if err != nil {
			t.Fatalf("ask %d: %v", i, err)
		}
		if want := int64(10 * (i + 1)); b.Balance != want || b.Owner != "ada" {
			t.Fatalf("ask %d: %+v, want balance %d", i, b, want)
		}
	}
	_, err := interlock.Ask(ctx, app, bank.BalanceOf{ID: interlock.NewID()})
	if !errors.Is(err, bank.ErrNoAccount) {
		t.Fatalf("unknown account: %v", err)
	}
	type Unregistered struct{ interlock.QueryOf[int] }
	if _, err := interlock.Ask(ctx, app, Unregistered{}); !errors.Is(err, interlock.ErrUnknownQuery) {
		t.Fatalf("unregistered query: %v", err)
	}
	// A wait that cannot be met ends with ctx.
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	far := []interlock.Position{{Topic: name + ".bank-account.events", Partition: 0, Offset: 1 << 40}}
	if _, err := interlock.Ask(wctx, app, bank.BalanceOf{QueryOf: interlock.After[bank.AccountBalance](far), ID: id}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unreachable position: %v", err)
	}
}

// TestPoisonEvent: a handler that keeps failing for one aggregate parks its
// event in the dead-letter topic and holds back that aggregate's later
// events (also after a restart), while other aggregates flow on; under
// the Stop policy the projection stops and says which event.
func TestPoisonEvent(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	pool, _ := pgtest.Pool(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name)
	good, bad := open(t, ctx, app), open(t, ctx, app)
	var cured atomic.Bool
	poisoned := func(policy projections.Policy) *projections.Projection[pgx.Tx] {
		p := projections.New("audit", poisonSink{postgres.NewSink(pool), pool}, projections.WithPolicy(policy), projections.WithRetries(1, time.Millisecond))
		projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[bank.MoneyDeposited]) error {
			if e.AggregateID == bad && e.Data.Amount == 13 && !cured.Load() {
				return errors.New("unlucky amount")
			}
			_, err := tx.Exec(ctx, `INSERT INTO audit (id, version, amount) VALUES ($1, $2, $3)`, e.AggregateID.String(), e.Version, e.Data.Amount)
			return err
		})
		return p
	}
	for _, c := range []bank.DepositMoney{deposit(bad, 1), deposit(bad, 13), deposit(good, 2), deposit(bad, 3), deposit(good, 4)} {
		if _, err := interlock.Dispatch(ctx, app, c); err != nil {
			t.Fatal(err)
		}
	}
	topic := name + ".bank-account.events"
	audit := func() map[string][]int64 {
		rows, err := pool.Query(ctx, `SELECT id, amount FROM audit ORDER BY id, version`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]int64{}
		var id string
		var amount int64
		if _, err := pgx.ForEachRow(rows, []any{&id, &amount}, func() error { out[id] = append(out[id], amount); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}

	// Stop: the projection halts at the poison event, naming it.
	stopped := projectorApp(t, brokers, name, poisoned(projections.Stop))
	pr := stopped.Projection("audit")
	for deadline := time.Now().Add(30 * time.Second); pr.Err() == nil && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if err := pr.Err(); err == nil || !strings.Contains(err.Error(), "MoneyDeposited") || !strings.Contains(err.Error(), "unlucky amount") {
		t.Fatalf("stopped projection: err %v, want one naming the event and the cause", err)
	}
	if err := pr.WaitFor(ctx, lastPositions(t, brokers, topic)); err == nil {
		t.Fatal("WaitFor succeeded on a stopped projection")
	}
	stopped.Close(ctx)
	if got := audit()[bad.String()]; len(got) != 1 || got[0] != 1 {
		t.Fatalf("bad account after stop: %v, want only the event before the poison", got)
	}

	// DeadLetter: the same projection, restarted with the policy changed.
	run := func() *interlock.App {
		a := projectorApp(t, brokers, name, poisoned(projections.DeadLetter))
		if err := a.Projection("audit").WaitFor(ctx, lastPositions(t, brokers, topic)); err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := run()
	got := audit()
	if fmt.Sprint(got[good.String()]) != "[2 4]" || fmt.Sprint(got[bad.String()]) != "[1]" {
		t.Fatalf("audit %v: want the good account's deposits, and the bad one's before the poison only", got)
	}
	parked := kafkatest.ReadAll(t, brokers, name+".audit.dlq")
	if len(parked) != 2 || header(parked[0], projections.HeaderDLQError) == "" || !strings.Contains(header(parked[0], projections.HeaderDLQError), "unlucky amount") ||
		!strings.Contains(header(parked[1], projections.HeaderDLQError), "held behind") {
		t.Fatalf("dead letters: %d records (%v), want the poison and the deposit held behind it", len(parked), parked)
	}
	a.Close(ctx)

	// After a restart the aggregate is still held: its new event is parked.
	if _, err := interlock.Dispatch(ctx, app, deposit(bad, 5)); err != nil {
		t.Fatal(err)
	}
	if _, err := interlock.Dispatch(ctx, app, deposit(good, 6)); err != nil {
		t.Fatal(err)
	}
	a = run()
	defer a.Close(ctx)
	got = audit()
	if fmt.Sprint(got[good.String()]) != "[2 4 6]" || fmt.Sprint(got[bad.String()]) != "[1]" {
		t.Fatalf("audit after restart %v", got)
	}
	if n := len(kafkatest.ReadAll(t, brokers, name+".audit.dlq")); n != 3 {
		t.Fatalf("%d dead letters after restart, want 3", n)
	}

	// The parked events wait, in order; a retry while the handler still
	// fails keeps them; once it is fixed, a retry applies them and the
	// aggregate's events flow again.
	pr = a.Projection("audit")
	list, err := pr.Parked(ctx)
	if err != nil || len(list) != 3 || list[0].Key != bad.String() || !strings.Contains(list[0].Error, "unlucky") || list[0].Type != "MoneyDeposited" {
		t.Fatalf("parked %+v, %v", list, err)
	}
	if err := pr.Retry(ctx, bad.String()); !errors.Is(err, projections.ErrRetryFailed) {
		t.Fatalf("retry while the handler fails: %v", err)
	}
	cured.Store(true)
	if err := pr.Retry(ctx, bad.String()); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if list, err := pr.Parked(ctx); err != nil || len(list) != 0 {
		t.Fatalf("parked after the retry: %+v, %v", list, err)
	}
	res, err := interlock.Dispatch(ctx, app, deposit(bad, 7))
	if err != nil {
		t.Fatal(err)
	}
	if err := pr.WaitFor(ctx, res.Positions); err != nil {
		t.Fatal(err)
	}
	if got := audit(); fmt.Sprint(got[bad.String()]) != "[1 13 3 5 7]" {
		t.Fatalf("bad account after the retry: %v", got[bad.String()])
	}
}

// poisonSink is the PostgreSQL sink with an audit table.
type poisonSink struct {
	*postgres.Sink
	pool *pgxpool.Pool
}

func (s poisonSink) Setup(ctx context.Context) error {
	if err := s.Sink.Setup(ctx); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS audit (id text, version bigint, amount bigint, PRIMARY KEY (id, version))`)
	return err
}

// TestProjectionRebuild: a new version of a projection is built from the
// start of the log beside the old one, which answers queries until the new
// one has caught up; then the new one answers, and the two read models are
// equal.
func TestProjectionRebuild(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	oldPool, _ := pgtest.Pool(t)
	newPool, _ := pgtest.Pool(t) // the new version's tables, in a schema of their own
	ctx := ctxT(t)
	first := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(bank.Balances("balances", oldPool)))
	var ids []ulid.ULID
	for i := range 4 {
		ids = append(ids, open(t, ctx, first))
		for j := range 5 {
			if _, err := interlock.Dispatch(ctx, first, deposit(ids[i], int64(j+1))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The serving version has every event before the new one starts.
	if err := first.Projection("balances").WaitFor(ctx, lastPositions(t, brokers, name+".bank-account.events")); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	answeredBy := map[string]int{}
	second := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()), interlock.WithRoles(interlock.RoleDispatch|interlock.RoleProject)).
		RegisterAggregate(bank.Accounts()).
		RegisterProjection(bank.Balances("balances", oldPool)).
		RegisterProjection(bank.Balances("balances", newPool, projections.Version(2))).
		UseQuery(func(next middleware.Handler) middleware.Handler {
			return func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
				mu.Lock()
				answeredBy[m.Aggregate]++
				mu.Unlock()
				return next(ctx, m)
			}
		}))
	ask := func() bank.AccountBalance {
		t.Helper()
		b, err := interlock.Ask(ctx, second, bank.BalanceOf{ID: ids[0]})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := ask(); b.Balance != 15 {
		t.Fatalf("balance %d from the serving version, want 15", b.Balance)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ask()
		mu.Lock()
		switched := answeredBy["balances.v2"] > 0
		mu.Unlock()
		if switched {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("version 2 never answered: %v", answeredBy)
		}
	}
	mu.Lock()
	if answeredBy["balances"] == 0 {
		t.Errorf("the old version never answered: %v", answeredBy)
	}
	mu.Unlock()
	if b := ask(); b.Balance != 15 || b.Events != 6 {
		t.Fatalf("balance from version 2: %+v", b)
	}
	st, err := second.Projection("balances.v2").Status(ctx)
	if err != nil || !st.CaughtUp || len(st.Partitions) != 3 {
		t.Fatalf("status %+v, %v", st, err)
	}
	old, rebuilt := readModel(t, oldPool), readModel(t, newPool)
	if len(rebuilt) != len(ids) || fmt.Sprint(old) != fmt.Sprint(rebuilt) {
		t.Fatalf("rebuilt read model %v, old %v", rebuilt, old)
	}
}

// TestProjectionReset: a reset projection starts over from the beginning of
// the log, once no instance runs it, and ends equal to the fold of the log.
func TestProjectionReset(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	pool, _ := pgtest.Pool(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name)
	for range 3 {
		id := open(t, ctx, app)
		if _, err := interlock.Dispatch(ctx, app, deposit(id, 5)); err != nil {
			t.Fatal(err)
		}
	}
	topic := name + ".bank-account.events"
	runner := projectorApp(t, brokers, name, bank.Balances("balances", pool))
	if err := runner.Projection("balances").WaitFor(ctx, lastPositions(t, brokers, topic)); err != nil {
		t.Fatal(err)
	}
	admin := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()), interlock.WithRoles(interlock.RoleDispatch)).RegisterAggregate(bank.Accounts()).
		RegisterProjection(bank.Balances("balances", pool)))
	if err := admin.Projection("balances").Reset(ctx); !errors.Is(err, projections.ErrRunning) {
		t.Fatalf("reset while running: %v", err)
	}
	if err := runner.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := admin.Projection("balances").Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(readModel(t, pool)); n != 0 {
		t.Fatalf("%d rows after the reset", n)
	}
	again := projectorApp(t, brokers, name, bank.Balances("balances", pool))
	defer again.Close(context.Background())
	if err := again.Projection("balances").WaitFor(ctx, lastPositions(t, brokers, topic)); err != nil {
		t.Fatal(err)
	}
	want, got := fold(t, brokers, topic), readModel(t, pool)
	if fmt.Sprint(want) != fmt.Sprint(got) {
		t.Fatalf("read model after the reset %v, fold %v", got, want)
	}
}

// TestResetParksAgain: after a reset, an event that fails again is parked
// again and holds its aggregate's later events again, as the first time;
// the dead-letter topic still holds its first, resolved, copy.
func TestResetParksAgain(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name)
	id := open(t, ctx, app)
	for _, amount := range []int64{13, 5} {
		if _, err := interlock.Dispatch(ctx, app, deposit(id, amount)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var applied []int64
	audit := func() *projections.Projection[*struct{}] {
		p := projections.New("audit", projections.Effects(), projections.WithRetries(0, time.Millisecond))
		projections.On(p, func(ctx context.Context, _ *struct{}, e projections.Event[bank.MoneyDeposited]) error {
			if e.Data.Amount == 13 {
				return errors.New("unlucky amount")
			}
			mu.Lock()
			applied = append(applied, e.Data.Amount)
			mu.Unlock()
			return nil
		})
		return p
	}
	last := lastPositions(t, brokers, name+".bank-account.events")
	check := func(when string) {
		t.Helper()
		runner := projectorApp(t, brokers, name, audit())
		if err := runner.Projection("audit").WaitFor(ctx, last); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		parked, err := runner.Projection("audit").Parked(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(parked) != 2 || len(applied) != 0 {
			t.Fatalf("%s: %d events parked, %v applied; want the deposit of 13 and the one held behind it parked, none applied", when, len(parked), applied)
		}
		if err := runner.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check("first run")
	admin := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()), interlock.WithRoles(interlock.RoleDispatch)).RegisterAggregate(bank.Accounts()).
		RegisterProjection(audit()))
	if err := admin.Projection("audit").Reset(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the reset")
}

// TestStatusLagInTime: a projection's lag in time is how long the oldest
// event it has not applied has waited: on the partitions an instance owns
// (Lag, the metric) and, through Status (projections status), on every
// partition, also to an instance that does not run it; 0 where it has
// caught up. A partition quiet for a while before that event does not
// count: the time since the last event applied would.
func TestStatusLagInTime(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name)
	stuck := func() *projections.Projection[*struct{}] {
		p := projections.New("stuck", projections.Effects(), projections.WithPolicy(projections.Stop), projections.WithRetries(0, time.Millisecond))
		projections.On(p, func(ctx context.Context, _ *struct{}, e projections.Event[bank.MoneyDeposited]) error {
			if e.Data.Amount == 13 {
				return errors.New("unlucky amount")
			}
			return nil
		})
		return p
	}
	runner := projectorApp(t, brokers, name, stuck())
	defer runner.Close(context.Background())
	asker := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()), interlock.WithRoles(interlock.RoleDispatch)).RegisterAggregate(bank.Accounts()).RegisterProjection(stuck()))
	id := interlock.NewID()
	res, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Projection("stuck").WaitFor(ctx, res.Positions); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the partition is quiet
	sending := time.Now()
	if _, err := interlock.Dispatch(ctx, app, deposit(id, 13)); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	for deadline := time.Now().Add(30 * time.Second); runner.Projection("stuck").Err() == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the projection did not stop at the poison event")
		}
	}
	time.Sleep(300 * time.Millisecond)
	at := res.Positions[0]
	check := func(what string, parts []projections.PartitionStatus, before time.Time) {
		t.Helper()
		if len(parts) != 3 {
			t.Fatalf("%s: %d partitions, want 3", what, len(parts))
		}
		for _, p := range parts {
			switch {
			case p.Partition != at.Partition:
				if p.Lag != 0 || p.Behind != 0 {
					t.Errorf("%s: partition %d without events: lag %d, %v behind; want 0", what, p.Partition, p.Lag, p.Behind)
				}
			case p.Lag == 0 || p.Behind < before.Sub(sent) || p.Behind > time.Since(sending):
				t.Errorf("%s: partition %d: lag %d, %v behind; want the deposit waiting, for %v to %v",
					what, p.Partition, p.Lag, p.Behind, before.Sub(sent), time.Since(sending))
			}
		}
	}
	before := time.Now()
	parts, err := runner.Projection("stuck").Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check("Lag of the running instance", parts, before)
	for what, a := range map[string]*interlock.App{"running instance": runner, "asking instance": asker} {
		before := time.Now()
		st, err := a.Projection("stuck").Status(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if st.CaughtUp {
			t.Fatalf("%s: status %+v: caught up", what, st)
		}
		check("Status of the "+what, st.Partitions, before)
	}
}

// TestProjectionStartsFromTheDatabase: the PostgreSQL sink's checkpoints,
// not the group's offsets in Kafka, say where a projection starts: with
// the database restored from a backup taken mid-run (its read model and
// checkpoints together), the projection applies again what came after the
// backup, although Kafka's offsets are past it, and ends equal to the fold
// of the log.
func TestProjectionStartsFromTheDatabase(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	pool, _ := pgtest.Pool(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name)
	topic := name + ".bank-account.events"
	ids := []ulid.ULID{open(t, ctx, app), open(t, ctx, app), open(t, ctx, app)}
	deposits := func(amount int64) {
		for _, id := range ids {
			if _, err := interlock.Dispatch(ctx, app, deposit(id, amount)); err != nil {
				t.Fatal(err)
			}
		}
	}
	project := func() {
		t.Helper()
		runner := projectorApp(t, brokers, name, bank.Balances("balances", pool))
		defer runner.Close(ctx)
		if err := runner.Projection("balances").WaitFor(ctx, lastPositions(t, brokers, topic)); err != nil {
			t.Fatal(err)
		}
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	deposits(5)
	project()
	exec(`CREATE TABLE backup_balances AS SELECT * FROM bank_balances; CREATE TABLE backup_checkpoints AS SELECT * FROM interlock_checkpoints`)
	backup := readModel(t, pool)
	deposits(7)
	project()
	exec(`DELETE FROM bank_balances; INSERT INTO bank_balances SELECT * FROM backup_balances;
DELETE FROM interlock_checkpoints; INSERT INTO interlock_checkpoints SELECT * FROM backup_checkpoints`)

	// Kafka's offsets are past the restored checkpoints.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	committed, err := kadm.NewClient(cl).FetchOffsets(ctx, name+".projection.balances")
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	stored, err := postgres.NewSink(pool).Checkpoints(ctx, "balances", topic)
	if err != nil {
		t.Fatal(err)
	}
	ahead := 0
	for p, next := range stored {
		if o, ok := committed.Lookup(topic, p); ok && o.At > next {
			ahead++
		}
	}
	if ahead == 0 {
		t.Fatalf("the group's offsets %v are not past the restored checkpoints %v: the test proves nothing", committed, stored)
	}

	project()
	want, got := fold(t, brokers, topic), readModel(t, pool)
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(got) == fmt.Sprint(backup) {
		t.Fatalf("read model after the restore %v, fold of the log %v (the backup held %v)", got, want, backup)
	}
}
