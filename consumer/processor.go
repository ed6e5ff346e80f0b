package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
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
	// Routes are the aggregates this processor handles.
	Routes []*producer.Route
	// MaxPollRecords bounds the commands in one transaction. Default 1000.
	MaxPollRecords int
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Processor owns command partitions and handles their commands.
type Processor struct {
	cfg     Config
	log     *slog.Logger
	routes  map[string]*producer.Route // by commands topic
	sess    *kgo.GroupTransactSession
	replies int32 // partition count of the replies topic

	mu    sync.Mutex
	parts map[topicPartition]*partition

	cancel context.CancelFunc
	done   chan struct{}
}

type topicPartition struct {
	topic     string
	partition int32
}

// partition is the state of one owned commands partition. Only the
// processing loop reads or writes its fields; rebalance callbacks only add
// and remove partitions from Processor.parts.
type partition struct {
	route    *producer.Route
	id       int32
	restored bool
	aggs     map[ulid.ULID]*aggregate.Instance
	// broken holds aggregates whose events could not be replayed: their
	// commands are rejected with the reason instead of running on wrong
	// state, and the rest of the partition goes on.
	broken map[ulid.ULID]error
}

// New joins the processors' group and starts processing in the
// background. Call Close to stop.
func New(ctx context.Context, cfg Config) (*Processor, error) {
	cfg.defaults()
	if cfg.TransactionTimeout >= cfg.SessionTimeout {
		return nil, fmt.Errorf("processor: transaction timeout %v must be below the session timeout %v", cfg.TransactionTimeout, cfg.SessionTimeout)
	}
	p := &Processor{
		cfg:    cfg,
		log:    cfg.Logger,
		routes: map[string]*producer.Route{},
		parts:  map[topicPartition]*partition{},
		done:   make(chan struct{}),
	}
	topics := make([]string, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		p.routes[r.CommandsTopic] = r
		topics = append(topics, r.CommandsTopic)
	}
	sess, err := kgo.NewGroupTransactSession(append(append([]kgo.Opt(nil), cfg.ClientOpts...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.TransactionalID(cfg.TransactionalID),
		kgo.TransactionTimeout(cfg.TransactionTimeout),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.BlockRebalanceOnPoll(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.OnPartitionsAssigned(p.assigned),
		kgo.OnPartitionsRevoked(p.revoked),
		kgo.OnPartitionsLost(p.revoked),
	)...)
	if err != nil {
		return nil, fmt.Errorf("processor: %w", err)
	}
	p.sess = sess
	meta, err := kadm.NewClient(sess.Client()).ListTopics(ctx, cfg.RepliesTopic)
	if err == nil {
		err = meta.Error()
	}
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("processor: replies topic %s: %w", cfg.RepliesTopic, err)
	}
	p.replies = int32(len(meta[cfg.RepliesTopic].Partitions))
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go p.run(loopCtx)
	return p, nil
}

func (p *Processor) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, ps := range m {
		for _, id := range ps {
			p.parts[topicPartition{t, id}] = &partition{route: p.routes[t], id: id}
		}
		p.log.Info("interlock: partitions assigned", "topic", t, "partitions", ps)
	}
}

func (p *Processor) revoked(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, ps := range m {
		for _, id := range ps {
			delete(p.parts, topicPartition{t, id})
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
		p.parts[k] = &partition{route: part.route, id: part.id}
	}
}

func (p *Processor) partitionOf(topic string, id int32) *partition {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := topicPartition{topic, id}
	part, ok := p.parts[k]
	if !ok { // records can only come from owned partitions; be safe anyway
		part = &partition{route: p.routes[topic], id: id}
		p.parts[k] = part
	}
	return part
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
		fs := p.sess.PollRecords(ctx, p.cfg.MaxPollRecords)
		if fs.IsClientClosed() || ctx.Err() != nil {
			p.sess.AllowRebalance()
			return
		}
		fs.EachError(func(t string, part int32, err error) {
			p.log.Warn("interlock: fetching commands", "topic", t, "partition", part, "err", err)
		})
		if !fs.Empty() {
			if err := p.batch(fs); err != nil {
				p.log.Error("interlock: processor stopped: another instance with this transactional ID took over (set a unique, stable WithInstanceID per instance)", "transactional_id", p.cfg.TransactionalID, "err", err)
				p.sess.AllowRebalance()
				return
			}
		}
		p.sess.AllowRebalance()
	}
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
	positions []producer.Position
}

// fenced reports whether err means this process's transactional ID is now
// someone else's: it must stop, as any further write would be refused.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

// batch handles one polled batch in one transaction. It returns an error
// only when the processor must stop.
func (p *Processor) batch(fs kgo.Fetches) error {
	// The transaction's own requests must not be cut short by shutdown:
	// a cancelled End can leave the outcome unknown (see DESIGN.md).
	ctx := context.Background()
	var works []work
	var restore []*partition
	fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) == 0 {
			return
		}
		part := p.partitionOf(ftp.Topic, ftp.Partition)
		if !part.restored {
			restore = append(restore, part)
		}
		works = append(works, work{part: part, records: ftp.Records})
	})
	if err := p.restore(ctx, restore); err != nil {
		p.log.Error("interlock: restoring partitions; their commands will be retried", "err", err)
		p.rewind()
		time.Sleep(time.Second)
		return nil
	}
	if err := p.sess.Begin(); err != nil {
		p.log.Error("interlock: beginning transaction", "err", err)
		p.dropAll()
		time.Sleep(time.Second)
		return nil
	}

	staged := map[*partition]map[ulid.ULID]*aggregate.Instance{}
	var replies []*pending
	var produceErr error
	var errMu sync.Mutex
	for _, w := range works {
		st := staged[w.part]
		if st == nil {
			st = map[ulid.ULID]*aggregate.Instance{}
			staged[w.part] = st
		}
		for _, r := range w.records {
			rep := p.handle(ctx, w.part, st, r, func(err error) {
				errMu.Lock()
				produceErr = errors.Join(produceErr, err)
				errMu.Unlock()
			})
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
	if produceErr == nil {
		for _, rep := range replies {
			rep.reply.Positions = rep.positions
			p.sess.Produce(ctx, &kgo.Record{
				Topic:     p.cfg.RepliesTopic,
				Partition: rep.partition,
				Key:       rep.key,
				Value:     producer.EncodeReply(rep.reply),
			}, nil)
		}
	}
	errMu.Lock()
	commit := kgo.TransactionEndTry(produceErr == nil)
	errMu.Unlock()
	if produceErr != nil {
		p.log.Error("interlock: writing events failed; aborting the batch", "err", produceErr)
	}
	committed, err := p.sess.End(ctx, commit)
	switch {
	case fenced(err):
		return err
	case err != nil:
		// The transaction may or may not have committed: trust only the log.
		p.log.Error("interlock: ending transaction; rebuilding state from the log", "err", err)
		p.dropAll()
	case !committed:
		// Aborted (a rebalance, a failed write): the batch comes back.
		p.log.Info("interlock: transaction aborted; its commands will be handled again")
	default:
		for part, st := range staged {
			for id, inst := range st {
				part.aggs[id] = inst
			}
		}
	}
	return nil
}

// rewind returns the polled but unhandled records to the partitions, so
// they are polled again: an empty aborted transaction resets the consumer
// to the committed offsets.
func (p *Processor) rewind() {
	if err := p.sess.Begin(); err != nil {
		p.dropAll()
		return
	}
	if _, err := p.sess.End(context.Background(), kgo.TryAbort); err != nil {
		p.log.Error("interlock: rewinding", "err", err)
		p.dropAll()
	}
}

// handle runs one command record and returns its reply (nil when none is
// wanted). Events are produced into the open transaction.
func (p *Processor) handle(ctx context.Context, part *partition, staged map[ulid.ULID]*aggregate.Instance, r *kgo.Record, onErr func(error)) *pending {
	route := part.route
	h, err := producer.ParseHeaders(r)
	var rep *pending
	if h.ReplyTo >= 0 && h.ReplyTo < p.replies && h.Command.CommandID != (ulid.ULID{}) {
		rep = &pending{
			reply:     &producer.Reply{CommandID: h.Command.CommandID.String()},
			partition: h.ReplyTo,
			key:       []byte(h.Command.CommandID.String()),
		}
	} else if h.ReplyTo >= p.replies {
		p.log.Warn("interlock: command asks for a reply on a partition that does not exist", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reply_to", h.ReplyTo)
	}
	reject := func(status producer.Status, reason string, conflict *producer.Conflict) *pending {
		if rep == nil {
			return nil
		}
		rep.reply.Status, rep.reply.Reason, rep.reply.Conflict = status, reason, conflict
		return rep
	}
	bad := func(reason string) *pending {
		p.log.Warn("interlock: bad command record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", reason)
		return reject(producer.Rejected, reason, nil)
	}
	if err != nil {
		return bad(err.Error())
	}
	msg, ok := route.Command(h.Type)
	if !ok {
		return bad(fmt.Sprintf("unknown command type %q for aggregate %q", h.Type, route.Type.Name()))
	}
	if h.Command.CommandID == (ulid.ULID{}) {
		return bad(fmt.Sprintf("command %s has no %s header", h.Type, producer.HeaderCommandID))
	}
	ptr, err := msg.Serde.Decode(r.Value)
	if err != nil {
		return bad(fmt.Sprintf("command %s: %v", h.Type, err))
	}
	aggregate.SetEnvelope(ptr, h.Command)
	cmd := reflect.ValueOf(ptr).Elem().Interface()

	id := h.Command.AggregateID
	if err := part.broken[id]; err != nil {
		return reject(producer.Failed, fmt.Sprintf("aggregate %s cannot be rebuilt from its events: %v", id, err), nil)
	}
	inst, ok := staged[id]
	if !ok {
		if inst, ok = part.aggs[id]; !ok {
			inst = route.Type.New(id)
		}
	}
	work := route.Type.Clone(inst)
	out, err := route.Type.Execute(work, cmd)
	if err != nil {
		var rej *aggregate.RejectedError
		if errors.As(err, &rej) {
			var c *producer.Conflict
			if rej.Conflict != nil {
				c = &producer.Conflict{Expected: rej.Conflict.Expected, Actual: rej.Conflict.Actual}
			}
			p.log.Debug("interlock: command rejected", "type", h.Type, "aggregate_id", id, "reason", rej.Reason)
			return reject(producer.Rejected, rej.Reason, c)
		}
		p.log.Error("interlock: command failed", "type", h.Type, "aggregate_id", id, "err", err)
		return reject(producer.Failed, err.Error(), nil)
	}
	var result json.RawMessage
	if _, none := out.Result.(aggregate.None); !none && rep != nil {
		if result, err = json.Marshal(out.Result); err != nil {
			return reject(producer.Failed, fmt.Sprintf("encoding the result of %s: %v", h.Type, err), nil)
		}
	}
	records := make([]*kgo.Record, len(out.Events))
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
	}
	if canonical {
		// Hold what a replay of the log would build, not what the handler
		// emitted: they differ when encoding drops detail.
		work = route.Type.Clone(inst)
		for _, rec := range records {
			em, _ := route.Event(producer.TypeOf(rec))
			ptr, err := em.Serde.Decode(rec.Value)
			if err == nil {
				err = route.Type.Apply(work, reflect.ValueOf(ptr).Elem().Interface())
			}
			if err != nil {
				return reject(producer.Failed, fmt.Sprintf("event %s does not survive its own encoding: %v", em.Name, err), nil)
			}
		}
	}
	staged[id] = work
	if rep != nil {
		rep.reply.Status, rep.reply.Version, rep.reply.Result = producer.Applied, work.Version, result
		rep.positions = make([]producer.Position, len(records))
	}
	for i, rec := range records {
		p.sess.Produce(ctx, rec, func(rec *kgo.Record, err error) {
			if err != nil {
				onErr(fmt.Errorf("producing event to %s/%d: %w", rec.Topic, rec.Partition, err))
				return
			}
			if rep != nil {
				rep.positions[i] = producer.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
			}
		})
	}
	return rep
}
