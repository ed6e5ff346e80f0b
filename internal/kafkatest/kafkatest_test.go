package kafkatest_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/internal/kafkatest"
)

// TestReadAllPastAnAbortedTail: ReadAll returns once it has read what was
// committed, when the records last written before it began belong to a
// transaction aborted after it began (a zombie's, aborted by its
// timeout). Their abort marker lies past the end ReadAll aimed at, and a
// read_committed reader never gets the aborted records themselves.
func TestReadAllPastAnAbortedTail(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.Name(t) + ".out"
	kafkatest.CreateTopic(t, brokers, topic, 1)
	kafkatest.Produce(t, brokers, &kgo.Record{Topic: topic, Value: []byte("committed")})
	tx, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(topic), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, &kgo.Record{Value: []byte("aborted 1")}, &kgo.Record{Value: []byte("aborted 2")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	aborted := make(chan error, 1)
	go func() {
		time.Sleep(time.Second) // ReadAll has taken the end offsets by then
		aborted <- tx.EndTransaction(ctx, kgo.TryAbort)
	}()
	got := kafkatest.ReadAll(t, brokers, topic)
	if err := <-aborted; err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Value) != "committed" {
		t.Fatalf("read %d records, want the one committed", len(got))
	}
}
