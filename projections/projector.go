package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
)

// Config is what the application gives a projection to run.
type Config struct {
	// ClientOpts are the franz-go options every client starts from.
	ClientOpts []kgo.Opt
	// Group is the projection's consumer group.
	Group string
	// DeadLetterTopic is where DeadLetter parks events; it must exist.
	DeadLetterTopic string
	// Routes are the application's aggregates: they give the events
	// topics and codecs of the projection's event types.
	Routes []*producer.Route
	// Upcasters read old events (nil: none).
	Upcasters *schema.Upcasters
	// TransactionalID is the projection's transactional ID in this
	// instance, for the Kafka sink. Keep it stable per instance.
	TransactionalID string
	// Logger receives the projection's logs.
	Logger *slog.Logger
	// Passive starts no consumer: the Projector only follows the progress
	// that other instances make (WaitFor), for instances that query a
	// projection without running it.
	Passive bool
}

// Dead-letter record headers, beside the event's own.
const (
	HeaderDLQTopic     = "interlock-dlq-topic"
	HeaderDLQPartition = "interlock-dlq-partition"
	HeaderDLQOffset    = "interlock-dlq-offset"
	HeaderDLQError     = "interlock-dlq-error"
	// HeaderDLQResolved marks the end of an aggregate's parked events:
	// its later events flow again.
	HeaderDLQResolved = "interlock-dlq-resolved"
)

type topicPartition struct {
	topic     string
	partition int32
}

// Projector is a running projection.
type Projector struct {
	name string
	log  *slog.Logger
	cl   *kgo.Client               // the consumer (sinks other than Kafka)
	sess *kgo.GroupTransactSession // the consumer and producer (Kafka sink)
	dlq  *kgo.Client
	// tail follows the dead-letter topic; requests are the retry requests
	// it found, for the loop.
	tail     *kgo.Client
	requests chan *kgo.Record
	cfg      Config
	sink     any
	topics   []string
	cancel   context.CancelFunc
	done     chan struct{}
	// remote returns the next offsets the projection has applied for a
	// topic's partitions, whoever applied them.
	remote func(ctx context.Context, topic string) (map[int32]int64, error)

	mu sync.Mutex
	// known is the checkpoint the sink holds for each owned partition,
	// -1 for none (exactly-once sinks only).
	known map[topicPartition]int64
	owned map[topicPartition]bool
	// applied is the next offset this process applied, per partition;
	// appliedAt the time of the last record it applied.
	applied   map[topicPartition]int64
	appliedAt map[topicPartition]time.Time
	changed   chan struct{}
	// held are the aggregates (record keys) whose events are parked from
	// an offset on (0: all events not yet applied).
	held map[string]int64
	err  error
}

// binding is how one event type of one topic is decoded and handled.
type binding[T any] struct {
	msg    *producer.Message
	handle handler[T]
}

// Start runs the projection in the background until Close.
func (p *Projection[T]) Start(ctx context.Context, cfg Config) (*Projector, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	bindings := map[string]map[string]binding[T]{} // topic → type name
	var topics []string
	for _, t := range p.order {
		found := false
		for _, r := range cfg.Routes {
			if m, ok := r.EventOf(t); ok {
				if bindings[r.EventsTopic] == nil {
					bindings[r.EventsTopic] = map[string]binding[T]{}
					topics = append(topics, r.EventsTopic)
				}
				bindings[r.EventsTopic][m.Name] = binding[T]{msg: m, handle: p.handlers[t]}
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("projection %q: no registered aggregate emits %v", p.name, t)
		}
	}
	for topic := range p.raw {
		if bindings[topic] == nil {
			topics = append(topics, topic)
		}
	}
	if s, ok := p.sink.(Setup); ok {
		if err := s.Setup(ctx); err != nil {
			return nil, fmt.Errorf("projection %q: setting up its sink: %w", p.name, err)
		}
	}
	pr := &Projector{
		name: p.name, log: cfg.Logger.With("projection", p.name), cfg: cfg, sink: p.sink, topics: topics,
		done: make(chan struct{}), known: map[topicPartition]int64{}, owned: map[topicPartition]bool{}, applied: map[topicPartition]int64{}, appliedAt: map[topicPartition]time.Time{},
		changed: make(chan struct{}), held: map[string]int64{},
	}
	cp, exactlyOnce := p.sink.(Checkpointer)
	opts := append(append([]kgo.Opt(nil), cfg.ClientOpts...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(pr.assigned),
		kgo.OnPartitionsRevoked(pr.forget),
		kgo.OnPartitionsLost(pr.forget),
	)
	if exactlyOnce {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(func(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
			return pr.fromSink(ctx, cp, offsets)
		}))
	}
	var err error
	if pr.dlq, err = kgo.NewClient(append(append([]kgo.Opt(nil), cfg.ClientOpts...), kgo.ProducerLinger(0))...); err != nil {
		return nil, fmt.Errorf("projection %q: %w", p.name, err)
	}
	if exactlyOnce {
		pr.remote = func(ctx context.Context, topic string) (map[int32]int64, error) {
			return cp.Checkpoints(ctx, p.name, topic)
		}
	} else {
		pr.remote = pr.committed
	}
	if cfg.Passive {
		pr.cancel = func() {}
		close(pr.done)
		return pr, nil
	}
	if err := pr.loadHeld(ctx); err != nil {
		pr.dlq.Close()
		return nil, fmt.Errorf("projection %q: reading its dead-letter topic: %w", p.name, err)
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pr.cancel = cancel
	if _, ok := any(p.sink).(kafkaSink); ok {
		if cfg.TransactionalID == "" {
			err = errors.New("the Kafka sink needs a transactional ID")
		} else {
			opts = append(opts, kgo.TransactionalID(cfg.TransactionalID), kgo.RequireStableFetchOffsets(), kgo.ProducerLinger(0))
			pr.sess, err = pr.newSession(opts)
		}
		if err != nil {
			cancel()
			close(pr.done)
			pr.tail.Close()
			pr.dlq.Close()
			return nil, fmt.Errorf("projection %q: %w", p.name, err)
		}
		go runTx(loopCtx, any(p).(*Projection[*Output]), pr, opts, any(bindings).(map[string]map[string]binding[*Output]))
		return pr, nil
	}
	if pr.cl, err = kgo.NewClient(opts...); err != nil {
		cancel()
		close(pr.done)
		pr.tail.Close()
		pr.dlq.Close()
		return nil, fmt.Errorf("projection %q: %w", p.name, err)
	}
	go p.run(loopCtx, pr, bindings, exactlyOnce)
	return pr, nil
}

// fromSink replaces the group's offsets of newly assigned partitions by
// the sink's checkpoints: the sink is the truth for an exactly-once
// projection. A partition without a checkpoint starts at the beginning.
func (pr *Projector) fromSink(ctx context.Context, cp Checkpointer, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	out := map[string]map[int32]kgo.Offset{}
	for topic, ps := range offsets {
		stored, err := cp.Checkpoints(ctx, pr.name, topic)
		if err != nil {
			pr.log.Error("interlock: reading the projection's checkpoints; will retry", "topic", topic, "err", err)
			return nil, err
		}
		out[topic] = map[int32]kgo.Offset{}
		pr.mu.Lock()
		for p := range ps {
			next, ok := stored[p]
			if ok {
				out[topic][p] = kgo.NewOffset().At(next).WithEpoch(-1)
			} else {
				next = -1
				out[topic][p] = kgo.NewOffset().AtStart()
			}
			pr.known[topicPartition{topic, p}] = next
		}
		pr.mu.Unlock()
	}
	return out, nil
}

func (pr *Projector) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			pr.owned[topicPartition{t, p}] = true
		}
	}
}

func (pr *Projector) forget(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			delete(pr.known, topicPartition{t, p})
			delete(pr.owned, topicPartition{t, p})
		}
	}
}

// owns reports whether this instance owns the partition.
func (pr *Projector) owns(topic string, partition int32) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.owned[topicPartition{topic, partition}]
}

// committed returns the group's committed offsets of topic.
func (pr *Projector) committed(ctx context.Context, topic string) (map[int32]int64, error) {
	resp, err := kadm.NewClient(pr.dlq).FetchOffsets(ctx, pr.cfg.Group)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for p, o := range resp[topic] {
		if o.Err == nil {
			out[p] = o.At
		}
	}
	return out, nil
}

// Close stops the projection, letting the batch in progress finish, and
// leaves its group.
func (pr *Projector) Close(ctx context.Context) error {
	pr.cancel()
	var err error
	select {
	case <-pr.done:
	case <-ctx.Done():
		err = fmt.Errorf("projection %q: batch still in progress: %w", pr.name, ctx.Err())
	}
	if pr.cl != nil {
		pr.cl.Close()
	}
	if pr.tail != nil {
		pr.tail.Close()
	}
	pr.dlq.Close()
	return err
}

// Name is the projection's name.
func (pr *Projector) Name() string { return pr.name }

// Err returns why the projection stopped (a poison event under the Stop
// policy), nil while it runs.
func (pr *Projector) Err() error {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.err
}

// Topics are the events topics the projection reads.
func (pr *Projector) Topics() []string { return pr.topics }

// WaitFor blocks until the projection has applied the events at every
// position of positions on one of its topics (other positions are
// ignored), or ctx ends. It sees what any instance of the projection
// applied: its own progress at once, others' through the sink's
// checkpoints (or the group's offsets) every 20 ms.
func (pr *Projector) WaitFor(ctx context.Context, positions []producer.Position) error {
	mine := map[string]bool{}
	for _, t := range pr.topics {
		mine[t] = true
	}
	want := map[topicPartition]int64{}
	for _, p := range positions {
		if mine[p.Topic] {
			k := topicPartition{p.Topic, p.Partition}
			want[k] = max(want[k], p.Offset+1)
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	remote := false
	for {
		pr.mu.Lock()
		changed, stopped := pr.changed, pr.err
		for k, next := range want {
			if pr.applied[k] >= next {
				delete(want, k)
			}
		}
		pr.mu.Unlock()
		if remote && len(want) > 0 {
			if err := pr.checkRemote(ctx, want); err != nil {
				pr.log.Debug("interlock: reading a projection's progress", "err", err)
			}
		}
		if len(want) == 0 {
			return nil
		}
		if stopped != nil {
			return fmt.Errorf("projection %q stopped: %w", pr.name, stopped)
		}
		remote = false
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for projection %q: %w", pr.name, ctx.Err())
		case <-changed:
		case <-tick.C:
			remote = true
		}
	}
}

func (pr *Projector) checkRemote(ctx context.Context, want map[topicPartition]int64) error {
	byTopic := map[string]bool{}
	for k := range want {
		byTopic[k.topic] = true
	}
	for topic := range byTopic {
		next, err := pr.remote(ctx, topic)
		if err != nil {
			return err
		}
		for k, w := range want {
			if k.topic == topic && next[k.partition] >= w {
				delete(want, k)
			}
		}
	}
	return nil
}

// progress records that the partitions of cps are applied up to their
// Next offsets, the last of recs being the last applied, and wakes
// waiters.
func (pr *Projector) progress(cps []Checkpoint, recs []*kgo.Record) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for _, r := range recs {
		pr.appliedAt[topicPartition{r.Topic, r.Partition}] = r.Timestamp
	}
	for _, cp := range cps {
		k := topicPartition{cp.Topic, cp.Partition}
		pr.applied[k] = max(pr.applied[k], cp.Next)
		if _, owned := pr.known[k]; owned {
			pr.known[k] = cp.Next
		}
	}
	close(pr.changed)
	pr.changed = make(chan struct{})
}

func (pr *Projector) stop(err error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.err = err
	close(pr.changed)
	pr.changed = make(chan struct{})
}

// loadHeld reads the dead-letter topic from its start to its end and
// holds back every key with parked events not yet resolved; then it
// tails the topic for retry requests and resolutions.
func (pr *Projector) loadHeld(ctx context.Context) error {
	recs, tail, err := pr.readDLQ(ctx)
	if err != nil {
		return err
	}
	for key := range parkedOf(recs) {
		pr.held[key] = 0
	}
	if len(pr.held) > 0 {
		pr.log.Warn("interlock: aggregates held back by parked events", "aggregates", len(pr.held), "topic", pr.cfg.DeadLetterTopic)
	}
	pr.tail, err = kgo.NewClient(append(append([]kgo.Opt(nil), pr.cfg.ClientOpts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{pr.cfg.DeadLetterTopic: tail}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return err
	}
	pr.requests = make(chan *kgo.Record, 64)
	go pr.follow()
	return nil
}

// follow tails the dead-letter topic: it hands retry requests to the loop
// and releases keys that another instance resolved.
func (pr *Projector) follow() {
	defer close(pr.requests)
	for {
		fs := pr.tail.PollFetches(context.Background())
		if fs.IsClientClosed() {
			return
		}
		fs.EachRecord(func(r *kgo.Record) {
			switch {
			case hasHeader(r, HeaderDLQRetry):
				select {
				case pr.requests <- r:
				case <-pr.done: // the loop ended: nobody serves requests
				}
			case hasHeader(r, HeaderDLQResolved):
				pr.mu.Lock()
				delete(pr.held, string(r.Key))
				pr.mu.Unlock()
			}
		})
	}
}

// deadLetter returns the dead-letter record of r, parked because of why.
func (pr *Projector) deadLetter(r *kgo.Record, why error) *kgo.Record {
	return &kgo.Record{
		Topic: pr.cfg.DeadLetterTopic,
		Key:   r.Key,
		Value: r.Value,
		Headers: append(append([]kgo.RecordHeader(nil), r.Headers...),
			kgo.RecordHeader{Key: HeaderDLQTopic, Value: []byte(r.Topic)},
			kgo.RecordHeader{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
			kgo.RecordHeader{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
			kgo.RecordHeader{Key: HeaderDLQError, Value: []byte(why.Error())},
		),
	}
}

// park writes r to the dead-letter topic with why it was parked.
func (pr *Projector) park(ctx context.Context, r *kgo.Record, why error) error {
	rec := pr.deadLetter(r, why)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		err := pr.dlq.ProduceSync(ctx, rec).FirstErr()
		if err == nil {
			return nil
		}
		pr.log.Error("interlock: writing to the dead-letter topic; will retry", "topic", pr.cfg.DeadLetterTopic, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// errPoison is a handler (or decoding) failure of the record at index at.
type errPoison struct {
	at  int
	err error
}

func (e *errPoison) Error() string { return e.err.Error() }
func (e *errPoison) Unwrap() error { return e.err }

var errClosing = errors.New("projection closing")
