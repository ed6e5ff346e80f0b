package prune_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/prune"
)

// TestTopics: the matching topics go, the others stay.
func TestTopics(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, topic := range []string{name + ".a", name + ".b", name + "-kept"} {
		kafkatest.CreateTopic(t, brokers, topic, 1)
	}
	n, err := prune.Topics(ctx, adm, func(topic string) bool { return strings.HasPrefix(topic, name+".") })
	if err != nil || n != 2 {
		t.Fatalf("pruned %d topics (%v), want 2", n, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, topic := range topics.Names() {
			if strings.HasPrefix(topic, name) {
				ours = append(ours, topic)
			}
		}
		if slices.Equal(ours, []string{name + "-kept"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topics left: %v, want only %s-kept", ours, name)
		}
	}
	if n, err := prune.Topics(ctx, adm, func(string) bool { return false }); err != nil || n != 0 {
		t.Fatalf("nothing matching: %d, %v", n, err)
	}
	if _, err := prune.Topics(ctx, adm, func(topic string) bool { return topic == name+"-kept" }); err != nil {
		t.Fatal(err)
	}
}
