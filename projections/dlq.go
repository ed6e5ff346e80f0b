package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/producer"
)

// Dead-letter records that are not parked events: a request to retry a
// key's parked events, and its outcome.
const (
	// HeaderDLQRetry marks a request to apply a key's parked events again.
	HeaderDLQRetry = "interlock-dlq-retry"
	// HeaderDLQRequest is on an outcome (resolved, or failed): the offset
	// of the request it answers.
	HeaderDLQRequest = "interlock-dlq-request"
	// HeaderDLQFailed marks a retry that failed; the value is the error.
	HeaderDLQFailed = "interlock-dlq-failed"
	// HeaderDLQCovers is on a resolution: the offset, in the dead-letter
	// topic, of the last parked event it resolves.
	HeaderDLQCovers = "interlock-dlq-covers"
)

// Parked is an event waiting in a projection's dead-letter topic.
type Parked struct {
	// Key is the record key: the aggregate ID of an event.
	Key string
	// Type is the event type.
	Type string
	// From is where the event is in its own topic; At where it is parked.
	From, At producer.Position
	// Error is why it was parked.
	Error string
	// Time is when it was parked.
	Time time.Time
}

// readDLQ returns the records of the dead-letter topic from its start to
// its end now (read_committed), and where each partition ends: the offsets
// to tail it from.
func (pr *Projector) readDLQ(ctx context.Context) ([]*kgo.Record, map[int32]kgo.Offset, error) {
	adm := kadm.NewClient(pr.dlq)
	topic := pr.cfg.DeadLetterTopic
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	// The last stable offset: parks in Kafka transactions end with a
	// marker, which KeepControlRecords returns, so the read ends there.
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	from := map[int32]kgo.Offset{}
	tail := map[int32]kgo.Offset{}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		tail[o.Partition] = kgo.NewOffset().At(o.Offset)
		s, _ := starts.Lookup(o.Topic, o.Partition)
		if o.Offset > s.Offset {
			from[o.Partition] = kgo.NewOffset().At(s.Offset)
			left[o.Partition] = o.Offset
		}
	})
	if len(from) == 0 {
		return nil, tail, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), pr.cfg.ClientOpts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if err := fs.Err0(); err != nil {
			return nil, nil, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out, tail, nil
}

// parkedOf returns, of the records of the dead-letter topic, the parked
// events not yet resolved, by key, each once, in order.
func parkedOf(recs []*kgo.Record) map[string][]*kgo.Record {
	x := newDLQIndex()
	for _, r := range recs {
		x.add(r)
	}
	return x.parked
}

func hasHeader(r *kgo.Record, key string) bool {
	_, ok := producer.Header(r, key)
	return ok
}

// Parked lists the events waiting in the projection's dead-letter topic,
// by key, in order.
func (pr *Projector) Parked(ctx context.Context) ([]Parked, error) {
	recs, _, err := pr.readDLQ(ctx)
	if err != nil {
		return nil, fmt.Errorf("projection %q: reading its dead-letter topic: %w", pr.name, err)
	}
	var out []Parked
	for _, rs := range parkedOf(recs) {
		for _, r := range rs {
			out = append(out, parked(r))
		}
	}
	slices.SortFunc(out, func(a, b Parked) int {
		return cmp.Or(cmp.Compare(a.At.Partition, b.At.Partition), cmp.Compare(a.At.Offset, b.At.Offset))
	})
	return out, nil
}

func parked(r *kgo.Record) Parked {
	from := original(r)
	return Parked{
		Key: string(r.Key), Type: header(r, producer.HeaderType), Error: header(r, HeaderDLQError), Time: r.Timestamp,
		From: producer.Position{Topic: from.Topic, Partition: from.Partition, Offset: from.Offset},
		At:   producer.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset},
	}
}

// originalOffset returns the offset, in its own topic, of the event a
// parked record is a copy of.
func originalOffset(r *kgo.Record) int64 {
	o, _ := strconv.ParseInt(header(r, HeaderDLQOffset), 10, 64)
	return o
}

// original returns the event a parked record is a copy of, as it was in
// its own topic.
func original(r *kgo.Record) *kgo.Record {
	p, _ := strconv.ParseInt(header(r, HeaderDLQPartition), 10, 32)
	o, _ := strconv.ParseInt(header(r, HeaderDLQOffset), 10, 64)
	var hs []kgo.RecordHeader
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderDLQTopic, HeaderDLQPartition, HeaderDLQOffset, HeaderDLQError:
		default:
			hs = append(hs, h)
		}
	}
	return &kgo.Record{Topic: header(r, HeaderDLQTopic), Partition: int32(p), Offset: o, Key: r.Key, Value: r.Value, Headers: hs, Timestamp: r.Timestamp}
}

// ErrRetryFailed is returned by Retry when a parked event failed again: it
// stays parked, its key held.
var ErrRetryFailed = errors.New("projections: retry of parked events failed")

// Retry asks the projection to apply key's parked events again, in order.
// The instance that owns the key's partition does it between two batches:
// when they all apply, the key is released and its later events flow
// again; when one fails, nothing of the retry is kept and the key stays
// held. Retry returns the outcome, or ctx's error while waiting for it.
func (pr *Projector) Retry(ctx context.Context, key string) error {
	req := &kgo.Record{Topic: pr.cfg.DeadLetterTopic, Key: []byte(key), Headers: []kgo.RecordHeader{{Key: HeaderDLQRetry, Value: []byte("1")}}}
	if err := pr.dlq.ProduceSync(ctx, req).FirstErr(); err != nil {
		return fmt.Errorf("projection %q: requesting a retry: %w", pr.name, err)
	}
	id := strconv.FormatInt(req.Offset, 10)
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), pr.cfg.ClientOpts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{req.Topic: {req.Partition: kgo.NewOffset().At(req.Offset + 1)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("projection %q: waiting for the retry of %s: %w", pr.name, key, err)
		}
		var outcome error
		found := false
		fs.EachRecord(func(r *kgo.Record) {
			if found || header(r, HeaderDLQRequest) != id {
				return
			}
			found = true
			if msg, failed := producer.Header(r, HeaderDLQFailed); failed {
				outcome = fmt.Errorf("%w: %s", ErrRetryFailed, msg)
			}
		})
		if found {
			return outcome
		}
	}
}

// answerOf returns the answer to the retry request req: failed with err,
// or resolved up to the parked record at offset covers (-1: none was
// parked).
func answerOf(req *kgo.Record, covers int64, err error) *kgo.Record {
	out := &kgo.Record{Topic: req.Topic, Key: req.Key, Headers: []kgo.RecordHeader{{Key: HeaderDLQRequest, Value: strconv.AppendInt(nil, req.Offset, 10)}}}
	if err != nil {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderDLQFailed, Value: []byte(err.Error())})
	} else {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderDLQResolved, Value: []byte("1")},
			kgo.RecordHeader{Key: HeaderDLQCovers, Value: strconv.AppendInt(nil, covers, 10)})
	}
	return out
}

// retryCheckpoint is the pseudo-partition whose checkpoint records, in an
// exactly-once sink, the last retry request of key applied.
func (pr *Projector) retryCheckpoint(key string) string { return pr.cfg.DeadLetterTopic + "#" + key }

// serveRetries serves the retry requests not yet answered, when a new
// one came or the partitions this instance owns changed. The caller holds
// the rebalance (between a poll and AllowRebalance), so ownership does not
// change meanwhile. It reports false when the Kafka sink's session must be
// replaced (a retry transaction ended in an unknown state).
func (p *Projection[T]) serveRetries(ctx context.Context, pr *Projector, bindings map[string]map[string]binding[T]) bool {
	_, onKafka := any(p.sink).(kafkaSink)
	for _, req := range pr.retryWork() {
		key := string(req.Key)
		parked := pr.parkedOf(key)
		if len(parked) > 0 {
			if first := original(parked[0]); !pr.owns(first.Topic, first.Partition) {
				continue // the owner of the key's partition serves it
			}
			// A park is written before the batch that moves past it
			// commits (on the Kafka sink, in its transaction). Until that
			// commit the event comes back to the partition's next batch,
			// held while parked; a retry resolving it meanwhile would have
			// it applied twice. It waits for the commit.
			if !onKafka {
				past, err := pr.committedPast(ctx, parked)
				if err != nil {
					pr.log.Warn("interlock: reading the projection's checkpoints to serve a retry; trying again", "key", key, "err", err)
				}
				if !past {
					pr.retryLater(err != nil)
					continue
				}
			}
		}
		covers, err := p.reapply(ctx, pr, bindings, req, parked)
		if errors.Is(err, errSession) {
			return false
		}
		pr.log.Info("interlock: retried parked events", "key", key, "events", len(parked), "err", err)
		if _, ok := any(p.sink).(kafkaSink); ok && err == nil && len(parked) > 0 {
			continue // answered in the transaction that applied the events
		}
		answer := answerOf(req, covers, err)
		if perr := pr.dlq.ProduceSync(ctx, answer).FirstErr(); perr != nil {
			pr.log.Error("interlock: answering a retry request; it will be served again", "key", key, "err", perr)
			continue
		}
		pr.indexed(answer)
	}
	return true
}

// committedPast reports whether the partition of parked (a key's parked
// events) is committed past all of them: in the sink's checkpoints, or
// the group's offsets.
func (pr *Projector) committedPast(ctx context.Context, parked []*kgo.Record) (bool, error) {
	first := original(parked[0])
	upTo := int64(-1)
	for _, r := range parked {
		upTo = max(upTo, originalOffset(r))
	}
	stored, err := pr.remote(ctx, first.Topic)
	if err != nil {
		return false, err
	}
	next, ok := stored[first.Partition]
	return ok && next > upTo, nil
}

// errSession is returned by reapply when the Kafka sink's transaction
// ended in an unknown state.
var errSession = errors.New("projections: the transactional session failed")

// reapply applies the parked records of req's key again, in one unit of
// work of the sink, and returns the dead-letter offset of the last one.
// An exactly-once sink also moves the key's retry checkpoint past it, so
// events applied before a crash that lost the answer are not applied
// again.
func (p *Projection[T]) reapply(ctx context.Context, pr *Projector, bindings map[string]map[string]binding[T], req *kgo.Record, parked []*kgo.Record) (int64, error) {
	if len(parked) == 0 {
		return -1, nil
	}
	covers := parked[len(parked)-1].Offset // in the dead-letter topic's order
	// Applied in their aggregate's order, which is the order they were
	// parked in but for an event parked again after its resolution.
	parked = slices.SortedStableFunc(slices.Values(parked), func(a, b *kgo.Record) int {
		return cmp.Compare(originalOffset(a), originalOffset(b))
	})
	if _, ok := any(p.sink).(kafkaSink); ok {
		return covers, pr.reapplyTx(ctx, req, parked, covers, func(ctx context.Context, out *Output, r *kgo.Record) error {
			return p.apply(ctx, pr, any(out).(T), bindings, r)
		})
	}
	var cps []Checkpoint
	if cp, ok := p.sink.(Checkpointer); ok {
		topic := pr.retryCheckpoint(string(req.Key))
		stored, err := cp.Checkpoints(ctx, p.name, topic)
		if err != nil {
			return covers, err
		}
		prev, ok := stored[0]
		if !ok {
			prev = -1
		}
		parked = slices.DeleteFunc(slices.Clone(parked), func(r *kgo.Record) bool { return r.Offset < prev })
		if len(parked) == 0 {
			return covers, nil // applied before a crash; only the answer is missing
		}
		cps = []Checkpoint{{Topic: topic, Partition: 0, Prev: prev, Next: covers + 1}}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.set.batchTimeout)
	defer cancel()
	return covers, p.sink.Apply(actx, p.name, cps, func(ctx context.Context, tx T) error {
		for _, r := range parked {
			if err := p.apply(ctx, pr, tx, bindings, original(r)); err != nil {
				return err
			}
		}
		return nil
	})
}

// reapplyTx applies parked and answers req in one Kafka transaction of the
// projection's session. It returns errSession when the transaction's
// outcome is unknown.
func (pr *Projector) reapplyTx(ctx context.Context, req *kgo.Record, parked []*kgo.Record, covers int64, apply func(context.Context, *Output, *kgo.Record) error) error {
	sess := pr.sess
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("%w: %w", errSession, err)
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pr.txBatchTimeout)
	defer cancel()
	out := &Output{ctx: tctx, sess: sess, routes: pr.cfg.Routes, name: pr.family}
	var failed error
	for _, r := range parked {
		if failed = apply(tctx, out, original(r)); failed != nil {
			break
		}
	}
	answer := answerOf(req, covers, nil)
	if failed == nil {
		out.Produce(answer)
		if err := sess.Client().Flush(tctx); err != nil {
			failed = err
		}
		failed = errors.Join(failed, out.err())
	}
	committed, err := sess.End(tctx, kgo.TransactionEndTry(failed == nil))
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", errSession, err)
	case failed != nil:
		return failed
	case !committed:
		return errors.New("the transaction aborted")
	}
	pr.indexed(answer)
	return nil
}
