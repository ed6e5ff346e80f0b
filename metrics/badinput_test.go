package metrics_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/metrics"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/schema"
)

// A blob's command makes an event of the size it asks for: a small
// command whose event Kafka refuses as too large.
type (
	blob    struct{ Bytes int64 }
	inflate struct {
		aggregate.Command
		Size int64 `avro:"size"`
	}
	inflated struct {
		Data string `avro:"data"`
	}
)

func blobs() *aggregate.Definition[blob] {
	return aggregate.Define[blob]("blob",
		aggregate.Handle(func(r *aggregate.Root[blob], c inflate) error {
			// Random letters: Kafka measures compressed batches.
			b := make([]byte, c.Size)
			for i := range b {
				b[i] = byte('a' + rand.IntN(26))
			}
			r.Emit(inflated{Data: string(b)})
			return nil
		}),
		aggregate.Apply(func(s *blob, e inflated) { s.Bytes += int64(len(e.Data)) }),
	)
}

// TestBadInputMetrics feeds a running application each kind of bad
// record, on the commands topic and (for a restore) on the events topic,
// and checks each time that interlock_bad_records_total counted it under
// its reason and that the partition went on: a good command for an
// aggregate of the same partition, sent after the bad record, is applied.
// Events over what Kafka accepts are refused before they are produced
// when the limit is known, and after one refusal by the broker when a
// topic's limit was lowered while the application ran.
func TestBadInputMetrics(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const partitions = 3
	commands, events := name+".bank-account.commands", name+".bank-account.events"

	var m *metrics.Metrics
	start := func() *interlock.App {
		t.Helper()
		var err error
		if m, err = metrics.New(prometheus.NewRegistry()); err != nil {
			t.Fatal(err)
		}
		app, err := interlock.NewBuilder(
			interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(partitions),
			interlock.WithLogger(testLogger()), interlock.WithObserver(m),
			interlock.WithSessionTimeout(10*time.Second), interlock.WithTransactionTimeout(5*time.Second),
		).RegisterAggregate(bank.Accounts()).RegisterAggregate(blobs()).Build()
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Close(context.Background()) })
		return app
	}
	bad := func(kind, reason string) float64 {
		return series(scrape(t, m.Handler()), "interlock_bad_records_total")["kind="+kind+",reason="+reason]
	}
	app := start()

	// The good aggregate, and the partition its commands and events use.
	id := interlock.NewID()
	res, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	part := res.Positions[0].Partition
	partitioner := kgo.StickyKeyPartitioner(nil).ForTopic(commands)
	// sameKey returns a new aggregate ID whose records go to part.
	sameKey := func() ulid.ULID {
		for {
			other := interlock.NewID()
			if partitioner.Partition(&kgo.Record{Key: []byte(other.String())}, partitions) == int(part) {
				return other
			}
		}
	}
	balance, version := int64(0), int64(1)
	goodCommand := func(after string) {
		t.Helper()
		res, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1})
		balance, version = balance+1, version+1
		if err != nil || res.Value.Balance != balance || res.Version != version {
			t.Fatalf("after %s, the partition does not go on: %+v, %v (want balance %d at version %d)", after, res, err, balance, version)
		}
	}

	serde, err := schema.Avro().For(reflect.TypeFor[bank.DepositMoney]())
	if err != nil {
		t.Fatal(err)
	}
	valid, err := serde.Encode(bank.DepositMoney{Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	unknownID := append([]byte{0, 0x7f, 0x00, 0x00, 0x01}, valid[5:]...) // a schema ID nobody registered
	garbled := append(append([]byte(nil), valid[:5]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	cmdID := func() kgo.RecordHeader {
		return kgo.RecordHeader{Key: producer.HeaderCommandID, Value: []byte(ulid.Make().String())}
	}
	typ := func(t string) kgo.RecordHeader { return kgo.RecordHeader{Key: producer.HeaderType, Value: []byte(t)} }
	commandCases := []struct {
		name, reason string
		record       *kgo.Record
	}{
		{"no headers", producer.ReasonMissingHeader, &kgo.Record{Value: []byte("garbage")}},
		{"no command ID", producer.ReasonMissingHeader, &kgo.Record{Value: valid, Headers: []kgo.RecordHeader{typ("DepositMoney")}}},
		{"key not a ULID", producer.ReasonBadULID, &kgo.Record{Key: []byte("not-a-ulid"), Value: valid, Headers: []kgo.RecordHeader{typ("DepositMoney"), cmdID()}}},
		{"command ID not a ULID", producer.ReasonBadULID, &kgo.Record{Value: valid, Headers: []kgo.RecordHeader{typ("DepositMoney"), {Key: producer.HeaderCommandID, Value: []byte("42")}}}},
		{"bad deadline", producer.ReasonBadHeader, &kgo.Record{Value: valid, Headers: []kgo.RecordHeader{typ("DepositMoney"), cmdID(), {Key: producer.HeaderDeadline, Value: []byte("soon")}}}},
		{"unknown type", producer.ReasonUnknownType, &kgo.Record{Value: valid, Headers: []kgo.RecordHeader{typ("CloseAccount"), cmdID()}}},
		{"unknown schema ID", producer.ReasonUnknownSchema, &kgo.Record{Value: unknownID, Headers: []kgo.RecordHeader{typ("DepositMoney"), cmdID()}}},
		{"undecodable body", producer.ReasonUndecodable, &kgo.Record{Value: garbled, Headers: []kgo.RecordHeader{typ("DepositMoney"), cmdID()}}},
	}
	for _, c := range commandCases {
		before := bad("command", c.reason)
		r := c.record
		r.Topic, r.Partition = commands, part
		if r.Key == nil {
			r.Key = []byte(id.String())
		}
		produceTo(t, brokers, r)
		goodCommand(c.name)
		if got := bad("command", c.reason); got != before+1 {
			t.Errorf("%s: interlock_bad_records_total{kind=command,reason=%s} went from %v to %v, want +1", c.name, c.reason, before, got)
		}
	}

	// Too large: an event over the producer's batch size is refused before
	// it is produced; the same blob then takes a small one.
	blobID := interlock.NewID()
	_, err = interlock.Dispatch(ctx, app, inflate{Command: interlock.To(blobID), Size: 1_100_000})
	if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("an event over the producer's batch size: %v", err)
	}
	if got := bad("command", producer.ReasonTooLarge); got != 1 {
		t.Fatalf("interlock_bad_records_total{kind=command,reason=too_large} = %v after one, want 1", got)
	}
	if res, err := interlock.Dispatch(ctx, app, inflate{Command: interlock.To(blobID), Size: 100}); err != nil || res.Version != 1 {
		t.Fatalf("a small blob after a too large one: %+v, %v", res, err)
	}
	// The blobs' events topic now takes less than the processor knows: the
	// broker refuses the event, the batch is aborted and comes back, and
	// the processor, having read the new limit, refuses it.
	aborted := func() float64 {
		return series(scrape(t, m.Handler()), "interlock_transactions_total")["outcome=aborted"]
	}
	abortedBefore := aborted()
	blobEvents := name + ".blob.events"
	adm := kadm.NewClient(kgoClient(t, brokers))
	limit := "20000"
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, blobEvents); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rcs, err := adm.DescribeTopicConfigs(ctx, blobEvents)
		if err == nil {
			if c, err := rcs.On(blobEvents, nil); err == nil {
				if v, ok := configValue(c, "max.message.bytes"); ok && v == limit {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the topic's max.message.bytes did not change")
		}
	}
	_, err = interlock.Dispatch(ctx, app, inflate{Command: interlock.To(blobID), Size: 60_000})
	if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), blobEvents+" accepts 20000") {
		t.Fatalf("an event over the topic's lowered max.message.bytes: %v", err)
	}
	if got := bad("command", producer.ReasonTooLarge); got != 2 {
		t.Fatalf("interlock_bad_records_total{kind=command,reason=too_large} = %v after two, want 2", got)
	}
	// The processor reports a batch just after its transaction ended.
	for deadline := time.Now().Add(10 * time.Second); aborted() == abortedBefore; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("interlock_transactions_total{outcome=aborted} = %v: the batch the broker refused was not counted as aborted", aborted())
		}
	}
	if res, err := interlock.Dispatch(ctx, app, inflate{Command: interlock.To(blobID), Size: 100}); err != nil || res.Version != 2 {
		t.Fatalf("a small blob after the refused one: %+v, %v", res, err)
	}
	// Events that each fit the lowered limit but not together: several
	// commands of one partition in one transaction must not make a batch
	// the broker refuses, over and over.
	abortedBefore = aborted()
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := interlock.Dispatch(ctx, app, inflate{Command: interlock.To(blobID), Size: 8_000})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("an event that fits the topic's limit, among others: %v", err)
		}
	}
	if n := aborted() - abortedBefore; n != 0 {
		t.Errorf("%v transactions aborted while events that each fit the limit were written: batches over the limit", n)
	}
	goodCommand("too large events")

	// Bad events, met by the next owner's restore: each breaks only its
	// own aggregate.
	broken, vanished := sameKey(), sameKey()
	eventHeaders := func(typ string) []kgo.RecordHeader {
		return []kgo.RecordHeader{{Key: producer.HeaderType, Value: []byte(typ)}, {Key: producer.HeaderVersion, Value: []byte("1")}, cmdID()}
	}
	produceTo(t, brokers,
		&kgo.Record{Topic: events, Partition: part, Key: []byte("not-a-ulid"), Value: valid, Headers: eventHeaders("MoneyDeposited")},
		&kgo.Record{Topic: events, Partition: part, Key: []byte(broken.String()), Value: garbled, Headers: eventHeaders("AccountOpened")},
		&kgo.Record{Topic: events, Partition: part, Key: []byte(vanished.String()), Value: valid, Headers: eventHeaders("MoneyVanished")},
	)
	if err := app.Close(ctx); err != nil {
		t.Fatal(err)
	}
	app = start()
	for deadline := time.Now().Add(time.Minute); !app.Ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the partitions were never restored")
		}
	}
	for _, reason := range []string{producer.ReasonBadULID, producer.ReasonUndecodable, producer.ReasonUnknownType} {
		if got := bad("event", reason); got != 1 {
			t.Errorf("after the restore, interlock_bad_records_total{kind=event,reason=%s} = %v, want 1", reason, got)
		}
	}
	_, err = interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](broken), Amount: 1})
	if !errors.Is(err, interlock.ErrFailed) || !strings.Contains(err.Error(), "cannot be rebuilt") {
		t.Fatalf("a command for an aggregate whose event is bad: %v", err)
	}
	goodCommand("bad events")
}

// produceTo writes records to the partitions they name.
func produceTo(t *testing.T, brokers []string, rs ...*kgo.Record) {
	t.Helper()
	cl := kgoClient(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

func kgoClient(t *testing.T, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func configValue(c kadm.ResourceConfig, key string) (string, bool) {
	for _, kv := range c.Configs {
		if kv.Key == key && kv.Value != nil {
			return *kv.Value, true
		}
	}
	return "", false
}

// memTx is the unit of work of memSink.
type memTx struct{ applied []int64 }

// memSink is an at-least-once sink in memory: the deposits applied.
type memSink struct {
	mu      sync.Mutex
	applied []int64
}

func (s *memSink) Apply(ctx context.Context, _ string, _ []projections.Checkpoint, fn func(context.Context, *memTx) error) error {
	tx := &memTx{}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = append(s.applied, tx.applied...)
	return nil
}

// TestBadEventsParked: each kind of poison event is parked in the
// projection's dead-letter topic and counted by
// interlock_projection_parked_total under its reason, for an at-least-once
// sink and for the exactly-once Kafka sink, and the projection goes on: a
// later event of the same partition is applied.
func TestBadEventsParked(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const unlucky = 13 // a deposit the handlers refuse
	sink := &memSink{}
	alo := projections.New("alo", projections.Sink[*memTx](sink), projections.WithRetries(1, time.Millisecond))
	projections.On(alo, func(_ context.Context, tx *memTx, e projections.Event[bank.MoneyDeposited]) error {
		if e.Data.Amount == unlucky {
			return errors.New("the handler refuses 13")
		}
		tx.applied = append(tx.applied, e.Data.Amount)
		return nil
	})
	var eoApplied atomic.Int64
	eo := projections.New("eo", projections.Kafka(), projections.WithRetries(1, time.Millisecond))
	projections.On(eo, func(_ context.Context, _ *projections.Output, e projections.Event[bank.MoneyDeposited]) error {
		if e.Data.Amount == unlucky {
			return errors.New("the handler refuses 13")
		}
		eoApplied.Add(e.Data.Amount)
		return nil
	})
	app, err := interlock.NewBuilder(
		interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()), interlock.WithObserver(m),
		interlock.WithSessionTimeout(10*time.Second), interlock.WithTransactionTimeout(5*time.Second),
	).RegisterAggregate(bank.Accounts()).RegisterProjection(alo).RegisterProjection(eo).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	parked := func(projection, reason string) float64 {
		return series(scrape(t, m.Handler()), "interlock_projection_parked_total")["projection="+projection+",reason="+reason]
	}

	id := interlock.NewID()
	res, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	part := res.Positions[0].Partition
	events := res.Positions[0].Topic
	serde, err := schema.Avro().For(reflect.TypeFor[bank.MoneyDeposited]())
	if err != nil {
		t.Fatal(err)
	}
	valid, err := serde.Encode(bank.MoneyDeposited{Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	unknownID := append([]byte{0, 0x7f, 0x00, 0x00, 0x01}, valid[5:]...)
	garbled := append(append([]byte(nil), valid[:5]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	deposited := func(key string, value []byte, version string) *kgo.Record {
		return &kgo.Record{Topic: events, Partition: part, Key: []byte(key), Value: value, Headers: []kgo.RecordHeader{
			{Key: producer.HeaderType, Value: []byte("MoneyDeposited")}, {Key: producer.HeaderVersion, Value: []byte(version)},
			{Key: producer.HeaderEventID, Value: []byte(ulid.Make().String())},
		}}
	}
	// Each bad event has an aggregate of its own, so none holds back
	// another's.
	cases := []struct {
		reason string
		record *kgo.Record
	}{
		{producer.ReasonBadULID, deposited("not-a-ulid", valid, "2")},
		{producer.ReasonBadHeader, deposited(interlock.NewID().String(), valid, "two")},
		{producer.ReasonUnknownSchema, deposited(interlock.NewID().String(), unknownID, "2")},
		{producer.ReasonUndecodable, deposited(interlock.NewID().String(), garbled, "2")},
	}
	total := int64(0)
	for _, c := range cases {
		produceTo(t, brokers, c.record)
		// A good deposit after it, in the same partition.
		res, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1})
		if err != nil {
			t.Fatal(err)
		}
		total++
		waitParkedAndApplied(t, ctx, app, res.Positions, func() bool {
			return parked("alo", c.reason) == 1 && parked("eo", c.reason) == 1
		}, c.reason)
	}
	// A deposit the handlers refuse, then a good one.
	if _, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](interlockOpen(t, ctx, app)), Amount: unlucky}); err != nil {
		t.Fatal(err)
	}
	last, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1})
	if err != nil {
		t.Fatal(err)
	}
	total++
	waitParkedAndApplied(t, ctx, app, last.Positions, func() bool {
		return parked("alo", projections.ReasonHandlerFailed) == 1 && parked("eo", projections.ReasonHandlerFailed) == 1
	}, projections.ReasonHandlerFailed)
	sink.mu.Lock()
	n := len(sink.applied)
	sink.mu.Unlock()
	// The Kafka sink's handler runs again when a batch is retried (only its
	// output is exactly once): it saw every good deposit at least once.
	if int64(n) != total || eoApplied.Load() < total {
		t.Fatalf("applied %d deposits (at least once sink) and ran %d (Kafka sink), want %d", n, eoApplied.Load(), total)
	}
}

// interlockOpen opens a new account and returns its ID.
func interlockOpen(t *testing.T, ctx context.Context, app *interlock.App) ulid.ULID {
	t.Helper()
	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "bob"}); err != nil {
		t.Fatal(err)
	}
	return id
}

// waitParkedAndApplied waits until both projections applied the events at
// positions and parked says yes.
func waitParkedAndApplied(t *testing.T, ctx context.Context, app *interlock.App, positions []producer.Position, parked func() bool, what string) {
	t.Helper()
	for _, pr := range app.Projectors() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := pr.WaitFor(wctx, positions)
		cancel()
		if err != nil {
			t.Fatalf("%s: projection %s did not apply the good event after the bad one: %v", what, pr.Name(), err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); !parked(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: interlock_projection_parked_total did not count the parked event", what)
		}
	}
}
