package interlock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ErrTopology is matched by errors about existing topics that break the
// design's rules (commands and events of an aggregate not co-partitioned).
var ErrTopology = errors.New("interlock: topic layout")

func ptr(s string) *string { return &s }

// ensureTopics creates the application's topics when missing and checks
// that the commands and events topics of each aggregate have the same
// partition count.
func (a *App) ensureTopics(ctx context.Context, adm *kadm.Client) error {
	events := map[string]*string{
		"cleanup.policy":  ptr("delete"),
		"retention.ms":    ptr("-1"), // the system of record: kept forever
		"retention.bytes": ptr("-1"),
	}
	replies := map[string]*string{"retention.ms": ptr("3600000")}
	want := map[string]map[string]*string{a.repliesTopic(): replies}
	for _, r := range a.routes() {
		want[r.CommandsTopic] = nil
		want[r.EventsTopic] = events
	}
	for _, p := range a.projs {
		want[a.deadLetterTopic(p.Name())] = events // parked until resolved
	}
	names := make([]string, 0, len(want))
	for t := range want {
		names = append(names, t)
	}
	// Create without looking first: listing would fill the client's
	// metadata cache with "unknown topic" for its minimum age.
	var denied []string
	for _, t := range names {
		resp, err := adm.CreateTopic(ctx, a.cfg.partitions, a.cfg.replicationFactor, want[t], t)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			a.log.Info("interlock: created topic", "topic", t, "partitions", a.cfg.partitions)
		case errors.Is(err, kerr.TopicAuthorizationFailed):
			// Kafka refuses a principal without CREATE before it looks
			// whether the topic exists: an admin may have made it.
			denied = append(denied, t)
		case !errors.Is(err, kerr.TopicAlreadyExists):
			return fmt.Errorf("creating topic %s: %w", t, err)
		}
	}
	if err := requireTopics(ctx, adm, denied...); err != nil {
		return err
	}
	var existing kadm.TopicDetails
	var err error
	// New topics take a moment to appear in every broker's metadata.
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		existing, err = adm.ListTopics(ctx, names...)
		if err == nil {
			err = existing.Error()
		}
		if err == nil || !errors.Is(err, kerr.UnknownTopicOrPartition) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for new topics: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
	if err != nil {
		return fmt.Errorf("describing topics: %w", err)
	}
	for _, r := range a.routes() {
		c, e := len(existing[r.CommandsTopic].Partitions), len(existing[r.EventsTopic].Partitions)
		if c != e {
			return fmt.Errorf("%w: %s has %d partitions but %s has %d: an aggregate's commands and events must share partition numbers; recreate the topics while they hold no events (adding partitions to an events topic that holds events moves aggregates to other partitions, splitting their histories)", ErrTopology, r.CommandsTopic, c, r.EventsTopic, e)
		}
	}
	return nil
}

// requireTopics checks that topics exist, for a principal that may not
// create them: it names the missing ones, and the error matches
// kerr.TopicAuthorizationFailed.
func requireTopics(ctx context.Context, adm *kadm.Client, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("describing topics: %w", err)
	}
	var missing []string
	for _, t := range topics {
		d, ok := details[t]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			missing = append(missing, t)
		case d.Err != nil:
			return fmt.Errorf("describing topic %s: %w", t, d.Err)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("topics %s do not exist and this principal may not create them (%w): have them created first (the topics create command, as a principal with CREATE) or grant CREATE on them; see docs/security.md",
			strings.Join(missing, ", "), kerr.TopicAuthorizationFailed)
	}
	return nil
}

func (a *App) repliesTopic() string { return a.cfg.name + ".replies" }

func (a *App) deadLetterTopic(projection string) string {
	return a.cfg.name + "." + projection + ".dlq"
}
