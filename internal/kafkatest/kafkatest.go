// Package kafkatest is the one harness every test uses to get a Kafka: the
// real cluster named by INTERLOCK_TEST_BROKERS when it is set (see
// scripts/services.sh), an embedded kfake cluster otherwise. Names are
// unique per test, so tests share a cluster and run in parallel.
package kafkatest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/internal/logread"
	"github.com/interlock-go/interlock/internal/prune"
	"github.com/interlock-go/interlock/internal/services"
)

// Brokers returns the seed brokers of a Kafka for t: the real one from
// INTERLOCK_TEST_BROKERS, or a new embedded cluster closed when t ends.
func Brokers(t testing.TB) []string {
	t.Helper()
	if env := os.Getenv(services.EnvBrokers); env != "" {
		return strings.Split(env, ",")
	}
	if services.Required() {
		t.Fatalf("%s=1 but %s is not set: start Kafka with scripts/services.sh up and eval \"$(scripts/services.sh env)\"", services.EnvRequire, services.EnvBrokers)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("starting embedded Kafka: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// Real reports whether tests run against a real Kafka.
func Real() bool { return os.Getenv(services.EnvBrokers) != "" }

// Cluster returns the seed brokers of the three-node cluster
// (scripts/services.sh up --cluster), for failover tests; it skips or fails
// like every missing service.
func Cluster(t testing.TB) []string {
	t.Helper()
	return strings.Split(services.Lookup(t, services.EnvClusterBrokers, "the three-node Kafka cluster"), ",")
}

var seq atomic.Int64

// Name returns a name unique to this test run, usable as an application
// name (topic prefix). On the real Kafka, the topics named after it (the
// name itself, or the name and a dot) are deleted when t passes, so a
// broker shared by many runs does not pile up test partitions; a failed
// test's topics stay, to be read.
func Name(t testing.TB) string {
	n := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, t.Name())
	if len(n) > 40 {
		n = n[:40]
	}
	name := fmt.Sprintf("t%s-%s-%d", strings.ToLower(ulid.Make().String()[20:]), n, seq.Add(1))
	if Real() {
		t.Cleanup(func() {
			if !t.Failed() {
				deleteTopics(t, name)
			}
		})
	}
	return name
}

// deleteTopics deletes the topics named name or name.*, logging (not
// failing) when it cannot: the test itself has passed.
func deleteTopics(t testing.TB, name string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(os.Getenv(services.EnvBrokers), ",")...))
	if err != nil {
		t.Logf("deleting the topics of %s: %v", name, err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := prune.Topics(ctx, kadm.NewClient(cl), func(topic string) bool {
		return topic == name || strings.HasPrefix(topic, name+".")
	}); err != nil {
		t.Logf("deleting the topics of %s: %v", name, err)
	}
}

// ReadAll returns every committed record of topic, as of now, in partition
// and offset order. It waits for the transactions open now to end (at
// worst their timeout).
func ReadAll(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	to := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { to[o.Partition] = o.Offset })
	byPartition := map[int32][]*kgo.Record{}
	if err := logread.Range(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, topic, nil, to, func(r *kgo.Record) {
		if !r.Attrs.IsControl() {
			byPartition[r.Partition] = append(byPartition[r.Partition], r)
		}
	}, nil); err != nil {
		t.Fatalf("reading %s: %v", topic, err)
	}
	var all []*kgo.Record
	for p := int32(0); len(byPartition) > 0; p++ {
		all = append(all, byPartition[p]...)
		delete(byPartition, p)
	}
	return all
}

// client returns a plain client of brokers, closed when t ends, and a
// context bounding what t does with it.
func client(t testing.TB, brokers []string) (*kgo.Client, context.Context) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return cl, ctx
}

// Leader returns the broker leading partition 0 of topic.
func Leader(t testing.TB, brokers []string, topic string) int32 {
	t.Helper()
	cl, ctx := client(t, brokers)
	topics, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		t.Fatalf("describing %s: %v", topic, err)
	}
	return topics[topic].Partitions[0].Leader
}

// Produce writes raw records (for tests of hostile input).
func Produce(t testing.TB, brokers []string, rs ...*kgo.Record) {
	t.Helper()
	cl, ctx := client(t, brokers)
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// CreateTopic creates topic with partitions partitions (brokers do not
// create topics on first use).
func CreateTopic(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	cl, ctx := client(t, brokers)
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
}
