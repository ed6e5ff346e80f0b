package interlock_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/kafkaregistry"
)

func testLogger() *slog.Logger {
	if os.Getenv("INTERLOCK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startApp builds and starts an application of the bank domain on brokers
// and closes it when the test ends.
func startApp(t *testing.T, brokers []string, name string, opts ...interlock.Option) *interlock.App {
	t.Helper()
	return startWith(t, interlock.NewBuilder(append([]interlock.Option{
		interlock.WithBrokers(brokers...),
		interlock.WithName(name),
		interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()),
		interlock.WithSessionTimeout(10 * time.Second),
		interlock.WithTransactionTimeout(5 * time.Second),
	}, opts...)...).RegisterAggregate(bank.Accounts()))
}

// launch builds and starts an application; the caller closes it.
func launch(t *testing.T, b *interlock.Builder) *interlock.App {
	t.Helper()
	app, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return app
}

// startWith launches an application that is closed when the test ends.
func startWith(t *testing.T, b *interlock.Builder) *interlock.App {
	t.Helper()
	app := launch(t, b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := app.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return app
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func open(t *testing.T, ctx context.Context, app *interlock.App) ulid.ULID {
	t.Helper()
	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
		t.Fatalf("open: %v", err)
	}
	return id
}

func deposit(id ulid.ULID, amount int64) bank.DepositMoney {
	return bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: amount}
}

// eventsOf returns the committed events of one aggregate, in log order.
func eventsOf(t *testing.T, brokers []string, topic string, id ulid.ULID) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for _, r := range kafkatest.ReadAll(t, brokers, topic) {
		if string(r.Key) == id.String() {
			out = append(out, r)
		}
	}
	return out
}

// eventsOfCommand counts the events of aggregate id in topic that command
// cmd wrote.
func eventsOfCommand(t *testing.T, brokers []string, topic string, id, cmd ulid.ULID) int {
	t.Helper()
	n := 0
	for _, e := range eventsOf(t, brokers, topic, id) {
		if header(e, producer.HeaderCommandID) == cmd.String() {
			n++
		}
	}
	return n
}

func header(r *kgo.Record, k string) string {
	v, _ := producer.Header(r, k)
	return string(v)
}

func TestDispatchResultAndRejection(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app := startApp(t, brokers, name)
	ctx := ctxT(t)
	id := open(t, ctx, app)

	res, err := interlock.Dispatch(ctx, app, deposit(id, 100))
	if err != nil {
		t.Fatalf("deposit: %v", err)
	}
	if res.Value.Balance != 100 || res.Version != 2 || len(res.Positions) != 1 {
		t.Fatalf("deposit result = %+v, want balance 100 at version 2 with one position", res)
	}

	_, err = interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 500})
	var rej *interlock.RejectedError
	if !errors.As(err, &rej) || !errors.Is(err, interlock.ErrRejected) || !strings.Contains(rej.Reason, "insufficient funds") {
		t.Fatalf("withdraw 500 from 100: err = %v, want a rejection saying insufficient funds", err)
	}
	if errors.Is(err, interlock.ErrConcurrency) || errors.Is(err, interlock.ErrFailed) {
		t.Fatalf("a domain rejection must not match ErrConcurrency or ErrFailed: %v", err)
	}

	_, err = interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id).Expect(1), Amount: 5})
	var conflict *interlock.ConcurrencyError
	if !errors.Is(err, interlock.ErrConcurrency) || !errors.As(err, &conflict) || conflict.Expected != 1 || conflict.Actual != 2 {
		t.Fatalf("expected version 1 at version 2: err = %v, want ErrConcurrency 1 vs 2", err)
	}
	res, err = interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id).Expect(2), Amount: 5})
	if err != nil || res.Value.Balance != 105 {
		t.Fatalf("deposit at the expected version: %+v, %v", res, err)
	}

	evs := eventsOf(t, brokers, name+".bank-account.events", id)
	var types []string
	for _, e := range evs {
		types = append(types, header(e, producer.HeaderType)+"@"+header(e, producer.HeaderVersion))
	}
	if got, want := strings.Join(types, " "), "AccountOpened@1 MoneyDeposited@2 MoneyDeposited@3"; got != want {
		t.Fatalf("events = %s, want %s (rejected commands write nothing)", got, want)
	}
	if p := res.Positions[0]; evs[2].Offset != p.Offset || evs[2].Partition != p.Partition {
		t.Fatalf("position %+v does not point at the event (partition %d offset %d)", p, evs[2].Partition, evs[2].Offset)
	}
}

func TestDispatchErrors(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	app := startApp(t, brokers, kafkatest.Name(t))
	ctx := ctxT(t)
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Owner: "no id"}); !errors.Is(err, aggregate.ErrMissingID) {
		t.Fatalf("command without aggregate ID: err = %v, want ErrMissingID", err)
	}
	type Unregistered struct {
		interlock.Command
	}
	if _, err := interlock.Dispatch(ctx, app, Unregistered{Command: interlock.To(interlock.NewID())}); !errors.Is(err, interlock.ErrUnknownCommand) {
		t.Fatalf("unregistered command: err = %v, want ErrUnknownCommand", err)
	}
	short, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-short.Done()
	if _, err := interlock.Dispatch(short, app, deposit(interlock.NewID(), 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired context: err = %v", err)
	}
}

func TestConcurrentDispatchOneAggregate(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app := startApp(t, brokers, name)
	ctx := ctxT(t)
	id := open(t, ctx, app)

	const n = 200
	var wg sync.WaitGroup
	versions := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			res, err := interlock.Dispatch(ctx, app, deposit(id, 1))
			versions[i], errs[i] = res.Version, err
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("dispatch %d: %v", i, errs[i])
		}
		if seen[versions[i]] {
			t.Fatalf("version %d returned twice", versions[i])
		}
		seen[versions[i]] = true
	}
	evs := eventsOf(t, brokers, name+".bank-account.events", id)
	if len(evs) != n+1 {
		t.Fatalf("%d events, want %d", len(evs), n+1)
	}
	commands := map[string]bool{}
	for i, e := range evs {
		if v := header(e, producer.HeaderVersion); v != strconv.Itoa(i+1) {
			t.Fatalf("event %d has version %s, want %d: versions must be contiguous", i, v, i+1)
		}
		c := header(e, producer.HeaderCommandID)
		if commands[c] {
			t.Fatalf("command %s has two events", c)
		}
		commands[c] = true
	}
	res, err := interlock.Dispatch(ctx, app, deposit(id, 1))
	if err != nil || res.Value.Balance != n+1 || res.Version != n+2 {
		t.Fatalf("after the burst: %+v, %v; want balance %d at version %d", res, err, n+1, n+2)
	}
}

// TestRestartRestoresState: the second run of an application replays the
// first's events. Their schema IDs come from the built-in registry and
// survive the restart (issue 7): the fingerprint of MoneyDeposited's
// schema is taken in the registry's topic beforehand, so its ID is one
// only the registry's log can give back.
func TestRestartRestoresState(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)

	fingerprint := schemaID(t, schema.Avro(), reflectTypeOf[bank.MoneyDeposited]())
	// Opening the registry creates its topic as the application would.
	reg, err := kafkaregistry.New(ctx, kafkaregistry.Topic(name+"._schemas"), kafkaregistry.ClientOpts(kgo.SeedBrokers(brokers...)))
	if err != nil {
		t.Fatal(err)
	}
	reg.Close()
	other := `{"type":"record","name":"other.Taken","fields":[{"name":"x","type":"long"}]}`
	kafkatest.Produce(t, brokers, &kgo.Record{Topic: name + "._schemas", Key: []byte(fmt.Sprintf("id/%d", fingerprint)), Value: fmt.Appendf(nil, `{"schema":%q}`, other)})

	first := launch(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name),
		interlock.WithPartitions(3), interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()))
	id := open(t, ctx, first)
	for range 3 {
		if _, err := interlock.Dispatch(ctx, first, deposit(id, 10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	frameID := func(r *kgo.Record) uint32 { return binary.BigEndian.Uint32(r.Value[1:5]) }
	evs := eventsOf(t, brokers, name+".bank-account.events", id)
	before := frameID(evs[1])
	if before == fingerprint {
		t.Fatalf("MoneyDeposited written with schema ID %d, its fingerprint, which another schema holds", before)
	}

	second := startApp(t, brokers, name)
	res, err := interlock.Dispatch(ctx, second, bank.WithdrawMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 25})
	if err != nil {
		t.Fatalf("withdraw after restart: %v", err)
	}
	if res.Value.Balance != 5 || res.Version != 5 {
		t.Fatalf("after restart: %+v, want balance 5 at version 5 (state replayed from the log)", res)
	}
	if _, err := interlock.Dispatch(ctx, second, deposit(id, 1)); err != nil {
		t.Fatal(err)
	}
	evs = eventsOf(t, brokers, name+".bank-account.events", id)
	if after := frameID(evs[len(evs)-1]); after != before {
		t.Fatalf("MoneyDeposited's schema ID is %d after the restart, %d before", after, before)
	}
}

// schemaID returns the schema ID codec writes for t.
func schemaID(t *testing.T, codec schema.Codec, typ reflect.Type) uint32 {
	t.Helper()
	s, err := codec.For(typ)
	if err != nil {
		t.Fatal(err)
	}
	return s.ID()
}

// TestStopOneProcessorMidLoad runs two processors in one group behind a
// gateway, stops one while commands flow, and checks invariant 1: every
// command that got a success reply has its events exactly once, with
// contiguous versions.
func TestStopOneProcessorMidLoad(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	gateway := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch))
	p1 := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleProcess))
	startApp(t, brokers, name, interlock.WithRoles(interlock.RoleProcess))

	const accounts, perAccount = 6, 40
	ids := make([]ulid.ULID, accounts)
	for i := range ids {
		ids[i] = open(t, ctx, gateway)
	}
	var mu sync.Mutex
	applied := map[string]int64{} // command ID -> amount
	var failures []error
	var done sync.WaitGroup
	var progress sync.WaitGroup
	progress.Add(accounts * perAccount / 4)
	var once sync.Once
	count := 0
	for _, id := range ids {
		done.Go(func() {
			for i := range perAccount {
				c := deposit(id, int64(i+1))
				c.CommandID = ulid.Make()
				callCtx, cancel := context.WithTimeout(ctx, 45*time.Second)
				_, err := interlock.Dispatch(callCtx, gateway, c)
				cancel()
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					applied[c.CommandID.String()] = c.Amount
				}
				count++
				if count <= accounts*perAccount/4 {
					progress.Done()
				}
				mu.Unlock()
			}
		})
	}
	progress.Wait()
	once.Do(func() {
		if err := p1.Close(ctx); err != nil {
			t.Errorf("stopping processor 1: %v", err)
		}
	})
	done.Wait()
	if len(failures) > 0 {
		t.Errorf("%d dispatches failed, first: %v", len(failures), failures[0])
	}

	all := kafkatest.ReadAll(t, brokers, name+".bank-account.events")
	seen := map[string]int{}
	next := map[string]int{}
	for _, e := range all {
		key := string(e.Key)
		next[key]++
		if v := header(e, producer.HeaderVersion); v != strconv.Itoa(next[key]) {
			t.Fatalf("aggregate %s: event with version %s where %d was due", key, v, next[key])
		}
		seen[header(e, producer.HeaderCommandID)]++
	}
	for c := range applied {
		if seen[c] != 1 {
			t.Errorf("command %s got a success reply but has %d events", c, seen[c])
		}
	}
	for c, n := range seen {
		if n != 1 {
			t.Errorf("command %s has %d events", c, n)
		}
	}
	if t.Failed() {
		return
	}
	// The fold of the log is what the surviving processor holds.
	for _, id := range ids {
		res, err := interlock.Dispatch(ctx, gateway, deposit(id, 1))
		if err != nil {
			t.Fatal(err)
		}
		want := int64(1)
		for _, e := range all {
			if string(e.Key) == id.String() && header(e, producer.HeaderType) == "MoneyDeposited" {
				want += depositAmount(t, e)
			}
		}
		if res.Value.Balance != want {
			t.Errorf("account %s: balance %d, fold of the log gives %d", id, res.Value.Balance, want)
		}
	}
}

func depositAmount(t *testing.T, r *kgo.Record) int64 {
	t.Helper()
	return decodeAs[bank.MoneyDeposited](t, r).Amount
}

func TestBadCommandRecords(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	startApp(t, brokers, name, interlock.WithRoles(interlock.RoleProcess))
	gateway := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch))
	id := open(t, ctx, gateway)

	// A gateway built from other code: a command type the processor does
	// not know, and one whose payload it cannot decode.
	type CloseAccount struct{ interlock.Command }
	type DepositMoney struct { // same name as bank.DepositMoney, other shape
		interlock.Command
		Amount string
	}
	other := aggregate.Define[bank.Account]("bank-account",
		aggregate.Handle(func(*aggregate.Root[bank.Account], CloseAccount) error { return nil }),
		aggregate.Handle(func(*aggregate.Root[bank.Account], DepositMoney) error { return nil }),
	)
	stranger := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name),
		interlock.WithPartitions(3), interlock.WithLogger(testLogger()), interlock.WithRoles(interlock.RoleDispatch)).RegisterAggregate(other))

	_, err := interlock.Dispatch(ctx, stranger, CloseAccount{Command: interlock.To(id)})
	if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), `unknown command type "CloseAccount"`) {
		t.Fatalf("unknown command type: err = %v", err)
	}
	_, err = interlock.Dispatch(ctx, stranger, DepositMoney{Command: interlock.To(id), Amount: "lots"})
	if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), "DepositMoney") {
		t.Fatalf("undecodable command: err = %v", err)
	}
	// Records nobody waits for: no headers, a key that is not a ULID, a
	// truncated value. The processor logs them and moves on.
	kafkatest.Produce(t, brokers,
		&kgo.Record{Topic: name + ".bank-account.commands", Key: []byte(id.String()), Value: []byte("garbage")},
		&kgo.Record{Topic: name + ".bank-account.commands", Key: []byte("not-a-ulid"), Value: []byte{0}},
		&kgo.Record{Topic: name + ".bank-account.commands", Key: []byte(id.String()), Value: []byte{0, 1},
			Headers: []kgo.RecordHeader{{Key: producer.HeaderType, Value: []byte("DepositMoney")}, {Key: producer.HeaderCommandID, Value: []byte(ulid.Make().String())}}},
	)
	res, err := interlock.Dispatch(ctx, gateway, deposit(id, 7))
	if err != nil || res.Value.Balance != 7 || res.Version != 2 {
		t.Fatalf("the partition must keep processing after bad records: %+v, %v", res, err)
	}
	if n := len(eventsOf(t, brokers, name+".bank-account.events", id)); n != 2 {
		t.Fatalf("%d events, want 2: bad records write nothing", n)
	}
}

func TestBuildErrors(t *testing.T) {
	type Ping struct{ interlock.Command }
	type Pong struct{}
	type Odd struct {
		interlock.Command
		C chan int
	}
	type S struct{ N int }
	ping := func(*aggregate.Root[S], Ping) error { return nil }
	pong := func(*S, Pong) {}
	tests := []struct {
		name string
		b    *interlock.Builder
		want string
	}{
		{"no aggregate", interlock.NewBuilder(), "no aggregate registered"},
		{"command handled twice in one aggregate",
			interlock.NewBuilder().RegisterAggregate(aggregate.Define[S]("a", aggregate.Handle(ping), aggregate.Handle(ping))),
			"is handled twice"},
		{"command handled by two aggregates",
			interlock.NewBuilder().RegisterAggregate(aggregate.Define[S]("a", aggregate.Handle(ping))).
				RegisterAggregate(aggregate.Define[S]("b", aggregate.Handle(ping))),
			`handled by two aggregates: "a" and "b"`},
		{"event without applier", interlock.NewBuilder().RegisterAggregate(aggregate.Define[S]("a", aggregate.Handle(ping), aggregate.Emits[S, Pong]())),
			"event interlock_test.Pong has no applier"},
		{"two appliers", interlock.NewBuilder().RegisterAggregate(aggregate.Define[S]("a", aggregate.Handle(ping), aggregate.Apply(pong), aggregate.Apply(pong))),
			"has two appliers"},
		{"no codec", interlock.NewBuilder().RegisterAggregate(aggregate.Define[S]("a",
			aggregate.Handle(func(*aggregate.Root[S], Odd) error { return nil }))),
			"no codec for"},
		{"bad name", interlock.NewBuilder().RegisterAggregate(aggregate.Define[S]("Bad Name", aggregate.Handle(ping))), `aggregate name "Bad Name"`},
		{"aggregate twice", interlock.NewBuilder().RegisterAggregate(bank.Accounts()).RegisterAggregate(bank.Accounts()), "registered twice"},
		{"bad option", interlock.NewBuilder(interlock.WithPartitions(0)).RegisterAggregate(bank.Accounts()), "partitions 0"},
		{"timeouts", interlock.NewBuilder(interlock.WithTransactionTimeout(time.Minute)).RegisterAggregate(bank.Accounts()), "must be below the session timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.b.Build()
			if !errors.Is(err, interlock.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build() = %v, want an ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}

func TestLifecycleHooks(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	var mu sync.Mutex
	var calls []string
	hook := func(n string) interlock.Hook {
		rec := func(what string) func(context.Context) error {
			return func(context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, what+" "+n)
				return nil
			}
		}
		return interlock.Hook{Name: n, Start: rec("start"), Stop: rec("stop")}
	}
	app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(kafkatest.Name(t)), interlock.WithLogger(testLogger())).
		RegisterAggregate(bank.Accounts()).RegisterHook(hook("a")).RegisterHook(hook("b")).Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(calls); got != "[start a start b stop b stop a]" {
		t.Fatalf("hook calls %s, want start in order and stop in reverse", got)
	}
	if _, err := interlock.Dispatch(ctx, app, deposit(interlock.NewID(), 1)); !errors.Is(err, interlock.ErrNotStarted) {
		t.Fatalf("dispatch after close: %v, want ErrNotStarted", err)
	}

	failing, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(kafkatest.Name(t)), interlock.WithLogger(testLogger())).
		RegisterAggregate(bank.Accounts()).RegisterHook(hook("c")).
		RegisterHook(interlock.Hook{Name: "broken", Start: func(context.Context) error { return errors.New("boom") }}).Build()
	if err != nil {
		t.Fatal(err)
	}
	calls = nil
	if err := failing.Start(ctx); err == nil || !strings.Contains(err.Error(), "hook broken: boom") {
		t.Fatalf("start with a failing hook: %v", err)
	}
	if got := fmt.Sprint(calls); got != "[start c stop c]" {
		t.Fatalf("hook calls %s: a failed start must stop the hooks already started", got)
	}
}
