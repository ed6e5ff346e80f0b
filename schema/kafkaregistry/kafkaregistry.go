// Package kafkaregistry is a schema.Registry kept in a compacted Kafka
// topic, for deployments with no schema registry (and the embedded Kafka):
// schemas and their IDs live as long as the topic, so IDs are the same
// after a restart and for every instance of the application.
//
// # The log
//
// The topic has one partition, cleanup.policy=compact, and two kinds of
// records, both JSON:
//
//   - "id/<ID>" → {"schema": text}: a claim of an ID by a schema. The
//     first claim of an ID in the log wins. An ID is the schema's
//     fingerprint (schema.FingerprintID, the ID the codec writes with no
//     registry) or, if a different schema holds that, the next free one.
//   - "subject/<subject>/<ID>" → {"subject": s, "id": ID}: the schema of ID
//     is registered under subject. A subject's versions are its records
//     in log order.
//
// Any number of instances may register at once: each writes its claim,
// reads the log to its end, and keeps the ID only if its claim came
// first; a loser writes the winner's claim again (so that compaction,
// which keeps the last record of a key, keeps the winner) and tries the
// next ID. The topic's min.compaction.lag.ms (a day by default) leaves
// that time to happen. Records are never deleted: a schema may be needed
// to read an event for as long as the events topic keeps it.
package kafkaregistry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/schema"
)

// Opt configures a Registry.
type Opt interface{ apply(*config) }

type config struct {
	topic       string
	clientOpts  []kgo.Opt
	replication int16
	lag         time.Duration
}

type optFunc func(*config)

func (f optFunc) apply(c *config) { f(c) }

// Topic sets the topic's name. Default: "_interlock_schemas".
func Topic(name string) Opt { return optFunc(func(c *config) { c.topic = name }) }

// ClientOpts sets the options of the registry's Kafka client: the seed
// brokers (kgo.SeedBrokers, required), TLS, SASL. The registry adds its
// own consume and produce settings.
func ClientOpts(opts ...kgo.Opt) Opt {
	return optFunc(func(c *config) { c.clientOpts = append(c.clientOpts, opts...) })
}

// ReplicationFactor sets the replication factor of the topic when the
// registry creates it. Default: -1, the broker's default.
func ReplicationFactor(n int16) Opt { return optFunc(func(c *config) { c.replication = n }) }

// MinCompactionLag sets the topic's min.compaction.lag.ms when the
// registry creates it: how long a record is kept as it is, which must
// cover the time concurrent registrations take to settle. Default: 24h.
func MinCompactionLag(d time.Duration) Opt { return optFunc(func(c *config) { c.lag = d }) }

// Registry is a schema.Registry in a compacted Kafka topic. It holds the
// whole log in memory (schemas are few and small) and reads what others
// appended before answering anything it does not know yet. Safe for
// concurrent use; Close releases its client.
type Registry struct {
	topic string
	cl    *kgo.Client
	adm   *kadm.Client

	mu       sync.Mutex // held while the log is read and written
	next     int64      // offset of the next record to read
	schemas  map[uint32]string
	ids      map[string]uint32 // schema text → its first winning ID
	last     map[uint32]string // the last claim of each ID, for repairs
	subjects map[string][]schema.Version
	seen     map[string]bool // subject record keys read
}

var _ schema.Registry = (*Registry)(nil)

// New opens the registry in its topic, creating the topic when missing,
// and reads it. It refuses a topic that has more than one partition or is
// not compacted-only: either could lose schemas or their order.
func New(ctx context.Context, opts ...Opt) (*Registry, error) {
	c := config{topic: "_interlock_schemas", replication: -1, lag: 24 * time.Hour}
	for _, o := range opts {
		o.apply(&c)
	}
	if c.topic == "" {
		return nil, errors.New("kafkaregistry: empty topic name")
	}
	// The topic is made (and waited for) by a client of its own: one that
	// consumed the topic before it exists would wait out its metadata age.
	admCl, err := kgo.NewClient(c.clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("kafkaregistry: %w", err)
	}
	err = ensureTopic(ctx, kadm.NewClient(admCl), c)
	admCl.Close()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), c.clientOpts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafkaregistry: %w", err)
	}
	r := &Registry{
		topic: c.topic, cl: cl, adm: kadm.NewClient(cl),
		schemas: map[uint32]string{}, ids: map[string]uint32{}, last: map[uint32]string{},
		subjects: map[string][]schema.Version{}, seen: map[string]bool{},
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.catchUp(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the registry's Kafka client.
func (r *Registry) Close() { r.cl.Close() }

func ensureTopic(ctx context.Context, adm *kadm.Client, c config) error {
	_, err := adm.CreateTopic(ctx, 1, c.replication, map[string]*string{
		"cleanup.policy":        kadm.StringPtr("compact"),
		"min.compaction.lag.ms": kadm.StringPtr(strconv.FormatInt(c.lag.Milliseconds(), 10)),
	}, c.topic)
	// Kafka refuses a principal without CREATE before it looks whether
	// the topic exists: an admin may have made it, which is checked below.
	denied := errors.Is(err, kerr.TopicAuthorizationFailed)
	if err != nil && !denied && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafkaregistry: creating topic %s: %w", c.topic, err)
	}
	// A new topic takes a moment to appear in every broker's metadata, and
	// the brokers asked for its metadata and for its configs may differ:
	// both are asked again while one does not know it yet.
	var topics kadm.TopicDetails
	var rc kadm.ResourceConfig
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		topics, rc, err = describeTopic(ctx, adm, c.topic)
		if denied && errors.Is(err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("kafkaregistry: topic %s does not exist and this principal may not create it (%w): have it created first or grant CREATE on it",
				c.topic, kerr.TopicAuthorizationFailed)
		}
		if err == nil || !errors.Is(err, kerr.UnknownTopicOrPartition) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkaregistry: waiting for topic %s: %w", c.topic, ctx.Err())
		case <-time.After(wait):
		}
	}
	if err != nil {
		return err
	}
	if n := len(topics[c.topic].Partitions); n != 1 {
		return fmt.Errorf("kafkaregistry: topic %s has %d partitions, want 1 (the order of its records decides which registration wins)", c.topic, n)
	}
	for _, cfg := range rc.Configs {
		if cfg.Key == "cleanup.policy" && cfg.Value != nil && *cfg.Value != "compact" {
			return fmt.Errorf("kafkaregistry: topic %s has cleanup.policy=%s, want compact (deletion would lose schemas)", c.topic, *cfg.Value)
		}
	}
	return nil
}

// describeTopic returns topic's metadata and configs.
func describeTopic(ctx context.Context, adm *kadm.Client, topic string) (kadm.TopicDetails, kadm.ResourceConfig, error) {
	topics, err := adm.ListTopics(ctx, topic)
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		return nil, kadm.ResourceConfig{}, fmt.Errorf("kafkaregistry: describing topic %s: %w", topic, err)
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return nil, kadm.ResourceConfig{}, fmt.Errorf("kafkaregistry: configs of topic %s: %w", topic, err)
	}
	rc, err := cfgs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return nil, kadm.ResourceConfig{}, fmt.Errorf("kafkaregistry: configs of topic %s: %w", topic, err)
	}
	return topics, rc, nil
}

// newTopicGrace is how long a topic a broker says does not exist is taken
// for one it has not learnt of yet.
const newTopicGrace = 10 * time.Second

type claimValue struct {
	Schema string `json:"schema"`
}

type subjectValue struct {
	Subject string `json:"subject"`
	ID      uint32 `json:"id"`
}

func idKey(id uint32) string { return "id/" + strconv.FormatUint(uint64(id), 10) }

// catchUp reads the log up to its current end. r.mu is held.
func (r *Registry) catchUp(ctx context.Context) error {
	// A broker that has not learnt of a new topic yet answers that it
	// does not exist, for a moment after the topic's creation.
	var ends kadm.ListedOffsets
	var err error
	for wait, give := 10*time.Millisecond, time.Now().Add(newTopicGrace); ; wait = min(2*wait, time.Second) {
		ends, err = r.adm.ListEndOffsets(ctx, r.topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil || !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(give) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkaregistry: end of %s: %w", r.topic, ctx.Err())
		case <-time.After(wait):
		}
	}
	if err != nil {
		return fmt.Errorf("kafkaregistry: end of %s: %w", r.topic, err)
	}
	end, ok := ends.Lookup(r.topic, 0)
	if !ok {
		return fmt.Errorf("kafkaregistry: end of %s: no partition 0", r.topic)
	}
	for r.next < end.Offset {
		fs := r.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kafkaregistry: reading %s: %w", r.topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if ferr == nil {
				ferr = err
			}
		})
		if ferr != nil {
			return fmt.Errorf("kafkaregistry: reading %s: %w", r.topic, ferr)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Offset < r.next {
				return
			}
			r.next = rec.Offset + 1
			r.apply(rec)
		})
	}
	return nil
}

// apply folds one record into the state. Records it cannot parse are
// skipped: they are not this registry's.
func (r *Registry) apply(rec *kgo.Record) {
	key := string(rec.Key)
	switch {
	case strings.HasPrefix(key, "id/"):
		id, err := strconv.ParseUint(key[3:], 10, 32)
		var v claimValue
		if err != nil || id == 0 || id > 1<<31-1 || json.Unmarshal(rec.Value, &v) != nil || v.Schema == "" {
			return
		}
		r.last[uint32(id)] = v.Schema
		if _, taken := r.schemas[uint32(id)]; taken {
			return
		}
		r.schemas[uint32(id)] = v.Schema
		if _, ok := r.ids[v.Schema]; !ok {
			r.ids[v.Schema] = uint32(id)
		}
	case strings.HasPrefix(key, "subject/"):
		var v subjectValue
		if json.Unmarshal(rec.Value, &v) != nil || r.seen[key] {
			return
		}
		text, ok := r.schemas[v.ID]
		if !ok { // a claim comes before its subject records
			return
		}
		r.seen[key] = true
		vs := r.subjects[v.Subject]
		r.subjects[v.Subject] = append(vs, schema.Version{Version: len(vs) + 1, ID: v.ID, Schema: text})
	}
}

// produce writes one record and waits for it. r.mu is held.
func (r *Registry) produce(ctx context.Context, key string, value any) error {
	b, err := json.Marshal(value)
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: r.topic, Partition: 0, Key: []byte(key), Value: b}
	if err := r.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("kafkaregistry: writing to %s: %w", r.topic, err)
	}
	return nil
}

// repair writes again the winning claim of every ID whose last claim is
// another schema's, so that compaction keeps the winner. r.mu is held.
func (r *Registry) repair(ctx context.Context) error {
	for id, text := range r.last {
		if win := r.schemas[id]; win != text {
			if err := r.produce(ctx, idKey(id), claimValue{Schema: win}); err != nil {
				return err
			}
			r.last[id] = win
		}
	}
	return nil
}

// maxClaims bounds the IDs one registration tries.
const maxClaims = 32

// Register registers text under subject and returns its ID.
func (r *Registry) Register(ctx context.Context, subject, text string) (uint32, error) {
	if subject == "" {
		return 0, errors.New("kafkaregistry: empty subject")
	}
	id, err := schema.FingerprintID(text)
	if err != nil {
		return 0, fmt.Errorf("kafkaregistry: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.catchUp(ctx); err != nil {
		return 0, err
	}
	won, ok := r.ids[text]
	for try := 0; !ok; try++ {
		if try == maxClaims {
			return 0, fmt.Errorf("kafkaregistry: no free schema ID after %d tries", maxClaims)
		}
		for _, taken := r.schemas[id]; taken; _, taken = r.schemas[id] {
			if id++; id > 1<<31-1 {
				id = 1
			}
		}
		if err := r.produce(ctx, idKey(id), claimValue{Schema: text}); err != nil {
			return 0, err
		}
		if err := r.catchUp(ctx); err != nil {
			return 0, err
		}
		if err := r.repair(ctx); err != nil {
			return 0, err
		}
		won, ok = r.ids[text]
	}
	for _, v := range r.subjects[subject] {
		if v.ID == won {
			return won, nil
		}
	}
	key := "subject/" + subject + "/" + strconv.FormatUint(uint64(won), 10)
	if err := r.produce(ctx, key, subjectValue{Subject: subject, ID: won}); err != nil {
		return 0, err
	}
	if err := r.catchUp(ctx); err != nil {
		return 0, err
	}
	return won, nil
}

// SchemaByID returns the schema of id, reading the log's new records
// first when id is not known yet.
func (r *Registry) SchemaByID(ctx context.Context, id uint32) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if text, ok := r.schemas[id]; ok {
		return text, nil
	}
	if err := r.catchUp(ctx); err != nil {
		return "", err
	}
	if text, ok := r.schemas[id]; ok {
		return text, nil
	}
	return "", fmt.Errorf("kafkaregistry: schema ID %d is not in %s: %w", id, r.topic, schema.ErrUnknownSchema)
}

// Versions returns the versions of subject, after reading the log's new
// records.
func (r *Registry) Versions(ctx context.Context, subject string) ([]schema.Version, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.catchUp(ctx); err != nil {
		return nil, err
	}
	return append([]schema.Version(nil), r.subjects[subject]...), nil
}
