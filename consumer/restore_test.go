package consumer

import (
	"context"
	"log/slog"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/snapshot"
)

// TestRestoreSeveralPartitionsAtOnce: one restore rebuilds three events
// partitions read by one client, with a cache small enough that the replay
// evicts across them. Partition 1 holds an aggregate whose events do not
// follow each other (it alone is broken); partition 2 has a watermark in the
// store but no snapshots below it (the store is inconsistent, so partition 2
// alone is replayed again from its start). Every other aggregate ends at the
// fold of its events.
func TestRestoreSeveralPartitionsAtOnce(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	route, state := testRoute(t, kafkatest.Name(t))
	cl := eventsTopic(t, ctx, brokers, route, 3)

	// 10 accounts per partition, each opened and given i+1 deposits of 10.
	want := map[ulid.ULID]int64{}
	var records []*kgo.Record
	event := func(part int32, id ulid.ULID, version int64, e any) {
		records = append(records, eventRecord(t, route, part, id, version, e))
	}
	for part := range int32(3) {
		for i := range 10 {
			id := ulid.Make()
			event(part, id, 1, bank.AccountOpened{Owner: "o"})
			for v := range i + 1 {
				event(part, id, int64(v+2), bank.MoneyDeposited{Amount: 10})
			}
			want[id] = int64(10 * (i + 1))
		}
	}
	broken := ulid.Make()
	event(1, broken, 1, bank.AccountOpened{Owner: "b"})
	event(1, broken, 3, bank.MoneyDeposited{Amount: 1}) // version 2 is missing
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	store := snapshot.NewMemory()
	p := testProcessor(route, state, Config{
		ClientOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Store: store, MaxCached: 5, MaxCachedBytes: 1 << 30,
	})
	sp := snapshot.Partition{Topic: route.EventsTopic, ID: 2}
	mark, err := store.Claim(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, sp, mark.Token, nil, 4); err != nil {
		t.Fatal(err)
	}

	var parts []*partition
	for id := range int32(3) {
		parts = append(parts, p.partitionOf(route.CommandsTopic, id))
	}
	if errs := p.restore(ctx, parts); len(errs) > 0 {
		t.Fatalf("restore: %v", errs)
	}
	st := p.Stats()
	if st.Restores != 3 || st.FullReplays != 3 || st.SnapshotsIgnored != 1 || st.Evictions == 0 || st.EventsReplayed < int64(len(records)) {
		t.Fatalf("stats %+v: want 3 full replays, one after ignoring the store, with evictions", st)
	}
	for _, part := range parts {
		if !part.restored.Load() || part.position == 0 {
			t.Fatalf("partition %d: restored %v at %d", part.id, part.restored.Load(), part.position)
		}
		if err := part.broken[broken]; (part.id == 1) != (err != nil) || len(part.broken) > 1 {
			t.Fatalf("partition %d: broken %v", part.id, part.broken)
		}
		// Evicted aggregates come back from their snapshots.
		var missing []ulid.ULID
		for id := range want {
			if part.entries[id] == nil {
				missing = append(missing, id)
			}
		}
		if !p.load(ctx, part, missing) {
			t.Fatalf("partition %d: loading evicted aggregates failed", part.id)
		}
	}
	n := 0
	for _, part := range parts {
		for id, e := range part.entries {
			if id == broken {
				t.Fatal("the broken aggregate is in memory")
			}
			got := e.inst.State.(*bank.Account).Balance
			if got != want[id] {
				t.Errorf("partition %d: %s has balance %d, want %d", part.id, id, got, want[id])
			}
			n++
		}
	}
	if n != len(want) {
		t.Fatalf("%d aggregates restored, want %d", n, len(want))
	}
}

// eventsTopic creates route's events topic with n partitions and returns
// a client, closed when t ends, that writes each record to the partition
// it names.
func eventsTopic(t *testing.T, ctx context.Context, brokers []string, route *producer.Route, n int32) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, n, 1, nil, route.EventsTopic); err != nil {
		t.Fatal(err)
	}
	return cl
}

// eventRecord is the record of event e of aggregate id at version, on
// partition part of route's events topic, as a processor writes it.
func eventRecord(t *testing.T, route *producer.Route, part int32, id ulid.ULID, version int64, e any) *kgo.Record {
	t.Helper()
	msg, _ := route.EventOf(reflect.TypeOf(e))
	value, err := msg.Serde.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return producer.EventRecord(route.EventsTopic, part, route.Codec, aggregate.EventEnvelope{
		EventID: ulid.Make(), AggregateType: route.Type.Name(), AggregateID: id, Type: msg.Name,
		Version: version, Time: time.Now(), CommandID: ulid.Make(),
	}, value)
}

// testRoute returns the route of the bank account aggregate under name,
// with JSON payloads, and the codec of its state.
func testRoute(t *testing.T, name string) (*producer.Route, producer.Serde) {
	t.Helper()
	codec := schema.JSON()
	route, err := producer.NewRoute(bank.Accounts(), name+".commands", name+".events", codec.Name(),
		func(rt reflect.Type) (producer.Serde, error) { return codec.For(rt) })
	if err != nil {
		t.Fatal(err)
	}
	state, err := codec.For(reflect.TypeFor[bank.Account]())
	if err != nil {
		t.Fatal(err)
	}
	return route, state
}

// testProcessor returns a processor of route with cfg (defaults filled in)
// that is not started: no group, no session; its restore and replay work.
func testProcessor(route *producer.Route, state producer.Serde, cfg Config) *Processor {
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.defaults()
	p := &Processor{cfg: cfg, log: cfg.Logger, aggs: map[string]*Aggregate{}, parts: map[topicPartition]*partition{}, cache: newCache()}
	p.aggs[route.CommandsTopic] = &Aggregate{Route: route, State: state, Fingerprint: 1, Snapshots: snapshot.EveryN(1000)}
	return p
}

// TestReplayKeepsNoFetchedMemory: a fetched record's key, value and header
// values share the fetched batch's buffer. What a replay keeps of a record
// (the command's result, for retries) must be a copy, or each result would
// pin its whole batch, out of sight of the cache bounds.
func TestReplayKeepsNoFetchedMemory(t *testing.T) {
	route, state := testRoute(t, "retain")
	p := testProcessor(route, state, Config{})
	part := p.partitionOf(route.CommandsTopic, 0)
	id := ulid.Make()
	msg, _ := route.EventOf(reflect.TypeFor[bank.AccountOpened]())
	value, err := msg.Serde.Encode(bank.AccountOpened{Owner: "o"})
	if err != nil {
		t.Fatal(err)
	}
	r := producer.EventRecord(route.EventsTopic, 0, "json", aggregate.EventEnvelope{
		EventID: ulid.Make(), AggregateType: route.Type.Name(), AggregateID: id, Type: msg.Name, Version: 1, Time: time.Now(), CommandID: ulid.Make(),
	}, value)
	batch := []byte(`...{"balance":0}...`) // stands for the fetched batch
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: producer.HeaderResult, Value: batch[3 : len(batch)-3]})
	if err := p.replayOne(part, r, time.Now()); err != nil {
		t.Fatal(err)
	}
	copy(batch, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx") // the batch's memory reused
	e := part.entries[id]
	if e == nil {
		t.Fatal("the event was not replayed")
	}
	if len(e.inst.Recent) != 1 || string(e.inst.Recent[0].Result) != `{"balance":0}` {
		t.Fatalf("after the fetched memory changed, the replayed aggregate remembers %+v", e.inst.Recent)
	}
}

// TestReadyDuringRestore: App.Ready asks the processor from other
// goroutines while its loop restores partitions; the race detector checks
// that marking a partition restored is synchronized with that question.
func TestReadyDuringRestore(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	route, state := testRoute(t, kafkatest.Name(t))
	eventsTopic(t, ctx, brokers, route, 2)
	p := testProcessor(route, state, Config{ClientOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}})
	p.joined = true
	parts := []*partition{p.partitionOf(route.CommandsTopic, 0), p.partitionOf(route.CommandsTopic, 1)}
	done := make(chan struct{})
	asked := make(chan bool)
	go func() {
		ready := false
		for {
			select {
			case <-done:
				asked <- ready
				return
			default:
				ready = p.Ready()
			}
		}
	}()
	errs := p.restore(ctx, parts)
	close(done)
	<-asked
	if len(errs) > 0 || !p.Ready() {
		t.Fatalf("restore: %v; ready %v", errs, p.Ready())
	}
}

// TestFullReplayOfATruncatedLog: a replay from the start (the store's
// watermark not trusted) meets an aggregate whose first events are no
// longer in the log; its snapshot in the store is where it starts, and the
// rest of the partition is folded as usual.
func TestFullReplayOfATruncatedLog(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	route, state := testRoute(t, kafkatest.Name(t))
	cl := eventsTopic(t, ctx, brokers, route, 1)
	event := func(id ulid.ULID, version int64, e any) *kgo.Record { return eventRecord(t, route, 0, id, version, e) }
	old, fresh := ulid.Make(), ulid.Make()
	if err := cl.ProduceSync(ctx,
		event(fresh, 1, bank.AccountOpened{Owner: "f"}),
		event(old, 3, bank.MoneyDeposited{Amount: 5}), // versions 1 and 2 are gone
		event(fresh, 2, bank.MoneyDeposited{Amount: 7}),
	).FirstErr(); err != nil {
		t.Fatal(err)
	}

	store := snapshot.NewMemory()
	sp := snapshot.Partition{Topic: route.EventsTopic, ID: 0}
	mark, err := store.Claim(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := state.Encode(&bank.Account{Owner: "o", Balance: 10, Open: true})
	if err != nil {
		t.Fatal(err)
	}
	snap := snapshot.Snapshot{AggregateID: old, Version: 2, Offset: 0, Fingerprint: 1, State: encodeFrame(b, nil)}
	if err := store.Save(ctx, sp, mark.Token, []snapshot.Snapshot{snap}, 0); err != nil {
		t.Fatal(err)
	}

	p := testProcessor(route, state, Config{ClientOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Store: store})
	part := p.partitionOf(route.CommandsTopic, 0)
	part.full = true
	if errs := p.restore(ctx, []*partition{part}); len(errs) > 0 {
		t.Fatalf("restore: %v", errs)
	}
	for id, want := range map[ulid.ULID]int64{old: 15, fresh: 7} {
		e := part.entries[id]
		if e == nil {
			t.Fatalf("%s not restored", id)
		}
		if got := e.inst.State.(*bank.Account).Balance; got != want {
			t.Fatalf("%s: balance %d, want %d", id, got, want)
		}
	}
}

// BenchmarkReplay folds the events of 1 000 accounts (opened, then
// deposits, each with the result header the processor writes), Avro as in
// production: the replay loop's own CPU and allocations per event, without
// Kafka (`interlock bench` measures the restore end to end).
func BenchmarkReplay(b *testing.B) {
	codec := schema.Avro()
	route, err := producer.NewRoute(bank.Accounts(), "bench.commands", "bench.events", codec.Name(),
		func(rt reflect.Type) (producer.Serde, error) { return codec.For(rt) })
	if err != nil {
		b.Fatal(err)
	}
	state, err := codec.For(reflect.TypeFor[bank.Account]())
	if err != nil {
		b.Fatal(err)
	}
	const accounts, deposits = 1000, 100
	ids := make([]ulid.ULID, accounts)
	for i := range ids {
		ids[i] = ulid.Make()
	}
	var records []*kgo.Record
	event := func(id ulid.ULID, version int64, e any, result []byte) {
		msg, _ := route.EventOf(reflect.TypeOf(e))
		value, err := msg.Serde.Encode(e)
		if err != nil {
			b.Fatal(err)
		}
		r := producer.EventRecord(route.EventsTopic, 0, codec.Name(), aggregate.EventEnvelope{
			EventID: ulid.Make(), AggregateType: route.Type.Name(), AggregateID: id, Type: msg.Name,
			Version: version, Time: time.Now(), CommandID: ulid.Make(),
		}, value)
		if result != nil {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: producer.HeaderResult, Value: result})
		}
		r.Offset = int64(len(records))
		records = append(records, r)
	}
	for _, id := range ids {
		event(id, 1, bank.AccountOpened{Owner: "o"}, nil)
	}
	for v := range deposits {
		for _, id := range ids {
			event(id, int64(v+2), bank.MoneyDeposited{Amount: 10}, []byte(`{"balance":`+strconv.Itoa(10*(v+1))+`}`))
		}
	}
	p := testProcessor(route, state, Config{MaxCached: 2 * accounts, MaxCachedBytes: 1 << 30})
	now := time.Now()
	var part *partition
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % len(records)
		if j == 0 {
			b.StopTimer()
			p.cache = newCache()
			part = p.newPartition(route.CommandsTopic, 0)
			b.StartTimer()
		}
		if err := p.replayOne(part, records[j], now); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if e := part.entries[ids[0]]; e == nil || e.inst.Version == 0 {
		b.Fatal("nothing was replayed")
	}
}

// BenchmarkPrepareSchemas is what looking up the commands' writer schemas
// before a batch's transaction costs per command when every schema is
// known: the price of never waiting on a registry inside one.
func BenchmarkPrepareSchemas(b *testing.B) {
	codec := schema.Avro()
	route, err := producer.NewRoute(bank.Accounts(), "bench.commands", "bench.events", codec.Name(),
		func(rt reflect.Type) (producer.Serde, error) { return codec.For(rt) })
	if err != nil {
		b.Fatal(err)
	}
	msg, _ := route.CommandOf(reflect.TypeFor[bank.DepositMoney]())
	w := &work{part: &partition{route: route}}
	for range 1000 {
		env := aggregate.Command{AggregateID: ulid.Make(), CommandID: ulid.Make()}
		r, err := producer.CommandRecord(route, msg, bank.DepositMoney{Amount: 1}, env, nil, 0, time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		w.records = append(w.records, r)
	}
	p := &Processor{}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.prepareSchemas(context.Background(), []*work{w}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(w.records)), "ns/command")
}
