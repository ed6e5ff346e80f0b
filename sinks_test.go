package interlock_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/projections/redisview"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/kafkaregistry"
)

// TestKafkaToKafka: a projection on the Kafka sink turns events into
// records of another topic for a downstream pipeline: one record per
// event, exactly, in each aggregate's order, across a change of instance
// and a crash (an instance cut off Kafka with a transaction open, let
// back later as a zombie).
func TestKafkaToKafka(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name)
	export := name + ".export"
	exporter := func() *projections.Projection[*projections.Output] {
		p := projections.New("export", projections.Kafka(), projections.WithMaxBatch(7))
		projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[bank.MoneyDeposited]) error {
			v, _ := json.Marshal(map[string]any{"account": e.AggregateID.String(), "version": e.Version, "amount": e.Data.Amount})
			out.Produce(&kgo.Record{Topic: export, Key: []byte(e.AggregateID.String()), Value: v})
			return nil
		})
		return p
	}
	kafkatest.CreateTopic(t, brokers, export, 3)
	ids := []ulid.ULID{open(t, ctx, app), open(t, ctx, app)}
	deposits := 0
	run := func(n int) {
		for i := range n {
			if _, err := interlock.Dispatch(ctx, app, deposit(ids[i%2], int64(i+1))); err != nil {
				t.Fatal(err)
			}
			deposits++
		}
	}
	first := projectorApp(t, brokers, name, exporter())
	run(30)
	crashing := newCrash()
	second := projectorAppWith(t, brokers, name, []interlock.Option{crashing.kafka(), interlock.WithInstanceID("exporter-2")}, exporter())
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	run(30)
	// Kill the second while deposits flow and it has a transaction open.
	stop := make(chan struct{})
	var flowed atomic.Int64 // deposits, for the main goroutine to watch
	var flowing sync.WaitGroup
	flowing.Add(1)
	go func() {
		defer flowing.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := interlock.Dispatch(ctx, app, deposit(ids[i%2], int64(i+1))); err != nil {
				t.Errorf("deposit: %v", err)
				return
			}
			deposits++
			flowed.Add(1)
		}
	}()
	if inKafkaTransaction(t, brokers, 10*time.Second, name+".projection.export.exporter-2") == "" {
		close(stop)
		flowing.Wait()
		t.Fatal("the exporter never had a transaction open: the crash would prove nothing")
	}
	crashing.Kill()
	third := projectorApp(t, brokers, name, exporter())
	defer third.Close(context.Background())
	// Deposits go on while the third takes over from the killed second.
	for atTakeover, deadline := flowed.Load(), time.Now().Add(30*time.Second); flowed.Load() < atTakeover+5; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			close(stop)
			flowing.Wait()
			t.Fatal("no deposit went through after the takeover began")
		}
	}
	close(stop)
	flowing.Wait()
	run(10)
	if err := third.Projection("export").WaitFor(ctx, lastPositions(t, brokers, name+".bank-account.events")); err != nil {
		t.Fatal(err)
	}
	crashing.Revive()
	if err := second.Close(ctx); err != nil {
		t.Logf("closing the zombie: %v", err)
	}
	seen := map[string]int{}
	last := map[string]int64{} // per account, the version last exported
	for _, r := range kafkatest.ReadAll(t, brokers, export) {
		var v struct {
			Account string `json:"account"`
			Version int64  `json:"version"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatal(err)
		}
		seen[fmt.Sprintf("%s/%d", v.Account, v.Version)]++
		if v.Version <= last[v.Account] {
			t.Errorf("account %s: version %d exported after version %d", v.Account, v.Version, last[v.Account])
		}
		last[v.Account] = v.Version
	}
	if len(seen) != deposits {
		t.Fatalf("%d exported events, want %d", len(seen), deposits)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("event %s exported %d times", k, n)
		}
	}
}

// TestForeignTopicAndEffects: a side-effect processor reads a topic
// Interlock did not write; a record it cannot handle is parked with its
// key's later records, other keys flow on.
func TestForeignTopicAndEffects(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	orders := name + ".orders"
	var mu sync.Mutex
	sent := map[string][]int{} // "emails" sent per customer
	p := projections.New("mailer", projections.Effects(), projections.WithPolicy(projections.DeadLetter), projections.WithRetries(1, time.Millisecond))
	projections.OnRecord(p, orders, func(ctx context.Context, _ *struct{}, r *kgo.Record) error {
		var o struct{ N int }
		if err := json.Unmarshal(r.Value, &o); err != nil {
			return fmt.Errorf("order is not JSON: %w", err)
		}
		mu.Lock()
		sent[string(r.Key)] = append(sent[string(r.Key)], o.N)
		mu.Unlock()
		return nil
	})
	var recs []*kgo.Record
	for i, key := range []string{"ann", "bob", "ann", "bob", "ann"} {
		v := []byte(`{"N":` + strconv.Itoa(i) + `}`)
		if i == 1 {
			v = []byte("not json")
		}
		recs = append(recs, &kgo.Record{Topic: orders, Key: []byte(key), Value: v})
	}
	kafkatest.CreateTopic(t, brokers, orders, 2)
	kafkatest.Produce(t, brokers, recs...)
	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(p))
	var last []interlock.Position
	for _, r := range kafkatest.ReadAll(t, brokers, orders) {
		last = append(last, interlock.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
	}
	if err := app.Projection("mailer").WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sent) != "map[ann:[0 2 4]]" {
		t.Fatalf("effects %v: want ann's three orders, none of bob's (his first is poison, his second waits behind it)", sent)
	}
	if n := len(kafkatest.ReadAll(t, brokers, name+".mailer.dlq")); n != 2 {
		t.Fatalf("%d dead letters, want 2", n)
	}
}

// TestTransientFailureLetsTheGroupRebalance: a projection on a sink that
// is not Kafka's, retrying a batch that fails for a reason not its
// records' (a database out of reach), does not hold its group's rebalance
// while it waits: an instance that joins meanwhile gets its share of the
// partitions, and every record is applied once the failure ends.
func TestTransientFailureLetsTheGroupRebalance(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	orders := name + ".orders"
	kafkatest.CreateTopic(t, brokers, orders, 4)
	var recs []*kgo.Record
	for i := range 40 {
		recs = append(recs, &kgo.Record{Topic: orders, Key: []byte("customer-" + strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
	}
	kafkatest.Produce(t, brokers, recs...)
	last := lastPositions(t, brokers, orders)
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	tried := map[string]int{}      // handler calls per instance
	applied := map[string]string{} // record value → instance
	mailer := func(instance string) *projections.Projection[*struct{}] {
		p := projections.New("mailer", projections.Effects(), projections.WithRetries(1, 10*time.Millisecond))
		projections.OnRecord(p, orders, func(_ context.Context, _ *struct{}, r *kgo.Record) error {
			mu.Lock()
			defer mu.Unlock()
			tried[instance]++
			if down.Load() {
				return projections.Transient(errors.New("the mail server is out of reach"))
			}
			applied[string(r.Value)] = instance
			return nil
		})
		return p
	}
	build := func(instance string) *interlock.Builder {
		return interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
			interlock.WithInstanceID(instance), interlock.WithRoles(interlock.RoleProject), interlock.WithLogger(testLogger())).
			RegisterAggregate(bank.Accounts()).RegisterProjection(mailer(instance))
	}
	tries := func(instance string) int {
		mu.Lock()
		defer mu.Unlock()
		return tried[instance]
	}
	first := startWith(t, build("first"))
	for deadline := time.Now().Add(30 * time.Second); tries("first") < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first instance never tried a batch")
		}
	}
	second := startWith(t, build("second"))
	// The group's rebalance timeout is a minute: an instance holding it
	// would keep the second waiting past this deadline.
	for deadline := time.Now().Add(30 * time.Second); tries("second") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second instance got no partition in 30 s while the first retried its batch")
		}
	}
	down.Store(false)
	for _, app := range []*interlock.App{first, second} {
		if err := app.Projection("mailer").WaitFor(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != len(recs) {
		t.Fatalf("%d records applied, want %d", len(applied), len(recs))
	}
}

// TestTransientFailuresAreNotParked: a record handler failing for a
// reason that is not its record's (marked projections.Transient, or a
// schema registry that does not answer) is tried again past the
// projection's retries until it succeeds, and nothing is parked; on the
// effects sink (a unit of work per batch) and on the Kafka sink (a
// transaction per batch). The same failures unmarked are parked.
func TestTransientFailuresAreNotParked(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	orders := name + ".orders"
	kafkatest.CreateTopic(t, brokers, orders, 1)
	kafkatest.Produce(t, brokers,
		&kgo.Record{Topic: orders, Key: []byte("ann"), Value: []byte("1")},
		&kgo.Record{Topic: orders, Key: []byte("bob"), Value: []byte("2")})
	last := lastPositions(t, brokers, orders)
	// handler fails each record's first four tries (the projection
	// retries a failure once), with mark on the error, then applies it.
	type counts struct {
		sync.Mutex
		tries   map[string]int
		applied []string
	}
	handler := func(c *counts, mark func(error) error) func(r *kgo.Record) error {
		return func(r *kgo.Record) error {
			c.Lock()
			defer c.Unlock()
			if c.tries[string(r.Key)]++; c.tries[string(r.Key)] <= 4 {
				if string(r.Key) == "ann" {
					return mark(errors.New("the database is out of reach"))
				}
				return mark(fmt.Errorf("decoding: %w", schema.ErrRegistryUnavailable))
			}
			c.applied = append(c.applied, string(r.Key))
			return nil
		}
	}
	transient := func(err error) error {
		if errors.Is(err, schema.ErrRegistryUnavailable) {
			return err // transient without a mark
		}
		return projections.Transient(err)
	}
	opts := []projections.Option{projections.WithPolicy(projections.DeadLetter), projections.WithRetries(1, time.Millisecond)}
	effects, onKafka, unmarked := &counts{tries: map[string]int{}}, &counts{tries: map[string]int{}}, &counts{tries: map[string]int{}}
	pe := projections.New("effects", projections.Effects(), opts...)
	he := handler(effects, transient)
	projections.OnRecord(pe, orders, func(_ context.Context, _ *struct{}, r *kgo.Record) error { return he(r) })
	pk := projections.New("kafka", projections.Kafka(), opts...)
	hk := handler(onKafka, transient)
	out := name + ".out"
	kafkatest.CreateTopic(t, brokers, out, 1)
	projections.OnRecord(pk, orders, func(_ context.Context, o *projections.Output, r *kgo.Record) error {
		if err := hk(r); err != nil {
			return err
		}
		o.Produce(&kgo.Record{Topic: out, Key: r.Key, Value: r.Value})
		return nil
	})
	pu := projections.New("unmarked", projections.Effects(), opts...)
	hu := handler(unmarked, func(err error) error { return fmt.Errorf("%v", err) }) // the cause flattened away
	projections.OnRecord(pu, orders, func(_ context.Context, _ *struct{}, r *kgo.Record) error { return hu(r) })
	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(pe).RegisterProjection(pk).RegisterProjection(pu))
	for _, proj := range []string{"effects", "kafka", "unmarked"} {
		if err := app.Projection(proj).WaitFor(ctx, last); err != nil {
			t.Fatalf("%s: %v", proj, err)
		}
	}
	effects.Lock()
	if fmt.Sprint(effects.applied) != "[ann bob]" || effects.tries["ann"] != 5 || effects.tries["bob"] != 5 {
		t.Errorf("effects: applied %v after tries %v; want both, each on its fifth try", effects.applied, effects.tries)
	}
	effects.Unlock()
	// On the Kafka sink a failure aborts the batch's transaction: what
	// counts is what it committed.
	var keys []string
	for _, r := range kafkatest.ReadAll(t, brokers, out) {
		keys = append(keys, string(r.Key))
	}
	if fmt.Sprint(keys) != "[ann bob]" {
		t.Errorf("kafka: committed %v, want each record once", keys)
	}
	for _, proj := range []string{"effects", "kafka"} {
		if n := len(kafkatest.ReadAll(t, brokers, name+"."+proj+".dlq")); n != 0 {
			t.Errorf("%s: %d records parked, want none", proj, n)
		}
	}
	if n := len(kafkatest.ReadAll(t, brokers, name+".unmarked.dlq")); n != 2 {
		t.Errorf("unmarked: %d records parked, want both", n)
	}
}

// TestRedisView: an at-least-once Redis read model is idempotent: a second
// projection replaying every event into the same hashes changes nothing.
func TestRedisView(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	client, prefix := redistest.Client(t)
	view := func(name string) *projections.Projection[*redisview.Batch] {
		p := projections.New(name, redisview.NewSink(client, prefix))
		projections.On(p, func(ctx context.Context, b *redisview.Batch, e projections.Event[bank.MoneyDeposited]) error {
			b.Update(e.EventEnvelope).Incr("balance", e.Data.Amount)
			return nil
		})
		return p
	}
	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(view("cache")))
	for range 3 {
		id := open(t, ctx, app)
		for i := range 5 {
			if _, err := interlock.Dispatch(ctx, app, deposit(id, int64(i+1))); err != nil {
				t.Fatal(err)
			}
		}
	}
	topic := name + ".bank-account.events"
	last := lastPositions(t, brokers, topic)
	if err := app.Projection("cache").WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	replay := projectorApp(t, brokers, name, view("cache-replay"))
	defer replay.Close(context.Background())
	if err := replay.Projection("cache-replay").WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	for id, b := range fold(t, brokers, topic) {
		got, err := client.HGet(ctx, prefix+":"+id, "balance").Int64()
		if err != nil || got != b.Balance {
			t.Errorf("account %s: view %d (%v), fold of the log %d", id, got, err, b.Balance)
		}
	}
}

// TestKafkaSinkDeadLetters: on the Kafka sink a poison event is parked in
// the transaction, with its aggregate's later events, and a retry applies
// them in a transaction that also answers the request.
func TestKafkaSinkDeadLetters(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	export := name + ".export"
	kafkatest.CreateTopic(t, brokers, export, 1)
	var cured atomic.Bool
	p := projections.New("export", projections.Kafka(), projections.WithPolicy(projections.DeadLetter), projections.WithRetries(1, time.Millisecond))
	projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[bank.MoneyDeposited]) error {
		if e.Data.Amount == 13 && !cured.Load() {
			return fmt.Errorf("unlucky amount")
		}
		out.Produce(&kgo.Record{Topic: export, Key: []byte(e.AggregateID.String()), Value: []byte(strconv.FormatInt(e.Data.Amount, 10))})
		return nil
	})
	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(p))
	good, bad := open(t, ctx, app), open(t, ctx, app)
	for _, c := range []bank.DepositMoney{deposit(bad, 1), deposit(bad, 13), deposit(good, 2), deposit(bad, 3)} {
		if _, err := interlock.Dispatch(ctx, app, c); err != nil {
			t.Fatal(err)
		}
	}
	pr := app.Projection("export")
	exported := func() map[string]string {
		out := map[string]string{}
		for _, r := range kafkatest.ReadAll(t, brokers, export) {
			out[string(r.Key)] += string(r.Value) + ";"
		}
		return out
	}
	if err := pr.WaitFor(ctx, lastPositions(t, brokers, name+".bank-account.events")); err != nil {
		t.Fatal(err)
	}
	if got := exported(); got[good.String()] != "2;" || got[bad.String()] != "1;" {
		t.Fatalf("exported %v before the retry", got)
	}
	if list, err := pr.Parked(ctx); err != nil || len(list) != 2 {
		t.Fatalf("parked %+v, %v", list, err)
	}
	cured.Store(true)
	if err := pr.Retry(ctx, bad.String()); err != nil {
		t.Fatal(err)
	}
	if got := exported(); got[bad.String()] != "1;13;3;" {
		t.Fatalf("exported %v after the retry", got)
	}
}

// ExportedDeposit is the record TestAvroWithRegistry's exporter writes
// for a downstream pipeline.
type ExportedDeposit struct {
	Account string `avro:"account"`
	Version int64  `avro:"version"`
	Amount  int64  `avro:"amount"`
}

// TestAvroWithRegistry: a Kafka-to-Kafka projection writes Avro records in
// the Confluent wire format with the IDs a schema registry gave, and a
// projection in another process reads that topic as a foreign one,
// decoding them through the registry with a newer shape of the record.
func TestAvroWithRegistry(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	export := name + ".export"
	kafkatest.CreateTopic(t, brokers, export, 3)
	openRegistry := func() *kafkaregistry.Registry {
		reg, err := kafkaregistry.New(ctx, kafkaregistry.Topic(name+".export._schemas"), kafkaregistry.ClientOpts(kgo.SeedBrokers(brokers...)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(reg.Close)
		return reg
	}

	// The writer: its record type registered under the export topic.
	reg := openRegistry()
	writer, err := schema.Avro(schema.AvroNamespace("export"), schema.AvroRegistry(reg)).For(reflect.TypeFor[ExportedDeposit]())
	if err != nil {
		t.Fatal(err)
	}
	id, err := schema.Register(ctx, writer, export)
	if err != nil {
		t.Fatal(err)
	}
	exporter := projections.New("export", projections.Kafka())
	projections.On(exporter, func(ctx context.Context, out *projections.Output, e projections.Event[bank.MoneyDeposited]) error {
		v, err := writer.Encode(ExportedDeposit{Account: e.AggregateID.String(), Version: e.Version, Amount: e.Data.Amount})
		if err != nil {
			return err
		}
		out.Produce(&kgo.Record{Topic: export, Key: []byte(e.AggregateID.String()), Value: v})
		return nil
	})

	// The reader, elsewhere: the record has since lost a field and gained
	// one with a default, so only the writer schema, fetched from the
	// registry by the ID in each record, lets it decode them.
	type ExportedDeposit struct {
		Account string  `avro:"account"`
		Amount  int64   `avro:"amount"`
		Note    *string `avro:"note"`
	}
	reader, err := schema.Avro(schema.AvroNamespace("export"), schema.AvroRegistry(openRegistry())).For(reflect.TypeFor[ExportedDeposit]())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	read := map[string]int64{}
	downstream := projections.New("downstream", projections.Effects())
	projections.OnRecord(downstream, export, func(ctx context.Context, _ *struct{}, r *kgo.Record) error {
		v, err := schema.DecodeContext(ctx, reader, r.Value)
		if err != nil {
			return err
		}
		d := v.(*ExportedDeposit)
		if d.Note != nil {
			return fmt.Errorf("note %q, want the default (none)", *d.Note)
		}
		mu.Lock()
		read[d.Account] += d.Amount
		mu.Unlock()
		return nil
	})

	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(exporter))
	consumer := projectorApp(t, brokers, name, downstream)
	defer consumer.Close(context.Background())
	want := map[string]int64{}
	for i := range 3 {
		acc := open(t, ctx, app)
		for j := range 4 {
			if _, err := interlock.Dispatch(ctx, app, deposit(acc, int64(10*i+j+1))); err != nil {
				t.Fatal(err)
			}
			want[acc.String()] += int64(10*i + j + 1)
		}
	}
	if err := app.Projection("export").WaitFor(ctx, lastPositions(t, brokers, name+".bank-account.events")); err != nil {
		t.Fatal(err)
	}
	records := kafkatest.ReadAll(t, brokers, export)
	var at []interlock.Position
	for _, r := range records {
		if len(r.Value) < 5 || r.Value[0] != 0 || binary.BigEndian.Uint32(r.Value[1:5]) != id {
			t.Fatalf("record % x: want the Confluent wire format with the registry's ID %d", r.Value[:min(5, len(r.Value))], id)
		}
		at = append(at, interlock.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
	}
	if len(records) != 12 {
		t.Fatalf("%d records exported, want 12", len(records))
	}
	if vs, err := reg.Versions(ctx, schema.TopicRecordName(export, "export.ExportedDeposit")); err != nil || len(vs) != 1 || vs[0].ID != id {
		t.Fatalf("subject versions %+v, %v: want the writer's schema, ID %d", vs, err, id)
	}
	if err := consumer.Projection("downstream").WaitFor(ctx, at); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(read) != fmt.Sprint(want) {
		t.Fatalf("read downstream %v, want %v", read, want)
	}
}

// TestEffectsRetryWithBackoff: a side effect that fails for a while (a
// remote service down) is tried again after a backoff that doubles, and
// succeeds without being parked; the effects of other events are not
// repeated, as each event is a batch of its own.
func TestEffectsRetryWithBackoff(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	var mu sync.Mutex
	calls := map[string][]time.Time{} // attempts per event ID
	done := map[string]int{}          // successful calls per event ID
	var flaky string                  // the event ID whose first two calls fail
	p := projections.New("notifier", projections.Effects(), projections.WithRetries(3, 50*time.Millisecond))
	projections.On(p, func(ctx context.Context, _ *struct{}, e projections.Event[bank.MoneyDeposited]) error {
		mu.Lock()
		defer mu.Unlock()
		id := e.EventID.String()
		calls[id] = append(calls[id], time.Now())
		if e.Data.Amount == 13 {
			flaky = id
			if len(calls[id]) <= 2 {
				return errors.New("503 service unavailable")
			}
		}
		done[id]++
		return nil
	})
	app := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).RegisterProjection(p))
	acc := open(t, ctx, app)
	var last []interlock.Position
	for _, amount := range []int64{1, 13, 2, 3} {
		res, err := interlock.Dispatch(ctx, app, deposit(acc, amount))
		if err != nil {
			t.Fatal(err)
		}
		last = res.Positions
	}
	if err := app.Projection("notifier").WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(done) != 4 {
		t.Fatalf("effects done for %d events, want 4 (%v)", len(done), done)
	}
	for id, n := range done {
		if n != 1 || (id != flaky && len(calls[id]) != 1) {
			t.Errorf("event %s: %d calls, %d successful; want one call (three for the flaky one), one success", id, len(calls[id]), n)
		}
	}
	at := calls[flaky]
	if len(at) != 3 || at[1].Sub(at[0]) < 50*time.Millisecond || at[2].Sub(at[1]) < 100*time.Millisecond {
		t.Fatalf("the flaky call was tried at %v; want three tries, 50 ms then 100 ms apart at least", at)
	}
	if parked, err := app.Projection("notifier").Parked(ctx); err != nil || len(parked) != 0 {
		t.Fatalf("parked %+v, %v; want none", parked, err)
	}
}
