package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/internal/acl"
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
	// TransactionTimeout is the Kafka sink's transaction timeout: its
	// batches are cut short before it. Default 10s.
	TransactionTimeout time.Duration
	// TransactionalID is the projection's transactional ID in this
	// instance, for the Kafka sink. Keep it stable per instance.
	TransactionalID string
	// Logger receives the projection's logs.
	Logger *slog.Logger
	// Passive starts no consumer: the Projector only follows the progress
	// that other instances make (WaitFor), for instances that query a
	// projection without running it.
	Passive bool
	// Observers are told what the projection does: values implementing
	// ParkObserver.
	Observers []any
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
	name   string
	family string // the name shared by its versions (derived command IDs use it)
	log    *slog.Logger
	cl     *kgo.Client               // the consumer (sinks other than Kafka)
	sess   *kgo.GroupTransactSession // the consumer and producer (Kafka sink)
	dlq    *kgo.Client
	// tail follows the dead-letter topic; requests are the retry requests
	// it found, for the loop.
	tail     *kgo.Client
	requests chan *kgo.Record
	cfg      Config
	sink     any
	topics   []string
	// txBatchTimeout bounds a Kafka-sink transaction, below the
	// transaction timeout.
	txBatchTimeout time.Duration
	cancel         context.CancelFunc
	done           chan struct{}
	// remote returns the next offsets the projection has applied for a
	// topic's partitions, whoever applied them.
	remote func(ctx context.Context, topic string) (map[int32]int64, error)

	mu sync.Mutex
	// known is the checkpoint the sink holds for each owned partition,
	// -1 for none (exactly-once sinks only).
	known map[topicPartition]int64
	owned map[topicPartition]bool
	// applied is the next offset this process applied, per partition;
	// waiting the records it polled and has not applied yet, in order
	// (the oldest one tells the lag in time).
	applied map[topicPartition]int64
	waiting map[topicPartition][]*kgo.Record
	changed chan struct{}
	// idx is the dead-letter topic as followed: parked events by key,
	// retry requests. retryDirty says requests may need serving (a new
	// one, or new partitions); tailNeed is how far the topic must have
	// been read before newly assigned partitions are processed.
	idx        *dlqIndex
	retryDirty bool
	// retryAfterCommit: a request waits for its partition to commit
	// past its parked events; the next progress sets retryDirty.
	retryAfterCommit bool
	tailNeed         map[int32]int64
	err              error
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
		done: make(chan struct{}), known: map[topicPartition]int64{}, owned: map[topicPartition]bool{}, applied: map[topicPartition]int64{}, waiting: map[topicPartition][]*kgo.Record{},
		changed: make(chan struct{}), idx: newDLQIndex(), family: p.family,
	}
	if cfg.TransactionTimeout == 0 {
		cfg.TransactionTimeout = 10 * time.Second
	}
	pr.cfg = cfg
	pr.txBatchTimeout = min(p.set.batchTimeout, cfg.TransactionTimeout*4/5)
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
			// Taking the producer ID now makes a transactional ID this
			// principal may not use fail the start.
			if err == nil {
				if _, _, perr := pr.sess.Client().ProducerID(ctx); acl.Denied(perr) {
					pr.sess.Close()
					err = acl.TransactionalID(cfg.TransactionalID, perr)
				}
			}
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

func (pr *Projector) assigned(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	// Where the dead-letter topic ends now: what a previous owner parked
	// must be read before these partitions are processed.
	var need map[int32]int64
	if ends, err := kadm.NewClient(pr.dlq).ListCommittedOffsets(ctx, pr.cfg.DeadLetterTopic); err == nil {
		need = map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				need[o.Partition] = o.Offset
			}
		})
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			pr.owned[topicPartition{t, p}] = true
		}
	}
	pr.tailNeed, pr.retryDirty = need, true
}

func (pr *Projector) forget(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			delete(pr.known, topicPartition{t, p})
			delete(pr.owned, topicPartition{t, p})
			delete(pr.waiting, topicPartition{t, p})
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
	closeAll := func() {
		if pr.cl != nil {
			pr.cl.Close()
		}
		if pr.tail != nil {
			pr.tail.Close()
		}
		pr.dlq.Close()
	}
	select {
	case <-pr.done:
		closeAll()
		return nil
	case <-ctx.Done():
		// The batch goes on (its checkpoint keeps a successor from
		// applying it twice); the clients close when it ends, as the
		// consumer's Close waits for the loop to allow the rebalance.
		go func() { <-pr.done; closeAll() }()
		return fmt.Errorf("projection %q: batch still in progress: %w", pr.name, ctx.Err())
	}
}

// Name is the projection's name.
func (pr *Projector) Name() string { return pr.name }

// Err returns why the projection stopped (a poison event under the Stop
// policy, Kafka refusing it an operation), nil while it runs.
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

// polled notes that recs, just polled, wait to be applied.
func (pr *Projector) polled(recs []*kgo.Record) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for _, r := range recs {
		k := topicPartition{r.Topic, r.Partition}
		// Records polled again (after an aborted batch) are there already.
		if w := pr.waiting[k]; len(w) == 0 || r.Offset > w[len(w)-1].Offset {
			pr.waiting[k] = append(w, r)
		}
	}
}

// progress records that the partitions of cps are applied up to their
// Next offsets, and wakes waiters.
func (pr *Projector) progress(cps []Checkpoint) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for _, cp := range cps {
		k := topicPartition{cp.Topic, cp.Partition}
		pr.applied[k] = max(pr.applied[k], cp.Next)
		w := pr.waiting[k]
		i := 0
		for i < len(w) && w[i].Offset < cp.Next {
			i++
		}
		if i == len(w) {
			delete(pr.waiting, k)
		} else {
			pr.waiting[k] = w[i:]
		}
		if _, owned := pr.known[k]; owned {
			pr.known[k] = cp.Next
		}
	}
	if pr.retryAfterCommit {
		pr.retryDirty, pr.retryAfterCommit = true, false
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

// fetchErrors logs the errors of a poll, and stops the projection on a
// refusal no retry can pass (returned), so Err says what is missing.
func (pr *Projector) fetchErrors(fs kgo.Fetches) error {
	var denied error
	fs.EachError(func(t string, part int32, err error) {
		switch {
		case acl.Denied(err):
			denied = acl.FetchError(pr.cfg.Group, t, err)
		case !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
			pr.log.Warn("interlock: fetching events", "topic", t, "partition", part, "err", err)
		}
	})
	if denied != nil {
		pr.denied(denied)
	}
	return denied
}

// denied stops the projection on an authorization failure.
func (pr *Projector) denied(err error) {
	pr.log.Error("interlock: projection stopped: not authorized; grant the principal the ACLs of docs/security.md, then restart", "err", err)
	pr.stop(err)
}

// loadHeld reads the dead-letter topic from its start to its end into
// the index (so the keys with parked events are held back), then follows
// it.
func (pr *Projector) loadHeld(ctx context.Context) error {
	recs, tail, err := pr.readDLQ(ctx)
	if err != nil {
		return err
	}
	pr.mu.Lock()
	for _, r := range recs {
		pr.idx.add(r)
	}
	pr.retryDirty = len(pr.idx.pending) > 0
	held := len(pr.idx.parked)
	pr.mu.Unlock()
	if held > 0 {
		pr.log.Warn("interlock: aggregates held back by parked events", "aggregates", held, "topic", pr.cfg.DeadLetterTopic)
	}
	pr.tail, err = kgo.NewClient(append(append([]kgo.Opt(nil), pr.cfg.ClientOpts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{pr.cfg.DeadLetterTopic: tail}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return err
	}
	go pr.follow()
	return nil
}

// follow reads the dead-letter topic as it grows into the index: events
// parked by any instance hold their keys here too, resolutions release
// them, retry requests wait to be served.
func (pr *Projector) follow() {
	for {
		fs := pr.tail.PollFetches(context.Background())
		if fs.IsClientClosed() {
			return
		}
		fs.EachRecord(pr.indexed)
	}
}

// indexed folds a record of the dead-letter topic into the index.
func (pr *Projector) indexed(r *kgo.Record) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.idx.add(r) {
		pr.retryDirty = true
	}
}

// retryLater has the pending retry requests served again once a batch
// commits, or at the next turn of the loop when soon.
func (pr *Projector) retryLater(soon bool) {
	pr.mu.Lock()
	pr.retryAfterCommit = true
	pr.retryDirty = pr.retryDirty || soon
	pr.mu.Unlock()
}

// retryWork returns the retry requests to serve now, oldest first, if
// any may need serving.
func (pr *Projector) retryWork() []*kgo.Record {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if !pr.retryDirty {
		return nil
	}
	pr.retryDirty = false
	out := make([]*kgo.Record, 0, len(pr.idx.pending))
	for _, r := range pr.idx.pending {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *kgo.Record) int { return cmp.Compare(a.Offset, b.Offset) })
	return out
}

// parkedOf returns key's parked records, in order.
func (pr *Projector) parkedOf(key string) []*kgo.Record {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return slices.Clone(pr.idx.parked[key])
}

// followed waits (up to 10 s) until the dead-letter topic has been read
// as far as it reached when partitions were last assigned, so events
// parked by a previous owner hold their keys before this one processes
// them.
func (pr *Projector) followed(ctx context.Context) {
	for deadline := time.Now().Add(10 * time.Second); ; {
		pr.mu.Lock()
		done := true
		for p, need := range pr.tailNeed {
			done = done && pr.idx.read[p] >= need
		}
		if done {
			pr.tailNeed = nil
		}
		pr.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			pr.log.Warn("interlock: the dead-letter topic is not followed up to date; going on")
			return
		}
		time.Sleep(10 * time.Millisecond)
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
	pr.mu.Lock()
	again := pr.idx.isParked(r) // polled again, after a batch given back
	pr.mu.Unlock()
	if again {
		return nil
	}
	rec := pr.deadLetter(r, why)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		err := pr.dlq.ProduceSync(ctx, rec).FirstErr()
		if err == nil {
			pr.indexed(rec) // held from now on, before the tail reads it
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
