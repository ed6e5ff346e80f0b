package projections

import (
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

// marker reports whether r is a request or an outcome, not a parked event.
func marker(r *kgo.Record) bool {
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderDLQRetry, HeaderDLQResolved, HeaderDLQFailed:
			return true
		}
	}
	return false
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
// events not yet resolved, by key, in order.
func parkedOf(recs []*kgo.Record) map[string][]*kgo.Record {
	out := map[string][]*kgo.Record{}
	for _, r := range recs {
		switch {
		case hasHeader(r, HeaderDLQResolved):
			delete(out, string(r.Key))
		case !marker(r):
			out[string(r.Key)] = append(out[string(r.Key)], r)
		}
	}
	return out
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
	waiting := parkedOf(recs)
	var out []Parked
	for _, r := range recs {
		if !marker(r) && slices.Contains(waiting[string(r.Key)], r) {
			out = append(out, parked(r))
		}
	}
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

// answer writes the outcome of the retry request req: resolved, or failed
// with err.
func answerOf(req *kgo.Record, err error) *kgo.Record {
	out := &kgo.Record{Topic: req.Topic, Key: req.Key, Headers: []kgo.RecordHeader{{Key: HeaderDLQRequest, Value: strconv.AppendInt(nil, req.Offset, 10)}}}
	if err != nil {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderDLQFailed, Value: []byte(err.Error())})
	} else {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderDLQResolved, Value: []byte("1")})
	}
	return out
}

// retryCheckpoint is the pseudo-partition whose checkpoint records, in an
// exactly-once sink, the last retry request of key applied.
func (pr *Projector) retryCheckpoint(key string) string { return pr.cfg.DeadLetterTopic + "#" + key }

// serveRetries serves the retry requests waiting, without blocking.
func (p *Projection[T]) serveRetries(ctx context.Context, pr *Projector, bindings map[string]map[string]binding[T]) {
	for {
		select {
		case req, ok := <-pr.requests:
			if !ok {
				return
			}
			p.retry(ctx, pr, bindings, req)
		default:
			return
		}
	}
}

// retry applies the parked events of req's key again, if this instance
// owns their partition, and answers req.
func (p *Projection[T]) retry(ctx context.Context, pr *Projector, bindings map[string]map[string]binding[T], req *kgo.Record) {
	key := string(req.Key)
	recs, _, err := pr.readDLQ(ctx)
	if err != nil {
		pr.log.Error("interlock: reading the dead-letter topic for a retry", "key", key, "err", err)
		return
	}
	var events []*kgo.Record
	for _, r := range parkedOf(recs)[key] {
		events = append(events, original(r))
	}
	if len(events) > 0 && !pr.owns(events[0].Topic, events[0].Partition) {
		return // the owner of the key's partition answers
	}
	if len(events) > 0 {
		err = p.reapply(ctx, pr, bindings, req, events)
	}
	pr.log.Info("interlock: retried parked events", "key", key, "events", len(events), "err", err)
	if err == nil {
		pr.mu.Lock()
		delete(pr.held, key)
		pr.mu.Unlock()
	}
	if _, ok := any(p.sink).(kafkaSink); ok && err == nil {
		return // answered in the transaction that applied the events
	}
	if perr := pr.dlq.ProduceSync(ctx, answerOf(req, err)).FirstErr(); perr != nil {
		pr.log.Error("interlock: answering a retry request", "key", key, "err", perr)
	}
}

// reapply applies events in one unit of work of the sink. An exactly-once
// sink also moves the key's retry checkpoint to after req, so a request
// applied before a crash is not applied again.
func (p *Projection[T]) reapply(ctx context.Context, pr *Projector, bindings map[string]map[string]binding[T], req *kgo.Record, events []*kgo.Record) error {
	if _, ok := any(p.sink).(kafkaSink); ok {
		return pr.reapplyTx(ctx, req, events, func(ctx context.Context, out *Output, r *kgo.Record) error {
			return p.apply(ctx, pr, any(out).(T), bindings, r)
		})
	}
	var cps []Checkpoint
	if cp, ok := p.sink.(Checkpointer); ok {
		topic := pr.retryCheckpoint(string(req.Key))
		stored, err := cp.Checkpoints(ctx, p.name, topic)
		if err != nil {
			return err
		}
		prev, ok := stored[0]
		if ok && prev > req.Offset {
			return nil // applied before a crash; only the answer is missing
		}
		if !ok {
			prev = -1
		}
		cps = []Checkpoint{{Topic: topic, Partition: 0, Prev: prev, Next: req.Offset + 1}}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.set.batchTimeout)
	defer cancel()
	return p.sink.Apply(actx, p.name, cps, func(ctx context.Context, tx T) error {
		for _, r := range events {
			if err := p.apply(ctx, pr, tx, bindings, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// reapplyTx applies events and answers req in one Kafka transaction of the
// projection's session.
func (pr *Projector) reapplyTx(ctx context.Context, req *kgo.Record, events []*kgo.Record, apply func(context.Context, *Output, *kgo.Record) error) error {
	sess := pr.sess
	if err := sess.Begin(); err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	out := &Output{ctx: tctx, sess: sess, routes: pr.cfg.Routes, name: pr.name}
	var failed error
	for _, r := range events {
		if failed = apply(tctx, out, r); failed != nil {
			break
		}
	}
	if failed == nil {
		out.Produce(answerOf(req, nil))
		if err := sess.Client().Flush(tctx); err != nil {
			failed = err
		}
		failed = errors.Join(failed, out.err())
	}
	committed, err := sess.End(tctx, kgo.TransactionEndTry(failed == nil))
	switch {
	case failed != nil:
		return failed
	case err != nil:
		return err
	case !committed:
		return errors.New("the transaction aborted")
	}
	return nil
}
