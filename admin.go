package interlock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
)

// The operator's view of an application: its topics, its log read back
// and decoded, and its aggregates folded from the log. These methods work
// on a built application that need not be started (package service's
// topics, events and aggregate commands call them), so they need brokers:
// an embedded Kafka lives only as long as its application runs.

// ErrNoBrokers is returned by the operator's methods of an application
// that has no brokers: neither configured nor started.
var ErrNoBrokers = errors.New("interlock: no brokers (WithBrokers): an embedded Kafka has nothing to show once its process ends")

// ErrNoEvents is returned by LoadAggregate for an aggregate with no event
// in the log.
var ErrNoEvents = errors.New("interlock: no events for this aggregate")

// adminClient returns a client of the application's brokers: the
// configured ones, or the embedded Kafka's while the application runs.
func (a *App) adminClient(opts ...kgo.Opt) (*kgo.Client, error) {
	brokers := a.Brokers()
	if len(brokers) == 0 {
		brokers = a.cfg.brokers
	}
	if len(brokers) == 0 {
		return nil, ErrNoBrokers
	}
	all := append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, a.cfg.clientOpts...)
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("interlock: %w", err)
	}
	return cl, nil
}

// Topic roles, in TopicInfo.Role.
const (
	TopicCommands    = "commands"
	TopicEvents      = "events"
	TopicReplies     = "replies"
	TopicDeadLetters = "dead-letters"
	TopicSchemas     = "schemas"
)

// TopicInfo is one of the application's topics as the cluster has it.
type TopicInfo struct {
	Name string
	// Role is TopicCommands, TopicEvents, TopicReplies, TopicDeadLetters
	// or TopicSchemas (the built-in schema registry's).
	Role string
	// Owner is the aggregate type of a commands or events topic, the
	// projection of a dead-letter topic.
	Owner string
	// Exists is false for a topic the cluster does not have (yet): the
	// application creates it at Start, or CreateTopics does.
	Exists            bool
	Partitions        int
	ReplicationFactor int
	// Configs are the topic's settings that matter to Interlock
	// (cleanup.policy, retention.ms, retention.bytes, min.insync.replicas),
	// as the cluster reports them, defaults included.
	Configs map[string]string
}

// topicConfigKeys are the settings DescribeTopics reports.
var topicConfigKeys = []string{"cleanup.policy", "retention.ms", "retention.bytes", "min.insync.replicas"}

// plan lists the application's topics, in a stable order: per aggregate
// its commands and events, the replies, then each projection's dead
// letters.
func (a *App) plan() []TopicInfo {
	var out []TopicInfo
	for _, r := range a.routes() {
		out = append(out,
			TopicInfo{Name: r.CommandsTopic, Role: TopicCommands, Owner: r.Type.Name()},
			TopicInfo{Name: r.EventsTopic, Role: TopicEvents, Owner: r.Type.Name()})
	}
	out = append(out, TopicInfo{Name: a.repliesTopic(), Role: TopicReplies})
	for _, p := range a.projs {
		out = append(out, TopicInfo{Name: a.deadLetterTopic(p.Name()), Role: TopicDeadLetters, Owner: p.Name()})
	}
	if a.cfg.builtin && a.cfg.openRegistry != nil {
		out = append(out, TopicInfo{Name: a.cfg.name + "._schemas", Role: TopicSchemas})
	}
	return out
}

// CreateTopics creates the application's missing topics, as Start does
// (WithPartitions, WithReplicationFactor; events and dead letters kept
// forever; the built-in schema registry's compacted topic), and checks
// that each aggregate's commands and events topics are co-partitioned
// (ErrTopology). Existing topics are left as they are. Run it before the
// first deployment when the service's principal may not create topics.
func (a *App) CreateTopics(ctx context.Context) error {
	cl, err := a.adminClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := a.ensureTopics(ctx, kadm.NewClient(cl)); err != nil {
		return fmt.Errorf("interlock: %w", err)
	}
	if a.cfg.builtin {
		// Opening the built-in registry creates its topic.
		done, err := a.decoding(ctx)
		if err != nil {
			return err
		}
		done()
	}
	return nil
}

// DescribeTopics reports the application's topics as the cluster has
// them: missing ones too (Exists false).
func (a *App) DescribeTopics(ctx context.Context) ([]TopicInfo, error) {
	cl, err := a.adminClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	plan := a.plan()
	names := make([]string, len(plan))
	for i, t := range plan {
		names[i] = t.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("interlock: describing topics: %w", err)
	}
	var existing []string
	for i := range plan {
		t := &plan[i]
		d, ok := details[t.Name]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			continue
		}
		t.Exists, t.Partitions, t.ReplicationFactor = true, len(d.Partitions), d.Partitions.NumReplicas()
		existing = append(existing, t.Name)
	}
	if len(existing) == 0 {
		return plan, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
	if err != nil {
		return nil, fmt.Errorf("interlock: describing topic configs: %w", err)
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			return nil, fmt.Errorf("interlock: describing the configs of %s: %w", rc.Name, rc.Err)
		}
		i := slices.IndexFunc(plan, func(t TopicInfo) bool { return t.Name == rc.Name })
		if i < 0 {
			continue
		}
		plan[i].Configs = map[string]string{}
		for _, c := range rc.Configs {
			if slices.Contains(topicConfigKeys, c.Key) && c.Value != nil {
				plan[i].Configs[c.Key] = *c.Value
			}
		}
	}
	return plan, nil
}

// VerifyTopics checks the application's topics against the design's
// rules and returns every problem at once, each matching ErrTopology: a
// missing topic, an aggregate whose commands and events topics differ in
// partition count, an events or dead-letter topic that is compacted or
// not kept forever, a schemas topic that is not compacted or has more
// than one partition.
func (a *App) VerifyTopics(ctx context.Context) error {
	topics, err := a.DescribeTopics(ctx)
	if err != nil {
		return err
	}
	var errs []error
	problem := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrTopology}, args...)...))
	}
	partitions := map[string]int{}
	for _, t := range topics {
		if !t.Exists {
			problem("%s (%s) is missing: run topics create, or start the application once", t.Name, t.Role)
			continue
		}
		switch t.Role {
		case TopicCommands:
			partitions[t.Owner] = t.Partitions
		case TopicSchemas:
			if c := t.Configs["cleanup.policy"]; c != "compact" || t.Partitions != 1 {
				problem("%s has %d partitions and cleanup.policy=%s: the schema registry needs 1 and compact", t.Name, t.Partitions, c)
			}
		case TopicEvents, TopicDeadLetters:
			if c, ok := t.Configs["cleanup.policy"]; ok && strings.Contains(c, "compact") {
				problem("%s has cleanup.policy=%s: events are the system of record and must never be compacted", t.Name, c)
			}
			for _, k := range []string{"retention.ms", "retention.bytes"} {
				if v, ok := t.Configs[k]; ok && v != "-1" {
					problem("%s has %s=%s: events must be kept forever (-1)", t.Name, k, v)
				}
			}
		}
	}
	for _, t := range topics {
		if c, ok := partitions[t.Owner]; ok && t.Role == TopicEvents && t.Exists && c != t.Partitions {
			problem("aggregate %s: its commands topic has %d partitions but %s has %d: they must be co-partitioned", t.Owner, c, t.Name, t.Partitions)
		}
	}
	return errors.Join(errs...)
}

// EventQuery selects events of the log for ReadEvents.
type EventQuery struct {
	// Aggregate is the aggregate type whose events to read; empty for
	// every registered one.
	Aggregate string
	// ID, when set, selects one aggregate's events (Aggregate is then
	// required): only its partition is read.
	ID ulid.ULID
	// Offset is where to start in each partition read (clamped to the
	// partition's start); 0 reads from the start.
	Offset int64
	// Since, when set, starts each partition at its first event written
	// at or after it (and wins over Offset).
	Since time.Time
	// Follow keeps reading new events until ctx ends; otherwise ReadEvents
	// stops at the end the partitions had when it started.
	Follow bool
}

// StoredEvent is an event as read back from the log.
type StoredEvent struct {
	aggregate.EventEnvelope
	// Data is the decoded payload, a value of its registered type (after
	// upcasting); nil when Err is set.
	Data any
	// Position is where the event is in its topic.
	Position producer.Position
	// Metadata are the record's headers that are not Interlock's own
	// (trace context, tenant, ...).
	Metadata map[string]string
	// Err says why the record could not be decoded; its envelope is what
	// could be read.
	Err error
}

// ReadEvents reads the application's committed events that q selects and
// calls fn with each, in order within each partition (an aggregate's
// events in version order). A record that cannot be decoded is passed
// with its Err set. It returns fn's first error, ctx's error, or nil once
// every partition read has reached the end it had at the start (never, with
// Follow).
func (a *App) ReadEvents(ctx context.Context, q EventQuery, fn func(StoredEvent) error) error {
	routes, err := a.routesFor(q.Aggregate)
	if err != nil {
		return err
	}
	if q.ID != (ulid.ULID{}) && q.Aggregate == "" {
		return errors.New("interlock: reading one aggregate's events needs its type")
	}
	cl, err := a.adminClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	done, err := a.decoding(ctx)
	if err != nil {
		return err
	}
	defer done()
	adm := kadm.NewClient(cl)
	byTopic := map[string]*producer.Route{}
	topics := make([]string, 0, len(routes))
	for _, r := range routes {
		byTopic[r.EventsTopic] = r
		topics = append(topics, r.EventsTopic)
	}
	details, err := adm.ListTopics(ctx, topics...)
	if err == nil {
		err = details.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("interlock: reading events: %w (the application's topics are created by topics create, or at its first start)", err)
	}
	if err != nil {
		return fmt.Errorf("interlock: describing %s: %w", strings.Join(topics, ", "), err)
	}
	// The partitions to read: all, or the one aggregate's.
	want := map[string]map[int32]bool{}
	for _, t := range topics {
		want[t] = map[int32]bool{}
		n := len(details[t].Partitions)
		if q.ID != (ulid.ULID{}) {
			want[t][int32(kgo.StickyKeyPartitioner(nil).ForTopic(t).Partition(&kgo.Record{Key: []byte(q.ID.String())}, n))] = true
			continue
		}
		for p := range n {
			want[t][int32(p)] = true
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("interlock: start offsets: %w", err)
	}
	var since kadm.ListedOffsets
	if !q.Since.IsZero() {
		if since, err = adm.ListOffsetsAfterMilli(ctx, q.Since.UnixMilli(), topics...); err == nil {
			err = since.Error()
		}
		if err != nil {
			return fmt.Errorf("interlock: offsets at %v: %w", q.Since, err)
		}
	}
	// Where reading stops without Follow: read_committed readers stop at
	// the last stable offset.
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("interlock: end offsets: %w", err)
	}
	offsets := map[string]map[int32]kgo.Offset{}
	type tp struct {
		topic     string
		partition int32
	}
	stop := map[tp]int64{}
	starts.Each(func(o kadm.ListedOffset) {
		if !want[o.Topic][o.Partition] {
			return
		}
		from := max(o.Offset, q.Offset)
		if s, ok := since.Lookup(o.Topic, o.Partition); ok && !q.Since.IsZero() {
			from = max(o.Offset, s.Offset)
		}
		end, _ := ends.Lookup(o.Topic, o.Partition)
		if !q.Follow {
			if from >= end.Offset {
				return
			}
			stop[tp{o.Topic, o.Partition}] = end.Offset
		}
		if offsets[o.Topic] == nil {
			offsets[o.Topic] = map[int32]kgo.Offset{}
		}
		offsets[o.Topic][o.Partition] = kgo.NewOffset().At(from)
	})
	if len(offsets) == 0 {
		return nil
	}
	rc, err := a.adminClient(
		kgo.ConsumePartitions(offsets),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // to see where a partition ends
	)
	if err != nil {
		return err
	}
	defer rc.Close()
	id := []byte(q.ID.String())
	for q.Follow || len(stop) > 0 {
		fs := rc.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("interlock: reading %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		var cbErr error
		fs.EachRecord(func(r *kgo.Record) {
			key := tp{r.Topic, r.Partition}
			end, bounded := stop[key]
			if cbErr != nil || (bounded && r.Offset >= end) || (!q.Follow && !bounded) {
				return
			}
			if bounded && r.Offset+1 >= end {
				delete(stop, key)
			}
			if r.Attrs.IsControl() || (q.ID != (ulid.ULID{}) && !bytes.Equal(r.Key, id)) {
				return
			}
			cbErr = fn(a.decodeEvent(byTopic[r.Topic], r))
		})
		if cbErr != nil {
			return cbErr
		}
	}
	return nil
}

// decoding makes the codec ready to decode outside Start: an application
// that has a schema registry and has not opened it (not started) opens it
// for the caller, who calls done when finished reading.
func (a *App) decoding(ctx context.Context) (done func(), err error) {
	if a.registry == nil || a.cfg.openRegistry == nil {
		return func() {}, nil
	}
	if _, err := a.registry.SchemaByID(ctx, 0); !errors.Is(err, schema.ErrNoRegistry) {
		return func() {}, nil // open already: the application runs
	}
	brokers := a.cfg.brokers
	if len(brokers) == 0 {
		return nil, ErrNoBrokers
	}
	reg, err := a.cfg.openRegistry(ctx, append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, a.cfg.clientOpts...))
	if err != nil {
		return nil, fmt.Errorf("interlock: schema registry: %w", err)
	}
	a.registry.Set(reg)
	return func() {
		a.registry.Set(nil)
		if c, ok := reg.(interface{ Close() }); ok && a.cfg.builtin {
			c.Close()
		}
	}, nil
}

// routesFor returns the route of aggregate type name, or every route for "".
func (a *App) routesFor(name string) ([]*producer.Route, error) {
	all := a.routes()
	if name == "" {
		return all, nil
	}
	var known []string
	for _, r := range all {
		if r.Type.Name() == name {
			return []*producer.Route{r}, nil
		}
		known = append(known, r.Type.Name())
	}
	return nil, fmt.Errorf("interlock: unknown aggregate type %q (registered: %s)", name, strings.Join(known, ", "))
}

// decodeEvent decodes an event record of route's events topic.
func (a *App) decodeEvent(route *producer.Route, r *kgo.Record) StoredEvent {
	ev := StoredEvent{Position: producer.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}}
	h, err := producer.ParseHeaders(r)
	ev.EventEnvelope = aggregate.EventEnvelope{
		EventID: h.EventID, AggregateType: h.AggregateType, AggregateID: h.Command.AggregateID, Type: h.Type,
		Version: h.Version, Time: h.Time, CommandID: h.Command.CommandID,
		CorrelationID: h.Command.CorrelationID, CausationID: h.Command.CausationID,
	}
	if ev.AggregateType == "" {
		ev.AggregateType = route.Type.Name()
	}
	for _, kv := range r.Headers {
		if !strings.HasPrefix(kv.Key, "interlock-") {
			if ev.Metadata == nil {
				ev.Metadata = map[string]string{}
			}
			ev.Metadata[kv.Key] = string(kv.Value)
		}
	}
	if err != nil {
		ev.Err = err
		return ev
	}
	msg, ok := route.Event(h.Type)
	var ptr any
	switch {
	case a.upcasters != nil:
		var cur schema.Decoder
		if ok {
			cur = msg.Serde
		}
		ptr, err = a.upcasters.Decode(h.Type, r.Value, cur)
	case !ok:
		err = fmt.Errorf("unknown event type %q", h.Type)
	default:
		ptr, err = msg.Serde.Decode(r.Value)
	}
	if err != nil {
		ev.Err = fmt.Errorf("event %s at %s/%d@%d: %w", h.Type, r.Topic, r.Partition, r.Offset, err)
		return ev
	}
	ev.Data = reflect.ValueOf(ptr).Elem().Interface()
	return ev
}

// LoadAggregate folds the committed events of the aggregate of type
// aggType with the given ID, read from its events partition, into its
// state with the registered appliers, as a processor restoring it would:
// the result's State is a pointer to the aggregate's state type and its
// Version the number of events folded. It fails with ErrNoEvents for an
// aggregate that has none, and on an event that cannot be decoded or
// does not follow the previous one's version.
func (a *App) LoadAggregate(ctx context.Context, aggType string, id ulid.ULID) (*aggregate.Instance, error) {
	routes, err := a.routesFor(aggType)
	if err != nil {
		return nil, err
	}
	typ := routes[0].Type
	inst := typ.New(id)
	err = a.ReadEvents(ctx, EventQuery{Aggregate: aggType, ID: id}, func(e StoredEvent) error {
		if e.Err != nil {
			return e.Err
		}
		if e.Version != inst.Version+1 {
			return fmt.Errorf("event %s at %s/%d@%d: version %d follows version %d", e.Type, e.Position.Topic, e.Position.Partition, e.Position.Offset, e.Version, inst.Version)
		}
		return typ.Apply(inst, e.Data)
	})
	if err != nil {
		return nil, fmt.Errorf("interlock: aggregate %s %s: %w", aggType, id, err)
	}
	if inst.Version == 0 {
		return nil, fmt.Errorf("%w: %s %s", ErrNoEvents, aggType, id)
	}
	return inst, nil
}

// Projections lists the names of the registered projections, in
// registration order.
func (a *App) Projections() []string {
	out := make([]string, len(a.projs))
	for i, p := range a.projs {
		out[i] = p.Name()
	}
	return out
}

// ProjectionVersion returns the version of the registered projection
// named name (0 when there is none).
func (a *App) ProjectionVersion(name string) int {
	for _, p := range a.projs {
		if p.Name() == name {
			return p.Version()
		}
	}
	return 0
}
