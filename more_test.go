package interlock_test

import (
	"errors"
	"strconv"
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
)

// TestRestoreWaitsForOpenTransaction: a previous owner's transaction is
// still open on the events partition when a processor takes it over. The
// restore must wait for it, so the new owner's state includes its events,
// and the processor is not ready (App.Ready) until that partition is
// restored too.
func TestRestoreWaitsForOpenTransaction(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	// Create the topics, with no processor running.
	startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch))

	id, old := openInTransaction(t, brokers, name, time.Minute)
	gateway := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch))
	if _, err := interlock.Send(ctx, gateway, deposit(id, 1)); err != nil {
		t.Fatal(err)
	}

	obs := &observed{}
	processor := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleProcess), interlock.WithObserver(obs))
	restores := func() int { // partitions restored
		obs.mu.Lock()
		defer obs.mu.Unlock()
		seen := map[int32]bool{}
		for _, r := range obs.restores {
			seen[r.Partition] = true
		}
		return len(seen)
	}
	// The two other partitions are restored; this one waits, and the
	// processor is not ready until it is.
	for deadline := time.Now().Add(30 * time.Second); restores() < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d partitions restored in 30 s, want the 2 with no open transaction", restores())
		}
	}
	type outcome struct {
		res interlock.Result[bank.Balance]
		err error
	}
	got := make(chan outcome, 1)
	go func() {
		res, err := interlock.Dispatch(ctx, gateway, deposit(id, 10))
		got <- outcome{res, err}
	}()
	select {
	case o := <-got:
		t.Fatalf("a command was handled while the previous owner's transaction was open: %+v, %v", o.res, o.err)
	case <-time.After(2 * time.Second):
	}
	if processor.Ready() || restores() != 2 {
		t.Fatalf("ready %v with %d of 3 partitions restored: readiness must wait for every partition", processor.Ready(), restores())
	}
	if err := old.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	o := <-got
	if o.err != nil {
		t.Fatalf("deposit after the old owner committed: %v", o.err)
	}
	// The account was opened by the old owner's event; the sent deposit of
	// 1 and this one of 10 follow it.
	if o.res.Value.Balance != 11 || o.res.Version != 3 {
		t.Fatalf("got %+v, want balance 11 at version 3", o.res)
	}
	if !processor.Ready() || restores() != 3 {
		t.Fatalf("ready %v with %d of 3 partitions restored after the command was handled", processor.Ready(), restores())
	}
}

// TestRestoreAfterAbandonedTransaction: the previous owner died with a
// transaction open on the events partition; the broker aborts it when it
// times out, after the new owner listed where the partition ends. The
// abort's marker lies past that end and the aborted event never reaches
// a read_committed reader: the restore ends at the marker, at its first
// attempt, with the event left out.
func TestRestoreAfterAbandonedTransaction(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch))
	id, _ := openInTransaction(t, brokers, name, 2*time.Second)
	// A restore gives up on a partition that makes no progress for three
	// transaction timeouts: 30 s here, well past the abort.
	app := startApp(t, brokers, name, interlock.WithTransactionTimeout(10*time.Second), interlock.WithSessionTimeout(45*time.Second))
	res, err := interlock.Dispatch(ctx, app, deposit(id, 10))
	if !errors.Is(err, bank.ErrNotOpen) {
		t.Fatalf("deposit after the account's opening was aborted: %+v, %v; want %v", res, err, bank.ErrNotOpen)
	}
	if n := app.Stats().Restores; n != 3 {
		t.Errorf("%d partition restores begun, want 3: a restore failed and was tried again", n)
	}
}

// openInTransaction writes the opening event of a new account in a
// transaction of an "old owner" it leaves open (for at most timeout), on
// the account's events partition of name's bank (three partitions, which
// must exist), and returns the account and the old owner's client.
func openInTransaction(t *testing.T, brokers []string, name string, timeout time.Duration) (ulid.ULID, *kgo.Client) {
	t.Helper()
	ctx := ctxT(t)
	id := interlock.NewID()
	// The dispatcher's partitioner: murmur2 of the key.
	partition := int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: []byte(id.String())}, 3))
	serde, err := schema.Avro().For(reflectTypeOf[bank.AccountOpened]())
	if err != nil {
		t.Fatal(err)
	}
	value, err := serde.Encode(bank.AccountOpened{Owner: "ada"})
	if err != nil {
		t.Fatal(err)
	}

	old, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(name+"-old-owner"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(old.Close)
	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	rec := producer.EventRecord(name+".bank-account.events", partition, "avro", aggregate.EventEnvelope{
		EventID: ulid.Make(), AggregateType: "bank-account", AggregateID: id, Type: "AccountOpened",
		Version: 1, Time: time.Now(), CommandID: ulid.Make(), CorrelationID: "c",
	}, value)
	if err := old.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}

	return id, old
}

func TestEmbeddedDataDirSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := ctxT(t)
	build := func() *interlock.App {
		return launch(t, interlock.NewBuilder(interlock.WithDataDir(dir), interlock.WithLogger(testLogger())).
			RegisterAggregate(bank.Accounts()))
	}
	first := build()
	id := open(t, ctx, first)
	if _, err := interlock.Dispatch(ctx, first, deposit(id, 42)); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second := build()
	defer second.Close(ctx)
	res, err := interlock.Dispatch(ctx, second, deposit(id, 1))
	if err != nil || res.Value.Balance != 43 || res.Version != 3 {
		t.Fatalf("after restarting the embedded Kafka on its data dir: %+v, %v; want balance 43 at version 3", res, err)
	}
}

func TestJSONCodecAndSend(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app := startApp(t, brokers, name, interlock.WithCodec(schema.JSON()))
	ctx := ctxT(t)
	id := open(t, ctx, app)
	var ids []string
	for i := range 5 {
		cid, err := interlock.Send(ctx, app, deposit(id, int64(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, cid.String())
	}
	// Send returns once the command is in the log; Dispatch after it is
	// handled after it (same aggregate, same partition, in order).
	res, err := interlock.Dispatch(ctx, app, deposit(id, 100))
	if err != nil || res.Value.Balance != 115 || res.Version != 7 {
		t.Fatalf("after 5 sends: %+v, %v; want balance 115 at version 7", res, err)
	}
	evs := eventsOf(t, brokers, name+".bank-account.events", id)
	for i, c := range ids {
		e := evs[i+1]
		if header(e, producer.HeaderCommandID) != c || header(e, producer.HeaderCodec) != "json" || header(e, producer.HeaderVersion) != strconv.Itoa(i+2) {
			t.Fatalf("event %d: headers %v, want command %s, json, version %d", i+1, e.Headers, c, i+2)
		}
		if string(e.Value) != `{"amount":`+strconv.Itoa(i+1)+`}` {
			t.Fatalf("event %d value %s", i+1, e.Value)
		}
	}
}
