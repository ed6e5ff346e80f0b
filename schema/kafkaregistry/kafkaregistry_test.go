package kafkaregistry

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/registrytest"
)

func open(t *testing.T, brokers []string, topic string) *Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := New(ctx, Topic(topic), ClientOpts(kgo.SeedBrokers(brokers...)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestConformance(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	registrytest.Run(t,
		func(t *testing.T) schema.Registry { return open(t, brokers, kafkatest.Name(t)) },
		func(t *testing.T, r schema.Registry) schema.Registry { return open(t, brokers, r.(*Registry).topic) })
}

const (
	schemaA = `{"type":"record","name":"a.A","fields":[{"name":"x","type":"long"}]}`
	schemaB = `{"type":"record","name":"a.B","fields":[{"name":"y","type":"string"}]}`
	schemaC = `{"type":"record","name":"a.C","fields":[{"name":"z","type":"int"}]}`
)

func claim(t *testing.T, topic string, id uint32, text string) *kgo.Record {
	t.Helper()
	return &kgo.Record{Topic: topic, Key: []byte(idKey(id)), Value: fmt.Appendf(nil, `{"schema":%q}`, text)}
}

// IDs are fingerprints, as with no registry, unless another schema holds
// the fingerprint already.
func TestIDs(t *testing.T) {
	ctx := context.Background()
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.Name(t)
	r := open(t, brokers, topic)
	fpA, _ := schema.FingerprintID(schemaA)
	fpB, _ := schema.FingerprintID(schemaB)
	if id, err := r.Register(ctx, "s", schemaA); err != nil || id != fpA {
		t.Fatalf("ID %d, %v; want the fingerprint %d", id, err, fpA)
	}
	// B's fingerprint is taken by C (a collision, forced here).
	kafkatest.Produce(t, brokers, claim(t, topic, fpB, schemaC))
	id, err := r.Register(ctx, "s", schemaB)
	if err != nil || id != fpB+1 {
		t.Fatalf("ID %d, %v; want the next free ID %d", id, err, fpB+1)
	}
	if got, err := r.SchemaByID(ctx, fpB); err != nil || got != schemaC {
		t.Errorf("schema %d = %q, %v; want C", fpB, got, err)
	}
}

// Two claims of one ID: the first wins everywhere, and the winner is
// written again so that compaction keeps it.
func TestConflictingClaims(t *testing.T) {
	ctx := context.Background()
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.Name(t)
	r := open(t, brokers, topic)
	kafkatest.Produce(t, brokers, claim(t, topic, 5, schemaA))
	kafkatest.Produce(t, brokers, claim(t, topic, 5, schemaB))
	kafkatest.Produce(t, brokers, &kgo.Record{Topic: topic, Key: []byte("subject/s/5"), Value: []byte(`{"subject":"s","id":5}`)})
	kafkatest.Produce(t, brokers, &kgo.Record{Topic: topic, Key: []byte("junk"), Value: []byte("not json")})

	for _, reg := range []*Registry{r, open(t, brokers, topic)} {
		if got, err := reg.SchemaByID(ctx, 5); err != nil || got != schemaA {
			t.Errorf("schema 5 = %q, %v; want A (the first claim)", got, err)
		}
		if vs, err := reg.Versions(ctx, "s"); err != nil || len(vs) != 1 || vs[0].Schema != schemaA {
			t.Errorf("versions = %+v, %v", vs, err)
		}
	}
	// B has no ID yet: registering it claims another, and repairs ID 5.
	id, err := r.Register(ctx, "s", schemaB)
	if err != nil || id == 5 {
		t.Fatalf("B: ID %d, %v", id, err)
	}
	var last string
	for _, rec := range kafkatest.ReadAll(t, brokers, topic) {
		if string(rec.Key) == idKey(5) {
			last = string(rec.Value)
		}
	}
	if want := fmt.Sprintf(`{"schema":%q}`, schemaA); last != want {
		t.Errorf("last claim of ID 5 = %s, want %s (what compaction keeps)", last, want)
	}
}

// Instances registering at once agree on every ID.
func TestConcurrentInstances(t *testing.T) {
	ctx := context.Background()
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.Name(t)
	regs := []*Registry{open(t, brokers, topic), open(t, brokers, topic), open(t, brokers, topic)}
	texts := []string{schemaA, schemaB, schemaC}
	ids := make([][]uint32, len(regs))
	var wg sync.WaitGroup
	for i, r := range regs {
		ids[i] = make([]uint32, len(texts))
		wg.Go(func() {
			for j := range texts {
				text := texts[(i+j)%len(texts)]
				id, err := r.Register(ctx, "s", text)
				if err != nil {
					t.Error(err)
					return
				}
				ids[i][(i+j)%len(texts)] = id
			}
		})
	}
	wg.Wait()
	for i := range regs {
		if !reflect.DeepEqual(ids[i], ids[0]) {
			t.Fatalf("instances disagree: %v", ids)
		}
	}
	for _, r := range regs {
		vs, err := r.Versions(ctx, "s")
		if err != nil || len(vs) != 3 {
			t.Fatalf("versions = %+v, %v", vs, err)
		}
	}
}

func TestTopicChecks(t *testing.T) {
	ctx := context.Background()
	brokers := kafkatest.Brokers(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tests := []struct {
		name       string
		partitions int32
		configs    map[string]*string
		want       string
	}{
		{"partitions", 3, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "has 3 partitions, want 1"},
		{"deletion", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}, "cleanup.policy=delete, want compact"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			topic := kafkatest.Name(t)
			if _, err := adm.CreateTopic(ctx, tc.partitions, -1, tc.configs, topic); err != nil {
				t.Fatal(err)
			}
			_, err := New(ctx, Topic(topic), ClientOpts(kgo.SeedBrokers(brokers...)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// The topic the registry creates: one partition, compacted only.
	topic := kafkatest.Name(t)
	open(t, brokers, topic)
	cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc.Configs {
		if c.Value != nil {
			got[c.Key] = *c.Value
		}
	}
	if got["cleanup.policy"] != "compact" || got["min.compaction.lag.ms"] != "86400000" {
		t.Errorf("topic configs: cleanup.policy=%q min.compaction.lag.ms=%q", got["cleanup.policy"], got["min.compaction.lag.ms"])
	}
	if _, err := New(ctx, Topic("")); err == nil {
		t.Error("empty topic name accepted")
	}
}

type Deposited struct {
	Amount int64 `avro:"amount"`
}

type DepositedV2 struct {
	Amount int64   `avro:"amount"`
	Memo   *string `avro:"memo"`
}

func (DepositedV2) AvroSchema() string {
	return `{"type":"record","name":"bank.Deposited","fields":[{"name":"amount","type":"long"},{"name":"memo","type":["null","string"],"default":null}]}`
}

// The application's view: schema IDs survive a restart (a new registry
// and a new codec on the same topic), and the records written before it
// decode after it, with the code of the next version too.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.Name(t)
	const events = "bank.account.events"

	start := func(typ reflect.Type) schema.Serde {
		reg := open(t, brokers, topic)
		s, err := schema.Avro(schema.AvroNamespace("bank"), schema.AvroRegistry(reg)).For(typ)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := schema.Register(ctx, s, events); err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := start(reflect.TypeFor[Deposited]())
	rec, err := first.Encode(Deposited{Amount: 42})
	if err != nil {
		t.Fatal(err)
	}
	again := start(reflect.TypeFor[Deposited]())
	if again.ID() != first.ID() || binary.BigEndian.Uint32(rec[1:5]) != first.ID() {
		t.Fatalf("ID %d after the restart, %d before", again.ID(), first.ID())
	}
	if v, err := again.Decode(rec); err != nil || *v.(*Deposited) != (Deposited{Amount: 42}) {
		t.Errorf("after the restart: %v, %v", v, err)
	}
	next := start(reflect.TypeFor[DepositedV2]())
	if next.ID() == first.ID() {
		t.Fatal("a new schema has the old one's ID")
	}
	v, err := next.Decode(rec)
	if err != nil || v.(*DepositedV2).Amount != 42 || v.(*DepositedV2).Memo != nil {
		t.Errorf("the next version reading the old record: %+v, %v", v, err)
	}
}

// Records the registry did not write (or a corrupt topic) are skipped:
// applying any sequence of records never panics, and every ID a subject
// lists holds the schema the subject says.
func FuzzApply(f *testing.F) {
	f.Add([]byte("id/5"), []byte(`{"schema":"x"}`), []byte("subject/s/5"), []byte(`{"subject":"s","id":5}`))
	f.Add([]byte("id/0"), []byte(`{"schema":""}`), []byte("subject/s/7"), []byte(`{"subject":"s","id":7}`))
	f.Add([]byte("id/4294967296"), []byte(`null`), []byte("subject/"), []byte(`{`))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 []byte) {
		r := &Registry{
			schemas: map[uint32]string{}, ids: map[string]uint32{}, last: map[uint32]string{},
			subjects: map[string][]schema.Version{}, seen: map[string]bool{},
		}
		for i, rec := range [][2][]byte{{k1, v1}, {k2, v2}, {k1, v2}, {k2, v1}} {
			r.apply(&kgo.Record{Key: rec[0], Value: rec[1], Offset: int64(i)})
		}
		for id, text := range r.schemas {
			if id == 0 || id > 1<<31-1 || text == "" {
				t.Fatalf("schema %d = %q", id, text)
			}
		}
		for s, vs := range r.subjects {
			for i, v := range vs {
				if v.Version != i+1 || r.schemas[v.ID] != v.Schema {
					t.Fatalf("subject %q version %d: %+v", s, i+1, v)
				}
			}
		}
	})
}

// TestNewTopicOnACluster: on a cluster, the broker asked for a new topic's
// configs may not know the topic yet when the one asked for its metadata
// already does; New waits for both instead of failing (a failure seen in
// TestBrokerFailover's start on the three-node cluster).
func TestNewTopicOnACluster(t *testing.T) {
	brokers := kafkatest.Cluster(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			r, err := New(ctx, Topic(fmt.Sprintf("%s.%d._schemas", name, i)), ReplicationFactor(3),
				ClientOpts(kgo.SeedBrokers(brokers...)))
			if err != nil {
				t.Errorf("registry %d: %v", i, err)
				return
			}
			r.Close()
		})
	}
	wg.Wait()
}
