package projections

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
)

func (p *Projection[T]) run(ctx context.Context, pr *Projector, bindings map[string]map[string]binding[T], exactlyOnce bool) {
	defer close(pr.done)
	// The backoff of batches given back grows until every partition given
	// back has had a batch through (or is no longer owned): other
	// partitions' successes do not reset it.
	wait := p.set.backoff
	givenBack := map[topicPartition]bool{}
	for {
		// At least once a second, so retry requests are served.
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := pr.cl.PollRecords(pctx, p.set.maxBatch)
		cancel()
		if fs.IsClientClosed() || ctx.Err() != nil {
			pr.cl.AllowRebalance()
			return
		}
		pr.followed(ctx)
		if err := pr.fetchErrors(fs); err != nil {
			pr.cl.AllowRebalance()
			return
		}
		if recs := fs.Records(); len(recs) > 0 {
			pr.polled(recs)
			switch err := p.process(ctx, pr, bindings, exactlyOnce, recs, map[*kgo.Record]bool{}); {
			case errors.Is(err, errGiveBack):
				// Polled again after the backoff, rebalances allowed
				// meanwhile: a wait without end in sight (the sink or a
				// service down) holds no other instance back.
				for k := range givenBack {
					if !pr.owns(k.topic, k.partition) {
						delete(givenBack, k)
					}
				}
				for _, r := range recs {
					givenBack[topicPartition{r.Topic, r.Partition}] = true
				}
				pr.rewind(recs)
				pr.cl.AllowRebalance()
				if !sleep(ctx, wait) {
					return
				}
				wait = min(2*wait, 30*time.Second)
				continue
			case err != nil:
				if !errors.Is(err, errClosing) {
					pr.log.Error("interlock: projection stopped", "err", err)
					pr.stop(err)
				}
				pr.cl.AllowRebalance()
				return
			}
			for _, r := range recs {
				delete(givenBack, topicPartition{r.Topic, r.Partition})
			}
			if len(givenBack) == 0 {
				wait = p.set.backoff
			}
		}
		// Still holding the rebalance: the partitions are ours.
		p.serveRetries(ctx, pr, bindings)
		pr.cl.AllowRebalance()
	}
}

// process applies one polled batch: events of held aggregates are parked,
// the others applied in one unit of work of the sink with the batch's
// checkpoints. A poison event is handled as the policy says and the batch
// is applied again without it.
func (p *Projection[T]) process(ctx context.Context, pr *Projector, bindings map[string]map[string]binding[T], exactlyOnce bool, recs []*kgo.Record, parked map[*kgo.Record]bool) error {
	for {
		var live []*kgo.Record
		for _, r := range recs {
			if parked[r] {
				continue
			}
			if pr.holds(r) {
				if err := pr.park(ctx, r, fmt.Errorf("held behind an earlier parked event of aggregate %s", r.Key)); err != nil {
					return errClosing
				}
				parked[r] = true
				continue
			}
			live = append(live, r)
		}
		cps := pr.checkpoints(recs)
		err := p.applyRetrying(ctx, pr, bindings, live, cps)
		var poison *errPoison
		switch {
		case err == nil:
			pr.progress(cps)
			if err := pr.cl.CommitRecords(context.WithoutCancel(ctx), recs...); err != nil && !exactlyOnce {
				// The batch will be applied again after a restart: at
				// least once, as documented for this sink.
				pr.log.Warn("interlock: committing the projection's offsets", "err", err)
			}
			return nil
		case errors.Is(err, ErrStale):
			pr.log.Warn("interlock: another instance moved a partition of this projection on; reloading its checkpoints", "err", err)
			pr.reload(ctx)
			return nil
		case !errors.As(err, &poison):
			return err
		}
		bad := live[poison.at]
		where := fmt.Sprintf("%s/%d@%d", bad.Topic, bad.Partition, bad.Offset)
		if p.set.policy == Stop {
			// Keep what came before it, so the projection stops exactly
			// at the poison event.
			if i := slices.Index(recs, bad); i > 0 {
				if err := p.process(ctx, pr, bindings, exactlyOnce, recs[:i], parked); err != nil {
					return err
				}
			}
			return fmt.Errorf("event %s at %s keeps failing: %w", header(bad, producer.HeaderType), where, poison.err)
		}
		pr.log.Error("interlock: parking a poison event in the dead-letter topic; its aggregate's later events wait behind it",
			"type", header(bad, producer.HeaderType), "aggregate_id", string(bad.Key), "at", where, "err", poison.err)
		if err := pr.park(ctx, bad, poison.err); err != nil {
			return errClosing
		}
		pr.observePark(bad, poison.err)
		parked[bad] = true
	}
}

// errGiveBack says a batch failed for a reason that is not its records'
// (the sink, or a handler's transient failure): the caller polls it
// again after a backoff.
var errGiveBack = errors.New("projections: batch given back")

// applyRetrying applies live in one unit of work with cps, retrying a
// failing handler p.set.retries times. A failing sink, or a handler's
// transient failure, gives the batch back (errGiveBack).
func (p *Projection[T]) applyRetrying(ctx context.Context, pr *Projector, bindings map[string]map[string]binding[T], live []*kgo.Record, cps []Checkpoint) error {
	wait, failures := p.set.backoff, 0
	for {
		failedAt := -1
		// A batch under way is finished, not cut short, when the
		// projection closes: its checkpoint keeps a successor that
		// started meanwhile from applying it twice.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.set.batchTimeout)
		err := p.sink.Apply(actx, p.name, cps, func(ctx context.Context, tx T) error {
			for i, r := range live {
				failedAt = i
				if err := p.apply(ctx, pr, tx, bindings, r); err != nil {
					return err
				}
			}
			failedAt = -1
			return nil
		})
		cancel()
		switch {
		case err == nil, errors.Is(err, ErrStale):
			return err
		case ctx.Err() != nil:
			return errClosing
		case failedAt >= 0 && !isTransient(err):
			if failures++; failures > p.set.retries {
				return &errPoison{at: failedAt, err: err}
			}
			pr.log.Warn("interlock: projection handler failed; retrying the batch", append([]any{"attempt", failures, "of", p.set.retries, "err", err}, stackAttr(err, failures)...)...)
		case failedAt >= 0:
			pr.log.Warn("interlock: projection handler failed, not for its event's fault; retrying the batch until it succeeds", "err", err)
			return errGiveBack
		default:
			pr.log.Error("interlock: projection sink failed; retrying the batch", "err", err)
			return errGiveBack
		}
		select {
		case <-ctx.Done():
			return errClosing
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// apply decodes r and runs its handler; events of types the projection
// does not follow are skipped.
func (p *Projection[T]) apply(ctx context.Context, pr *Projector, tx T, bindings map[string]map[string]binding[T], r *kgo.Record) error {
	if fn, ok := p.raw[r.Topic]; ok {
		if err := fn(ctx, tx, r); err != nil {
			return fmt.Errorf("record at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		return nil
	}
	name := header(r, producer.HeaderType)
	b, ok := bindings[r.Topic][name]
	ups := pr.cfg.Upcasters
	if !ok && (ups == nil || len(ups.Old(name)) == 0) {
		return nil // not followed
	}
	h, err := producer.ParseHeaders(r)
	if err != nil {
		return fmt.Errorf("event at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	var data any
	handle := b.handle
	if ups != nil {
		// Old events, of a type since changed or renamed, are upcast;
		// the handler is that of the type they end up as.
		var current schema.Decoder
		if ok {
			current = b.msg.Serde
		}
		data, err = ups.Decode(name, r.Value, current)
		if err == nil {
			if handle, ok = p.handlers[reflect.TypeOf(data).Elem()]; !ok {
				return nil
			}
		}
	} else {
		data, err = b.msg.Serde.Decode(r.Value)
	}
	if err != nil {
		err = fmt.Errorf("event %s at %s/%d@%d: %w", h.Type, r.Topic, r.Partition, r.Offset, err)
		if !errors.Is(err, schema.ErrDecode) && !errors.Is(err, schema.ErrUpcast) {
			return transient{err} // a registry out of reach: not the event's fault
		}
		return err
	}
	env := aggregate.EventEnvelope{
		EventID: h.EventID, AggregateType: h.AggregateType, AggregateID: h.Command.AggregateID,
		Type: h.Type, Version: h.Version, Time: h.Time, CommandID: h.Command.CommandID,
		CorrelationID: h.Command.CorrelationID, CausationID: h.Command.CausationID,
	}
	pos := producer.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	md := producer.Metadata(r)
	if o, ok := any(tx).(*Output); ok {
		o.begin(env, md)
	}
	if err := handle(ctx, tx, env, data, pos, md); err != nil {
		return fmt.Errorf("handling %s %s version %d: %w", h.Type, env.AggregateID, h.Version, err)
	}
	return nil
}

func header(r *kgo.Record, key string) string {
	v, _ := producer.Header(r, key)
	return string(v)
}

// checkpoints returns the position of each partition of recs after them.
func (pr *Projector) checkpoints(recs []*kgo.Record) []Checkpoint {
	idx := map[topicPartition]int{}
	var cps []Checkpoint
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for _, r := range recs {
		k := topicPartition{r.Topic, r.Partition}
		i, ok := idx[k]
		if !ok {
			prev, owned := pr.known[k]
			if !owned {
				prev = -1
			}
			i = len(cps)
			idx[k] = i
			cps = append(cps, Checkpoint{Topic: r.Topic, Partition: r.Partition, Prev: prev})
		}
		cps[i].Next = r.Offset + 1
	}
	return cps
}

// rewind moves the consumer back to the first of recs on each partition,
// to poll them again. It is called while the rebalance is held.
func (pr *Projector) rewind(recs []*kgo.Record) {
	set := map[string]map[int32]kgo.EpochOffset{}
	for _, r := range recs {
		if set[r.Topic] == nil {
			set[r.Topic] = map[int32]kgo.EpochOffset{}
		}
		if o, ok := set[r.Topic][r.Partition]; !ok || r.Offset < o.Offset {
			set[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
	}
	pr.cl.SetOffsets(set)
}

// reload reads the sink's checkpoints of the owned partitions again and
// moves the consumer to them.
func (pr *Projector) reload(ctx context.Context) {
	pr.mu.Lock()
	byTopic := map[string][]int32{}
	for k := range pr.known {
		byTopic[k.topic] = append(byTopic[k.topic], k.partition)
	}
	pr.mu.Unlock()
	set := map[string]map[int32]kgo.EpochOffset{}
	for topic, ps := range byTopic {
		stored, err := pr.remote(ctx, topic)
		if err != nil {
			pr.log.Error("interlock: reloading the projection's checkpoints", "topic", topic, "err", err)
			continue
		}
		set[topic] = map[int32]kgo.EpochOffset{}
		pr.mu.Lock()
		for _, p := range ps {
			next, ok := stored[p]
			if !ok {
				next = -1
			}
			pr.known[topicPartition{topic, p}] = next
			delete(pr.waiting, topicPartition{topic, p}) // polled again from there
			set[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: max(next, 0)}
		}
		pr.mu.Unlock()
	}
	pr.cl.SetOffsets(set)
}

// holds reports whether r's key (its aggregate) is held back: it has an
// event parked at or before r's offset.
func (pr *Projector) holds(r *kgo.Record) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	from, ok := pr.idx.heldFrom(string(r.Key))
	return ok && r.Offset >= from
}

// transient is a failure to read an event that is not the event's fault:
// it is retried without limit, never parked.
type transient struct{ error }

func (t transient) Unwrap() error { return t.error }

// Transient marks err, returned by a handler, as not the fault of the
// event or record it handled: a database, a service or a schema registry
// out of reach. The batch is tried again, with backoff, until the handler
// succeeds or the projection closes; the record is never parked, and the
// partition waits meanwhile. Any other handler error counts against the
// record: after the projection's retries (WithRetries) it is parked or
// stops the projection, as its policy says. An error that matches
// schema.ErrRegistryUnavailable (a schema.Serde's Decode while the
// registry does not answer) is transient without the mark.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transient{err}
}

// isTransient reports whether err is not its record's fault.
func isTransient(err error) bool {
	return errors.As(err, new(transient)) || errors.Is(err, schema.ErrRegistryUnavailable)
}
