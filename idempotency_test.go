package interlock_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/producer"
)

// TestRetryIsAppliedOnce (invariant 3): a command retried with the same
// command ID is applied once and the retry gets the first outcome: at
// once, after a restart (the record comes from the snapshot), and after
// the snapshot store lost everything (the record comes from the log).
func TestRetryIsAppliedOnce(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	client, _ := redistest.Client(t)
	store, prefix := redisStore(t, redistest.URL(t))
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	build := func() *interlock.App {
		return launch(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(2),
			interlock.WithLogger(testLogger()), interlock.WithSnapshotStore(store)).RegisterAggregate(bank.Accounts()))
	}
	app := build()
	id := open(t, ctx, app)
	retried := deposit(id, 40).WithID(ulid.Make())
	cmd := bank.DepositMoney{CommandOf: retried, Amount: 40}
	first, err := interlock.Dispatch(ctx, app, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := interlock.Dispatch(ctx, app, deposit(id, 2)); err != nil {
		t.Fatal(err)
	}
	check := func(when string, app *interlock.App) {
		t.Helper()
		again, err := interlock.Dispatch(ctx, app, cmd)
		if err != nil {
			t.Fatalf("retry %s: %v", when, err)
		}
		if !reflect.DeepEqual(again, first) {
			t.Fatalf("retry %s: %+v, want the first outcome %+v", when, again, first)
		}
	}
	check("at once", app)
	if err := app.Close(ctx); err != nil {
		t.Fatal(err)
	}

	app = build()
	check("after a restart", app)
	if st := app.Stats(); st.FullReplays != 0 || st.SnapshotsLoaded == 0 || st.Duplicates != 1 {
		t.Fatalf("the restart should answer from the snapshot: %+v", st)
	}
	if err := app.Close(ctx); err != nil {
		t.Fatal(err)
	}

	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no snapshot keys: %v", err)
	}
	client.Del(ctx, keys...)
	app = build()
	defer app.Close(context.Background())
	check("after the snapshot store lost everything", app)
	if st := app.Stats(); st.FullReplays == 0 {
		t.Fatalf("the record should come from a replay of the log: %+v", st)
	}
	res, err := interlock.Dispatch(ctx, app, deposit(id, 1))
	if err != nil || res.Value.Balance != 43 || res.Version != 4 {
		t.Fatalf("after three retries: %+v, %v; want balance 43 at version 4 (each deposit once)", res, err)
	}
	if n := eventsOfCommand(t, brokers, name+".bank-account.events", id, cmd.CommandID); n != 1 {
		t.Fatalf("the retried command has %d events, want 1", n)
	}
}

// TestRetryWindow: the record of a command lasts for the window's number
// of later commands on its aggregate; an older retry is applied again, as
// documented.
func TestRetryWindow(t *testing.T) {
	t.Parallel()
	app := startApp(t, kafkatest.Brokers(t), kafkatest.Name(t), interlock.WithIdempotencyWindow(3))
	ctx := ctxT(t)
	id := open(t, ctx, app)
	cmd := bank.DepositMoney{CommandOf: deposit(id, 5).WithID(ulid.Make()), Amount: 5}
	if _, err := interlock.Dispatch(ctx, app, cmd); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		again, err := interlock.Dispatch(ctx, app, cmd)
		if err != nil || again.Version != 2 {
			t.Fatalf("retry within the window after %d commands: %+v, %v; want version 2", i, again, err)
		}
		if _, err := interlock.Dispatch(ctx, app, deposit(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	late, err := interlock.Dispatch(ctx, app, cmd)
	if err != nil || late.Version != 6 {
		t.Fatalf("retry beyond the window: %+v, %v; want it applied again at version 6", late, err)
	}
}

// TestRetryWithIdempotencyKey: a command built twice from the same
// idempotency key (CommandOf.WithKey) is applied once, and the second gets
// the first outcome; another key is another command.
func TestRetryWithIdempotencyKey(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app := startApp(t, brokers, name)
	ctx := ctxT(t)
	id := open(t, ctx, app)
	pay := func(key string, amount int64) (interlock.Result[bank.Balance], error) {
		return interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id).WithKey(key), Amount: amount})
	}
	first, err := pay("payment-7", 40)
	if err != nil || first.Version != 2 || first.Value.Balance != 40 || first.CommandID != aggregate.KeyID(id, "payment-7") {
		t.Fatalf("first: %+v, %v", first, err)
	}
	again, err := pay("payment-7", 40)
	if err != nil || !reflect.DeepEqual(again, first) {
		t.Fatalf("the same key again: %+v, %v; want the first outcome %+v", again, err, first)
	}
	other, err := pay("payment-8", 5)
	if err != nil || other.Version != 3 || other.Value.Balance != 45 {
		t.Fatalf("another key: %+v, %v; want balance 45 at version 3", other, err)
	}
	if evs := eventsOf(t, brokers, name+".bank-account.events", id); len(evs) != 3 {
		t.Fatalf("%d events, want 3: the open and one deposit per key", len(evs))
	}
}

// TestLateCommandIsNotExecuted: a command whose caller's deadline passed
// before a processor got to it is rejected, not executed late.
func TestLateCommandIsNotExecuted(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	gateway := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch))
	id := interlock.NewID()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := interlock.Dispatch(short, gateway, bank.OpenAccount{Command: interlock.To(id), Owner: "late"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with no processor running: %v, want a deadline error", err)
	}
	processor := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleProcess))
	// The next command on the same aggregate is handled after the late one.
	_, err := interlock.Dispatch(ctx, gateway, deposit(id, 1))
	if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), "account not open") {
		t.Fatalf("deposit after the late open: %v, want a rejection (the open was not executed)", err)
	}
	// Counters move just after the commit the reply reports.
	for deadline := time.Now().Add(5 * time.Second); processor.Stats().CommandsRejected < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := processor.Stats(); st.CommandsRejected != 2 || st.CommandsApplied != 0 {
		t.Fatalf("stats %+v: both commands rejected, none applied", st)
	}
	if evs := eventsOf(t, brokers, name+".bank-account.events", id); len(evs) != 0 {
		t.Fatalf("%d events for a command handled after its deadline", len(evs))
	}
}

// TestRetryGetsItsOwnOutcome (invariant 3): each Dispatch waits for the
// reply to its own attempt. A first attempt that reached the processor
// after its caller gave up is rejected; its retry, with the same command
// ID, is applied and must be told so, not handed the first attempt's
// rejection. Two calls with one command ID at once both get the outcome.
func TestRetryGetsItsOwnOutcome(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	gateway := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch))
	id, cmdID := interlock.NewID(), interlock.NewID()
	open := bank.OpenAccount{Command: interlock.To(id).WithID(cmdID), Owner: "ada"}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := interlock.Dispatch(short, gateway, open); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first attempt, no processor running: %v, want a deadline error", err)
	}
	retried := make(chan error, 1)
	go func() {
		res, err := interlock.Dispatch(ctx, gateway, open)
		if err == nil && res.Version != 1 {
			err = fmt.Errorf("applied at version %d, want 1", res.Version)
		}
		retried <- err
	}()
	// Both attempts wait in the commands topic before a processor starts.
	for len(kafkatest.ReadAll(t, brokers, name+".bank-account.commands")) < 2 {
		time.Sleep(20 * time.Millisecond)
	}
	startApp(t, brokers, name, interlock.WithRoles(interlock.RoleProcess))
	if err := <-retried; err != nil {
		t.Fatalf("the retry: %v; want its own outcome, applied at version 1 (the first attempt was rejected for its deadline)", err)
	}

	dep := bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id).WithID(interlock.NewID()), Amount: 10}
	results := make(chan error, 2)
	for range 2 {
		go func() {
			res, err := interlock.Dispatch(ctx, gateway, dep)
			if err == nil && (res.Version != 2 || res.Value.Balance != 10) {
				err = fmt.Errorf("%+v, want balance 10 at version 2", res)
			}
			results <- err
		}()
	}
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("one of two calls with one command ID: %v", err)
		}
	}
	if evs := eventsOf(t, brokers, name+".bank-account.events", id); len(evs) != 2 {
		t.Fatalf("%d events, want 2: the open and one deposit", len(evs))
	}
}

// TestEnvelopeFlowsToEvents: an event's correlation ID is its command's,
// its causation ID the command's ID.
func TestEnvelopeFlowsToEvents(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app := startApp(t, brokers, name)
	ctx := ctxT(t)
	id := open(t, ctx, app)
	c := deposit(id, 3)
	c.CorrelationID, c.CausationID = "flow-42", "upstream-7"
	res, err := interlock.Dispatch(ctx, app, c)
	if err != nil {
		t.Fatal(err)
	}
	evs := eventsOf(t, brokers, name+".bank-account.events", id)
	e := evs[len(evs)-1]
	if got := header(e, "interlock-correlation-id"); got != "flow-42" {
		t.Errorf("correlation ID %q, want the command's", got)
	}
	if got := header(e, "interlock-causation-id"); got != res.CommandID.String() {
		t.Errorf("causation ID %q, want the command ID %s", got, res.CommandID)
	}
	if got := header(e, "interlock-command-id"); got != res.CommandID.String() {
		t.Errorf("command ID %q, want %s", got, res.CommandID)
	}
}

// TestReplyFromAnOlderProcessor: a processor that predates reply keys
// replies under the command ID; the dispatcher still hands that reply to
// the call waiting for the command (a rolling upgrade, dispatchers first).
func TestReplyFromAnOlderProcessor(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	gateway := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch))
	id, cmdID := interlock.NewID(), interlock.NewID()
	done := make(chan error, 1)
	go func() {
		res, err := interlock.Dispatch(ctx, gateway, bank.OpenAccount{Command: interlock.To(id).WithID(cmdID), Owner: "ada"})
		if err == nil && res.Version != 7 {
			err = fmt.Errorf("version %d, want the old processor's 7", res.Version)
		}
		done <- err
	}()
	var cmds []*kgo.Record
	for cmds = kafkatest.ReadAll(t, brokers, name+".bank-account.commands"); len(cmds) == 0; cmds = kafkatest.ReadAll(t, brokers, name+".bank-account.commands") {
		time.Sleep(20 * time.Millisecond)
	}
	h, err := producer.ParseHeaders(cmds[0])
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{
		Topic: name + ".replies", Partition: h.ReplyTo, Key: []byte(cmdID.String()),
		Value: producer.EncodeReply(&producer.Reply{Status: producer.Applied, CommandID: cmdID.String(), Version: 7}),
	}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("dispatch answered by an older processor: %v", err)
	}
}
