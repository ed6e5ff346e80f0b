package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/acl"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/snapshot"
)

// Config configures a Processor.
type Config struct {
	// ClientOpts are the franz-go options every client starts from: seed
	// brokers, TLS, SASL.
	ClientOpts []kgo.Opt
	// Group is the processors' consumer group.
	Group string
	// TransactionalID is this process's transactional ID. Keep it stable
	// per instance so a restarted instance fences its predecessor.
	TransactionalID string
	// TransactionTimeout must be below SessionTimeout. Default 10s.
	TransactionTimeout time.Duration
	// SessionTimeout is the group session timeout. Default 45s.
	SessionTimeout time.Duration
	// RepliesTopic is where replies go.
	RepliesTopic string
	// Aggregates are the aggregate types this processor handles.
	Aggregates []Aggregate
	// Store keeps snapshots and watermarks. Nil: no snapshots, every
	// restore replays the whole events partition and every aggregate of
	// an owned partition stays in memory.
	Store snapshot.Store
	// MaxCached and MaxCachedBytes bound the aggregates held in memory
	// (bytes as their encoded snapshots weigh). Only aggregates whose
	// state is safe in the store are evicted: while the store is down, or
	// for aggregate types that never snapshot, memory can exceed the
	// bounds. Defaults 100 000 and 1 GiB.
	MaxCached      int
	MaxCachedBytes int64
	// FlushInterval is the longest a dirty aggregate waits for its
	// snapshot, whatever its strategy: it bounds how far the watermark lags
	// and so how much a new owner replays. Default 5s.
	FlushInterval time.Duration
	// IdempotencyWindow is how many of each aggregate's last commands that
	// emitted events are remembered (in memory, in snapshots, and in the
	// log, whence a replay rebuilds them): a retry with the same command ID
	// within the window gets the first outcome instead of running again.
	// Default 20.
	IdempotencyWindow int
	// Upcasters read old events (nil: none).
	Upcasters *schema.Upcasters
	// MaxPollRecords bounds the commands in one transaction. Default 1000.
	MaxPollRecords int
	// Middleware runs around every handler (nil: none). See package
	// middleware: the Handle side.
	Middleware middleware.Middleware
	// Observers are told what the processor does: each implements some of
	// BatchObserver and RestoreObserver.
	Observers []any
	// Logger receives the processor's logs.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = 10 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 45 * time.Second
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 1000
	}
	if c.MaxCached == 0 {
		c.MaxCached = 100_000
	}
	if c.MaxCachedBytes == 0 {
		c.MaxCachedBytes = 1 << 30
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 5 * time.Second
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Aggregate is one aggregate type as the processor runs it.
type Aggregate struct {
	Route *producer.Route
	// State encodes the aggregate's state for snapshots; nil when
	// Snapshots is snapshot.Never().
	State producer.Serde
	// Fingerprint identifies the state's type and codec in snapshots.
	Fingerprint uint64
	// Snapshots says when the state is written to the store.
	Snapshots snapshot.Strategy
}

// Processor owns command partitions and handles their commands.
type Processor struct {
	cfg     Config
	log     *slog.Logger
	aggs    map[string]*Aggregate // by commands topic
	sess    *kgo.GroupTransactSession
	replies int32 // partition count of the replies topic
	cache   *cache
	stats   counters
	// limits are the record sizes Kafka accepts; relimit is set when the
	// broker refused one as too large, for the loop to read them again.
	limits  limits
	relimit atomic.Bool

	// storeDown and lastFlush are the loop's: a failing store is left
	// alone until storeRetry, and errors are logged once per burst.
	storeDown  bool
	storeRetry time.Time
	storeWait  time.Duration
	lastFlush  time.Time

	mu      sync.Mutex
	parts   map[topicPartition]*partition
	dropped []*partition // revoked, their entries still in the cache
	joined  bool         // a first assignment happened
	wake    waker        // ends the poll when partitions are assigned
	// idleFailed is set when partitions no command reached failed to
	// restore: the loop tries again within idleRetry, not only at its
	// next flush interval. Only the loop uses it.
	idleFailed bool

	cancel context.CancelFunc
	done   chan struct{}
	topics []string

	// beat is when the loop last made progress (unix nanoseconds);
	// stopped is set when it ended for good while not closing. probe
	// remembers what Live saw last.
	beat    atomic.Int64
	stopped atomic.Bool
	probe   struct {
		sync.Mutex
		replayed int64
		at       time.Time
	}
	// lag is each owned partition's distance, in records, from its last
	// stable offset at the last fetch. Guarded by mu.
	lag map[topicPartition]int64
}

type topicPartition struct {
	topic     string
	partition int32
}

// partition is the state of one owned commands partition (and of the
// events partition with the same number). Only the processing loop reads or
// writes its fields; rebalance callbacks only add and remove partitions
// from Processor.parts.
type partition struct {
	agg   *Aggregate
	route *producer.Route
	id    int32
	sp    snapshot.Partition
	// restored is set once the aggregates are rebuilt from the store and
	// the log; full makes the next restore ignore the store's watermark.
	// restored is read by Ready on other goroutines.
	restored atomic.Bool
	full     bool
	// token is this owner's claim on the partition in the store. Zero
	// means no claim: then every aggregate of the partition is in memory
	// (it was replayed from offset 0 and nothing was evicted), so an
	// aggregate not in entries has no events. Non-zero: an aggregate not in
	// entries is loaded from the store.
	token   int64
	entries map[ulid.ULID]*entry
	dirty   map[ulid.ULID]*entry
	// broken holds aggregates whose events could not be replayed: their
	// commands are rejected with the reason instead of running on wrong
	// state, and the rest of the partition goes on. floor is the offset of
	// their first event: the watermark must not pass it.
	broken map[ulid.ULID]error
	floor  int64
	// position is the offset after the last event of the partition known
	// to this owner; savedW is the watermark last stored.
	position, savedW int64
}

func (p *Processor) newPartition(topic string, id int32) *partition {
	agg := p.aggs[topic]
	return &partition{
		agg: agg, route: agg.Route, id: id,
		sp:      snapshot.Partition{Topic: agg.Route.EventsTopic, ID: id},
		entries: map[ulid.ULID]*entry{}, dirty: map[ulid.ULID]*entry{},
		broken: map[ulid.ULID]error{}, floor: math.MaxInt64,
	}
}

// snapshots reports whether the partition's aggregates go to the store.
func (p *Processor) snapshots(part *partition) bool {
	return p.cfg.Store != nil && !part.agg.Snapshots.IsNever()
}

// New joins the processors' group and starts processing in the
// background. Call Close to stop.
func New(ctx context.Context, cfg Config) (*Processor, error) {
	cfg.defaults()
	if cfg.TransactionTimeout >= cfg.SessionTimeout {
		return nil, fmt.Errorf("processor: transaction timeout %v must be below the session timeout %v", cfg.TransactionTimeout, cfg.SessionTimeout)
	}
	p := &Processor{
		cfg:       cfg,
		log:       cfg.Logger,
		aggs:      map[string]*Aggregate{},
		parts:     map[topicPartition]*partition{},
		lag:       map[topicPartition]int64{},
		cache:     newCache(),
		lastFlush: time.Now(),
		done:      make(chan struct{}),
	}
	topics := make([]string, 0, len(cfg.Aggregates))
	for i := range cfg.Aggregates {
		a := &cfg.Aggregates[i]
		p.aggs[a.Route.CommandsTopic] = a
		topics = append(topics, a.Route.CommandsTopic)
	}
	p.topics = topics
	p.initLimits(ctx)
	sess, err := p.newSession()
	if err != nil {
		return nil, fmt.Errorf("processor: %w", err)
	}
	p.sess = sess
	// Taking the producer ID now makes a transactional ID this principal
	// may not use fail the start, not the first command.
	if _, _, err := sess.Client().ProducerID(ctx); acl.Denied(err) {
		sess.Close()
		return nil, fmt.Errorf("processor: %w", acl.TransactionalID(cfg.TransactionalID, err))
	}
	meta, err := kadm.NewClient(sess.Client()).ListTopics(ctx, cfg.RepliesTopic)
	if err == nil {
		err = meta.Error()
	}
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("processor: replies topic %s: %w", cfg.RepliesTopic, err)
	}
	p.replies = int32(len(meta[cfg.RepliesTopic].Partitions))
	// Live from the start: the loop's first beat may come after the
	// caller's first probe.
	p.beat.Store(time.Now().UnixNano())
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go p.run(loopCtx)
	return p, nil
}

// newSession joins the processors' group with a transactional session.
func (p *Processor) newSession() (*kgo.GroupTransactSession, error) {
	cfg := p.cfg
	return kgo.NewGroupTransactSession(append(append([]kgo.Opt(nil), cfg.ClientOpts...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(p.topics...),
		kgo.TransactionalID(cfg.TransactionalID),
		kgo.TransactionTimeout(cfg.TransactionTimeout),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.BlockRebalanceOnPoll(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		p.batchOpt(),
		kgo.OnPartitionsAssigned(p.assigned),
		kgo.OnPartitionsRevoked(p.revoked),
		kgo.OnPartitionsLost(p.revoked),
	)...)
}

// reset replaces the transactional session after an error that may leave
// the old one unusable (franz-go: no End error is retryable): the new
// session's producer ID fences whatever the old one left open, its group
// membership starts afresh, and every partition is rebuilt from the log.
func (p *Processor) reset(ctx context.Context, cause error) {
	p.log.Error("interlock: transactional session failed; starting a new one and rebuilding state from the log", "err", cause)
	p.sess.CloseAllowingRebalance()
	p.dropAll()
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		sess, err := p.newSession()
		if err == nil {
			// Take the producer ID now: it aborts what the old session
			// left open, which restores would otherwise wait for.
			pctx, cancel := context.WithTimeout(ctx, p.cfg.SessionTimeout)
			_, _, err = sess.Client().ProducerID(pctx)
			cancel()
			p.sess = sess
			if err != nil {
				p.log.Warn("interlock: new session has no producer ID yet", "err", err)
			}
			return
		}
		p.log.Error("interlock: starting a new transactional session", "err", err)
		select {
		case <-ctx.Done():
			return // closing: the loop ends with the old, closed session
		case <-time.After(wait):
		}
	}
}

func (p *Processor) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.joined = true
	p.wake.wake()
	for t, ps := range m {
		for _, id := range ps {
			k := topicPartition{t, id}
			if old, ok := p.parts[k]; ok {
				p.dropped = append(p.dropped, old)
			}
			p.parts[k] = p.newPartition(t, id)
		}
		p.log.Info("interlock: partitions assigned", "topic", t, "partitions", ps)
	}
}

func (p *Processor) revoked(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, ps := range m {
		for _, id := range ps {
			k := topicPartition{t, id}
			if old, ok := p.parts[k]; ok {
				p.dropped = append(p.dropped, old)
				delete(p.parts, k)
			}
			delete(p.lag, k)
		}
		p.log.Info("interlock: partitions revoked", "topic", t, "partitions", ps)
	}
}

// dropAll forgets the state of every owned partition, so it is rebuilt from
// the log before the next command is handled. It is the answer to any
// uncertainty about what the last transaction did.
func (p *Processor) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, part := range p.parts {
		p.dropped = append(p.dropped, part)
		p.parts[k] = p.newPartition(k.topic, k.partition)
	}
}

// rebuild replaces part with a fresh partition that the next restore
// builds from the whole log, ignoring the store's watermark: the answer to
// a store that cannot be trusted for it.
func (p *Processor) rebuild(part *partition) *partition {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := topicPartition{part.route.CommandsTopic, part.id}
	fresh := p.newPartition(k.topic, k.partition)
	fresh.full = true
	p.dropped = append(p.dropped, part)
	if p.parts[k] == part {
		p.parts[k] = fresh
	}
	return fresh
}

// forgetDropped removes the entries of dropped partitions from the cache.
func (p *Processor) forgetDropped() {
	p.mu.Lock()
	dropped := p.dropped
	p.dropped = nil
	p.mu.Unlock()
	for _, part := range dropped {
		p.cache.dropPartition(part)
	}
	p.stats.cached.Store(int64(p.cache.len()))
}

func (p *Processor) partitionOf(topic string, id int32) *partition {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := topicPartition{topic, id}
	part, ok := p.parts[k]
	if !ok { // records can only come from owned partitions; be safe anyway
		part = p.newPartition(topic, id)
		p.parts[k] = part
	}
	return part
}

// owned returns the partitions owned now.
func (p *Processor) owned() []*partition {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*partition, 0, len(p.parts))
	for _, part := range p.parts {
		out = append(out, part)
	}
	return out
}

// Close stops polling, lets the batch in progress commit or abort, and
// leaves the group.
func (p *Processor) Close(ctx context.Context) error {
	p.cancel()
	select {
	case <-p.done:
	case <-ctx.Done():
		return fmt.Errorf("processor: batch still in progress: %w", ctx.Err())
	}
	p.sess.Close()
	return nil
}

func (p *Processor) run(ctx context.Context) {
	defer close(p.done)
	for {
		p.beat.Store(time.Now().UnixNano())
		// Wake at least once per flush interval, commands or not.
		wait := p.cfg.FlushInterval
		if p.idleFailed {
			wait = min(wait, idleRetry)
		}
		pollCtx, end := p.wake.arm(ctx, wait)
		fs := p.sess.PollRecords(pollCtx, p.cfg.MaxPollRecords)
		end()
		p.beat.Store(time.Now().UnixNano())
		if fs.IsClientClosed() || ctx.Err() != nil {
			// Leave the next owner as little to replay as possible.
			p.forgetDropped()
			p.flushAll(context.WithoutCancel(ctx))
			p.sess.AllowRebalance()
			return
		}
		var denied error
		fs.EachError(func(t string, part int32, err error) {
			switch {
			case acl.Denied(err):
				denied = acl.FetchError(p.cfg.Group, t, err)
			case !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
				p.log.Warn("interlock: fetching commands", "topic", t, "partition", part, "err", err)
			}
		})
		if denied != nil {
			p.stop(denied)
			return
		}
		// Rebalance callbacks run only while the loop polls, so the cache
		// is the loop's alone from here to AllowRebalance.
		p.forgetDropped()
		if !fs.Empty() {
			if err := p.batch(ctx, fs); err != nil {
				p.stop(err)
				return
			}
		}
		if err := p.restoreIdle(ctx); err != nil {
			p.stop(err)
			return
		}
		p.housekeep(ctx)
		p.sess.AllowRebalance()
	}
}

// stop ends the loop for good on err, a refusal no retry can pass: the
// processor is no longer live, so a liveness probe restarts it.
func (p *Processor) stop(err error) {
	if acl.Denied(err) {
		p.log.Error("interlock: processor stopped: not authorized; grant the principal the ACLs of docs/security.md, then restart", "group", p.cfg.Group, "transactional_id", p.cfg.TransactionalID, "err", err)
	} else {
		p.log.Error("interlock: processor stopped: another instance with this transactional ID took over (set a unique, stable WithInstanceID per instance)", "transactional_id", p.cfg.TransactionalID, "err", err)
	}
	p.stopped.Store(true)
	p.sess.AllowRebalance()
}

// idleRetry is the longest a failed restore of an idle partition waits
// for its next try.
const idleRetry = time.Second

// restoreIdle restores the owned partitions no command has reached yet, so
// the first command after an assignment does not wait for a replay and
// readiness can say every partition is restored. They are restored
// together, read by one client. It returns an error only when the
// processor must stop: it may not read the events.
func (p *Processor) restoreIdle(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	p.idleFailed = false
	var idle []*partition
	for _, part := range p.owned() {
		if !part.restored.Load() {
			idle = append(idle, part)
		}
	}
	if len(idle) == 0 {
		return nil
	}
	errs := p.restore(context.WithoutCancel(ctx), idle)
	for part, err := range errs {
		if acl.Denied(err) {
			return err // the events may not be read: no retry helps
		}
		p.log.Warn("interlock: restoring an idle partition; will retry", "partition", part.sp.String(), "err", err, "in", min(p.cfg.FlushInterval, idleRetry))
	}
	p.idleFailed = len(errs) > 0
	return nil
}

// Ready reports whether the processor joined its group and restored every
// partition it owns. A processor stopped for good (fenced, or refused by
// Kafka's ACLs) is not ready.
func (p *Processor) Ready() bool {
	if p.stopped.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.joined {
		return false
	}
	for _, part := range p.parts {
		if !part.restored.Load() {
			return false
		}
	}
	return true
}

// Live reports whether the processor is not stuck: its loop made progress
// within twice the session timeout plus the flush interval (a batch and a
// poll take at most that), or a restore replayed events since the last
// call. A processor stopped by a fenced transactional ID, or by Kafka
// refusing it an operation (an ACL missing), is not live.
// Use it for liveness probes: a process that is not live should be
// restarted.
func (p *Processor) Live() bool {
	if p.stopped.Load() {
		return false
	}
	now := time.Now()
	bound := 2*p.cfg.SessionTimeout + p.cfg.FlushInterval
	if now.Sub(time.Unix(0, p.beat.Load())) < bound {
		return true
	}
	pr := &p.probe
	pr.Lock()
	defer pr.Unlock()
	if r := p.stats.replayed.Load(); r != pr.replayed {
		pr.replayed, pr.at = r, now
	}
	return now.Sub(pr.at) < bound
}

// Lag returns, for each owned commands partition, how many committed
// commands wait behind the last one fetched, as of the last fetch.
func (p *Processor) Lag() map[string]map[int32]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]map[int32]int64{}
	for k := range p.parts {
		if out[k.topic] == nil {
			out[k.topic] = map[int32]int64{}
		}
		out[k.topic][k.partition] = p.lag[k]
	}
	return out
}

// work is one partition's share of a polled batch.
type work struct {
	part    *partition
	records []*kgo.Record
}

// pending is a reply to produce once the batch's events are written.
type pending struct {
	reply     *producer.Reply
	partition int32
	key       []byte
	// records are the events the reply's positions point at, known once
	// the batch is written.
	records []*kgo.Record
}

// staged is an aggregate changed by the batch: its new instance and the
// records of its new events (their offsets are known once written), also
// by command.
type staged struct {
	inst      *aggregate.Instance
	records   []*kgo.Record
	byCommand map[ulid.ULID][]*kgo.Record
	// ownRecent is set once inst.Recent is an array made in this batch,
	// which no committed instance shares.
	ownRecent bool
}

// fenced reports whether err means this process's transactional ID is now
// someone else's: it must stop, as any further write would be refused.
func fenced(err error) bool {
	// INVALID_PRODUCER_EPOCH is not: the broker aborted a transaction that
	// outlived its timeout, and reset starts a new session.
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

// batch handles one polled batch in one transaction. It returns an error
// only when the processor must stop: fenced, or not authorized.
func (p *Processor) batch(loopCtx context.Context, fs kgo.Fetches) error {
	// The transaction's own requests must not be cut short by shutdown:
	// a cancelled End can leave the outcome unknown (see DESIGN.md).
	ctx := context.WithoutCancel(loopCtx)
	var works []*work
	fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if n := len(ftp.Records); n > 0 {
			works = append(works, &work{part: p.partitionOf(ftp.Topic, ftp.Partition), records: ftp.Records})
			p.mu.Lock()
			p.lag[topicPartition{ftp.Topic, ftp.Partition}] = max(0, ftp.LastStableOffset-ftp.Records[n-1].Offset-1)
			p.mu.Unlock()
		}
	})
	for _, w := range works {
		if err := p.prepare(ctx, w); err != nil {
			if acl.Denied(err) {
				return err // the events topic may not be read: no retry helps
			}
			p.log.Error("interlock: restoring partitions; their commands will be retried", "err", err)
			p.rewind(loopCtx)
			pause(loopCtx)
			return nil
		}
	}
	if err := p.prepareSchemas(loopCtx, works); err != nil {
		// Before the transaction: a registry that hangs must not hold
		// one open past its timeout.
		p.log.Error("interlock: a command's schema is not known and the schema registry does not answer; its batch will be handled again", "err", err)
		p.rewind(loopCtx)
		p.stats.givenBack.Add(1)
		pause(loopCtx)
		return nil
	}
	if err := p.sess.Begin(); err != nil {
		if acl.Denied(err) {
			return acl.TransactionalID(p.cfg.TransactionalID, err)
		}
		p.reset(loopCtx, fmt.Errorf("beginning a transaction: %w", err))
		return nil
	}
	began := time.Now()
	// A transaction that cannot finish within the session timeout (a
	// produce stuck on a dead leader, a coordinator gone) is given up:
	// End then fails, and reset starts a new session, whose producer ID
	// fences what is left, and rebuilds the state from the log.
	ctx, cancel := context.WithTimeout(ctx, p.cfg.SessionTimeout)
	defer cancel()

	changed := map[*partition]map[ulid.ULID]*staged{}
	var replies []*pending
	var produceErr error
	var errMu sync.Mutex
	var applied, rejected, failed int64
	giveBack := false // a command waits for the schema registry
	for _, w := range works {
		if giveBack {
			break
		}
		st := changed[w.part]
		if st == nil {
			st = map[ulid.ULID]*staged{}
			changed[w.part] = st
		}
		for _, r := range w.records {
			rep, status := p.handle(ctx, w.part, st, r, func(err error) {
				if refusedTooLarge(err) {
					p.relimit.Store(true)
				}
				errMu.Lock()
				produceErr = errors.Join(produceErr, err)
				errMu.Unlock()
			})
			if status == unavailable {
				giveBack = true
				break
			}
			switch status {
			case producer.Applied:
				applied++
			case producer.Rejected:
				rejected++
			default:
				failed++
			}
			if rep != nil {
				replies = append(replies, rep)
			}
		}
	}
	// Replies carry the positions of the events, known once they are
	// written (not yet committed).
	if err := p.sess.Client().Flush(ctx); err != nil {
		produceErr = errors.Join(produceErr, err)
	}
	errMu.Lock()
	ok := produceErr == nil && !giveBack
	errMu.Unlock()
	if ok {
		for _, rep := range replies {
			for _, rec := range rep.records {
				rep.reply.Positions = append(rep.reply.Positions, producer.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset})
			}
			p.sess.Produce(ctx, &kgo.Record{
				Topic:     p.cfg.RepliesTopic,
				Partition: rep.partition,
				Key:       rep.key,
				Value:     p.replyValue(rep.reply, rep.key),
			}, nil)
		}
	} else if !giveBack {
		p.log.Error("interlock: writing events failed; aborting the batch", "err", produceErr)
	}
	committed, err := p.sess.End(ctx, kgo.TransactionEndTry(ok))
	p.observeBatch(Batch{
		Commands: int(applied + rejected + failed), Applied: int(applied), Rejected: int(rejected), Failed: int(failed),
		Committed: committed && err == nil, Duration: time.Since(began),
	})
	switch {
	case acl.Denied(err):
		return acl.TransactionalID(p.cfg.TransactionalID, err)
	case fenced(err):
		return err
	case !ok && acl.Denied(produceErr):
		// Aborted: the commands are handled again once the principal
		// may write, by the next owner.
		return produceErr
	case err != nil:
		// The transaction may or may not have committed: trust only the
		// log, and a new session.
		p.reset(loopCtx, fmt.Errorf("ending a transaction: %w", err))
	case !committed:
		// Aborted (a rebalance, a failed write): the batch comes back.
		p.log.Info("interlock: transaction aborted; its commands will be handled again")
	default:
		p.stats.applied.Add(applied)
		p.stats.rejected.Add(rejected)
		p.stats.failed.Add(failed)
		p.promote(ctx, changed)
	}
	if giveBack {
		p.stats.givenBack.Add(1)
		pause(loopCtx) // the registry is asked again then
	}
	if p.relimit.Swap(false) && err == nil && p.loadLimits(loopCtx, p.sess.Client()) {
		// A topic's limit went below what was known: the batch came back,
		// its record over the limit is refused before it is produced, and
		// a new session's producer makes batches that fit.
		p.reset(loopCtx, errors.New("an events topic's max.message.bytes went down"))
	}
	return nil
}

// prepareSchemas makes the writer schemas of the works' commands known to
// their Serdes (schema.Prepare), so that no command's decode waits on the
// registry inside the transaction. It returns the error of a registry that
// does not answer; records it cannot read are left to handle.
func (p *Processor) prepareSchemas(ctx context.Context, works []*work) error {
	ctx, cancel := context.WithTimeout(ctx, schemaWait)
	defer cancel()
	for _, w := range works {
		for _, r := range w.records {
			typ, _ := producer.Header(r, producer.HeaderType)
			msg, ok := w.part.route.Command(string(typ))
			if !ok {
				continue
			}
			if err := schema.Prepare(ctx, msg.Serde, r.Value); err != nil {
				return fmt.Errorf("command %s at %s/%d@%d: %w", msg.Name, r.Topic, r.Partition, r.Offset, err)
			}
		}
	}
	return nil
}

// pause waits a second before a batch given back is polled again, or
// until ctx ends.
func pause(ctx context.Context) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// schemaWait bounds the look-ups of a batch's commands' writer schemas:
// the loop, and with it the group's rebalances, waits for them.
const schemaWait = 5 * time.Second

// unavailable is handle's status for a command it cannot decode while the
// schema registry does not answer: the batch is aborted and comes back.
const unavailable producer.Status = "unavailable"

// promote makes the committed batch's states the live ones and writes the
// snapshots their strategies say are due.
func (p *Processor) promote(ctx context.Context, changed map[*partition]map[ulid.ULID]*staged) {
	now := time.Now()
	for part, st := range changed {
		var due []*entry
		for id, s := range st {
			e := part.entries[id]
			if e == nil {
				e = &entry{part: part, last: -1, dirtyFrom: -1}
				part.entries[id] = e
			}
			e.inst = s.inst
			p.cache.put(e)
			if len(s.records) == 0 {
				continue
			}
			for i := range e.inst.Recent {
				if r := &e.inst.Recent[i]; r.Offset < 0 {
					r.Offset = s.byCommand[r.CommandID][0].Offset
				}
			}
			p.markDirty(part, e, s.records[0].Offset, s.records[len(s.records)-1].Offset, int64(len(s.records)), now)
			part.position = max(part.position, e.last+1)
			if part.agg.Snapshots.Due(e.pending, e.since, now) {
				due = append(due, e)
			}
		}
		if len(due) > 0 {
			p.flush(ctx, part, due)
		}
	}
	p.stats.cached.Store(int64(p.cache.len()))
}

// markDirty records that e's state gained events first..last (offsets).
func (p *Processor) markDirty(part *partition, e *entry, first, last, n int64, now time.Time) {
	if !e.dirty() {
		e.dirtyFrom, e.since = first, now
		part.dirty[e.inst.ID] = e
	}
	e.last = last
	e.pending += n
}

// rewind returns the polled but unhandled records to the partitions, so
// they are polled again: an empty aborted transaction resets the consumer
// to the committed offsets.
func (p *Processor) rewind(ctx context.Context) {
	if err := p.sess.Begin(); err != nil {
		p.reset(ctx, fmt.Errorf("rewinding: %w", err))
		return
	}
	if _, err := p.sess.End(context.WithoutCancel(ctx), kgo.TryAbort); err != nil {
		p.reset(ctx, fmt.Errorf("rewinding: %w", err))
	}
}

// handle runs one command record and returns its reply (nil when none is
// wanted) and its outcome. Events are produced into the open transaction.
func (p *Processor) handle(ctx context.Context, part *partition, st map[ulid.ULID]*staged, r *kgo.Record, onErr func(error)) (*pending, producer.Status) {
	route := part.route
	h, err := producer.ParseHeaders(r)
	var rep *pending
	if h.ReplyTo >= 0 && h.ReplyTo < p.replies && h.Command.CommandID != (ulid.ULID{}) {
		key := h.ReplyKey // the dispatcher's attempt; older dispatchers wait on the command ID
		if key == nil {
			key = []byte(h.Command.CommandID.String())
		}
		rep = &pending{
			reply:     &producer.Reply{CommandID: h.Command.CommandID.String()},
			partition: h.ReplyTo,
			key:       key,
		}
	} else if h.ReplyTo >= p.replies {
		p.log.Warn("interlock: command asks for a reply on a partition that does not exist", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reply_to", h.ReplyTo)
	}
	reject := func(status producer.Status, reason string, conflict *producer.Conflict) (*pending, producer.Status) {
		if rep == nil {
			return nil, status
		}
		rep.reply.Status, rep.reply.Reason, rep.reply.Conflict = status, reason, conflict
		return rep, status
	}
	bad := func(kind string, err error) (*pending, producer.Status) {
		p.log.Warn("interlock: bad command record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "kind", kind, "reason", err.Error())
		p.observeBad(BadRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Reason: kind, Err: err})
		return reject(producer.Rejected, err.Error(), nil)
	}
	if err != nil {
		return bad(producer.Reason(err), err)
	}
	msg, ok := route.Command(h.Type)
	if !ok {
		return bad(producer.ReasonUnknownType, fmt.Errorf("unknown command type %q for aggregate %q", h.Type, route.Type.Name()))
	}
	if h.Command.CommandID == (ulid.ULID{}) {
		return bad(producer.ReasonMissingHeader, fmt.Errorf("command %s has no %s header", h.Type, producer.HeaderCommandID))
	}
	ptr, err := msg.Serde.Decode(r.Value)
	if errors.Is(err, schema.ErrRegistryUnavailable) {
		// Not the record's fault, and a command sent with Send has no
		// caller to try it again: the batch is given back, to be
		// handled once the registry answers.
		p.log.Error("interlock: a command's schema is not known and the schema registry does not answer; the batch will be handled again", "type", h.Type, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil, unavailable
	}
	if err != nil && !errors.Is(err, schema.ErrDecode) {
		// Neither the record's fault nor the registry's (a codec's own
		// failure): the caller may retry.
		p.log.Error("interlock: decoding a command", "type", h.Type, "err", err)
		return reject(producer.Failed, fmt.Sprintf("command %s: %v", h.Type, err), nil)
	}
	if err != nil {
		return bad(producer.Reason(err), fmt.Errorf("command %s: %w", h.Type, err))
	}
	aggregate.SetEnvelope(ptr, h.Command)
	cmd := reflect.ValueOf(ptr).Elem().Interface()

	id := h.Command.AggregateID
	if err := part.broken[id]; err != nil {
		return reject(producer.Failed, fmt.Sprintf("aggregate %s cannot be rebuilt from its events: %v", id, err), nil)
	}
	var inst *aggregate.Instance
	prev := st[id]
	if prev != nil {
		inst = prev.inst
	} else if e, ok := part.entries[id]; ok {
		inst = e.inst
		p.cache.put(e)
	} else {
		inst = route.Type.New(id)
	}
	if done, ok := aggregate.Find(inst.Recent, h.Command.CommandID); ok {
		// A retry of a command already applied: its first outcome again.
		p.stats.duplicates.Add(1)
		p.log.Debug("interlock: command already applied; replying with its outcome", "type", h.Type, "aggregate_id", id, "command_id", h.Command.CommandID)
		if rep == nil {
			return nil, producer.Applied
		}
		rep.reply.Status, rep.reply.Version, rep.reply.Result = producer.Applied, done.Version, done.Result
		if done.Offset >= 0 {
			for o := range int64(done.Events) {
				rep.reply.Positions = append(rep.reply.Positions, producer.Position{Topic: route.EventsTopic, Partition: r.Partition, Offset: done.Offset + o})
			}
		} else {
			rep.records = prev.byCommand[h.Command.CommandID] // applied earlier in this batch
		}
		return rep, producer.Applied
	}
	// After the look-up: a retry of an applied command gets its outcome,
	// deadline or not.
	if !h.Deadline.IsZero() && time.Now().After(h.Deadline) {
		p.log.Debug("interlock: command past its deadline", "type", h.Type, "command_id", h.Command.CommandID, "deadline", h.Deadline)
		return reject(producer.Rejected, fmt.Sprintf("deadline %s passed before the command was handled", h.Deadline.Format(time.RFC3339Nano)), nil)
	}
	md := producer.Metadata(r)
	work, out, err := p.execute(ctx, route, inst, &middleware.Message{
		Side: middleware.Handle, Type: h.Type, Aggregate: route.Type.Name(), Command: cmd, Metadata: md,
	})
	if err != nil {
		var rej *aggregate.RejectedError
		if errors.As(err, &rej) {
			var c *producer.Conflict
			if rej.Conflict != nil {
				c = &producer.Conflict{Expected: rej.Conflict.Expected, Actual: rej.Conflict.Actual}
			}
			p.log.Debug("interlock: command rejected", "type", h.Type, "aggregate_id", id, "reason", rej.Reason)
			if rep != nil && rej.Err != nil {
				rep.reply.Code = route.Type.ErrorCode(rej.Err)
			}
			return reject(producer.Rejected, rej.Reason, c)
		}
		attrs := []any{"type", h.Type, "aggregate_id", id, "err", err}
		if pe := (*aggregate.PanicError)(nil); errors.As(err, &pe) {
			attrs = append(attrs, "stack", string(pe.Stack))
		}
		p.log.Error("interlock: command failed", attrs...)
		return reject(producer.Failed, err.Error(), nil)
	}
	var result json.RawMessage
	if _, none := out.Result.(aggregate.None); !none {
		if result, err = json.Marshal(out.Result); err != nil {
			return reject(producer.Failed, fmt.Sprintf("encoding the result of %s: %v", h.Type, err), nil)
		}
	}
	records := make([]*kgo.Record, len(out.Events))
	types := make([]*producer.Message, len(out.Events))
	now := time.Now()
	canonical := false
	for i, e := range out.Events {
		em, ok := route.EventOf(reflect.TypeOf(e))
		if !ok {
			return reject(producer.Failed, fmt.Sprintf("event %T has no codec", e), nil)
		}
		value, err := em.Serde.Encode(e)
		if err != nil {
			return reject(producer.Failed, fmt.Sprintf("encoding event %s: %v", em.Name, err), nil)
		}
		canonical = canonical || em.Lossy
		types[i] = em
		records[i] = producer.EventRecord(route.EventsTopic, r.Partition, route.Codec, aggregate.EventEnvelope{
			EventID:       ulid.Make(),
			AggregateType: route.Type.Name(),
			AggregateID:   id,
			Type:          em.Name,
			Version:       inst.Version + int64(i) + 1,
			Time:          now,
			CommandID:     h.Command.CommandID,
			CorrelationID: h.Command.CorrelationID,
			CausationID:   h.Command.CommandID.String(),
		}, value)
		if records[i].Headers, err = producer.AppendMetadata(records[i].Headers, md); err != nil {
			return reject(producer.Failed, fmt.Sprintf("event %s: %v", em.Name, err), nil)
		}
	}
	if canonical {
		// Hold what a replay of the log would build, not what the handler
		// emitted: they differ when encoding drops detail.
		work = route.Type.Clone(inst)
		for i, rec := range records {
			em := types[i]
			ptr, err := em.Serde.Decode(rec.Value)
			if err == nil {
				err = route.Type.Apply(work, ptr)
			}
			if err != nil {
				return reject(producer.Failed, fmt.Sprintf("event %s does not survive its own encoding: %v", em.Name, err), nil)
			}
		}
	}
	// The result rides on the command's last event, so a replay can
	// answer a retry as the first run did.
	if len(records) > 0 && result != nil {
		last := records[len(records)-1]
		last.Headers = append(last.Headers, kgo.RecordHeader{Key: producer.HeaderResult, Value: result})
	}
	if err := p.tooLarge(records); err != nil {
		return bad(producer.ReasonTooLarge, fmt.Errorf("command %s: %w", h.Type, err))
	}
	s := &staged{inst: work, records: records}
	if prev != nil {
		s.records = append(prev.records, records...)
		s.byCommand, s.ownRecent = prev.byCommand, prev.ownRecent
	}
	if s.byCommand == nil {
		s.byCommand = map[ulid.ULID][]*kgo.Record{}
	}
	if len(records) > 0 {
		a := aggregate.Applied{CommandID: h.Command.CommandID, Version: work.Version, Offset: -1, Events: len(records), Result: result}
		if s.ownRecent {
			// The array was made in this batch and work supersedes the
			// instance sharing it: no copy.
			work.Recent = appendRecent(work.Recent, a, p.cfg.IdempotencyWindow)
		} else {
			work.Recent = aggregate.Remember(work.Recent, a, p.cfg.IdempotencyWindow)
			s.ownRecent = true
		}
		s.byCommand[h.Command.CommandID] = records
	}
	st[id] = s
	if rep != nil {
		rep.reply.Status, rep.reply.Version, rep.reply.Result = producer.Applied, work.Version, result
		rep.records = records
	}
	for _, rec := range records {
		p.sess.Produce(ctx, rec, func(rec *kgo.Record, err error) {
			if err != nil {
				onErr(fmt.Errorf("producing event to %s/%d: %w", rec.Topic, rec.Partition, err))
			}
		})
	}
	return rep, producer.Applied
}

// execute runs the command of m against a copy of inst, through the
// middleware, and returns the copy with the outcome applied. The copy is
// made afresh each time the chain reaches the handler, so a middleware
// that calls next twice leaves no trace of the first call. m.Metadata is
// what the events inherit, so a middleware may set it (trace context).
func (p *Processor) execute(ctx context.Context, route *producer.Route, inst *aggregate.Instance, m *middleware.Message) (*aggregate.Instance, aggregate.Outcome, error) {
	if p.cfg.Middleware == nil {
		work := route.Type.Clone(inst)
		out, err := route.Type.Execute(work, m.Command)
		return work, out, err
	}
	if m.Metadata == nil {
		m.Metadata = middleware.Metadata{}
	}
	var work *aggregate.Instance
	var ran aggregate.Outcome
	var ranErr error
	chain := func() (out middleware.Outcome, err error) {
		// The handler recovers its own panics; a middleware's are caught
		// here, and fail the command like them.
		defer func() {
			if v := recover(); v != nil {
				out, err = middleware.Outcome{}, aggregate.Recovered("a handle-side middleware around "+m.Type, v)
			}
		}()
		return p.cfg.Middleware(func(_ context.Context, m *middleware.Message) (middleware.Outcome, error) {
			work = route.Type.Clone(inst)
			ran, ranErr = route.Type.Execute(work, m.Command)
			if ranErr != nil {
				return middleware.Outcome{}, ranErr
			}
			return middleware.Outcome{Version: work.Version, Result: ran.Result, Events: ran.Events}, nil
		})(ctx, m)
	}
	out, err := chain()
	switch {
	case err != nil:
		return nil, aggregate.Outcome{}, err
	case ranErr != nil:
		return nil, aggregate.Outcome{}, fmt.Errorf("a middleware reported success for a command whose handler failed: %w", ranErr)
	case work == nil: // a middleware answered without the handler
		return route.Type.Clone(inst), aggregate.Outcome{Result: out.Result}, nil
	}
	// The events are the handler's; the result may be a middleware's.
	return work, aggregate.Outcome{Events: ran.Events, Result: out.Result}, nil
}
