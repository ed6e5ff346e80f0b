package consumer

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
)

// restore rebuilds the aggregates of the given partitions from their events
// partitions: every committed event up to the end the partition had when the
// restore began. A previous owner's open transaction below that end makes
// the restore wait until the transaction commits or aborts.
func (p *Processor) restore(ctx context.Context, parts []*partition) error {
	if len(parts) == 0 {
		return nil
	}
	started := time.Now()
	topics := map[string]bool{}
	for _, part := range parts {
		topics[part.route.EventsTopic] = true
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	ends, err := kadm.NewClient(p.sess.Client()).ListEndOffsets(ctx, names...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("listing the end of events partitions: %w", err)
	}

	type target struct {
		part *partition
		end  int64
		aggs map[ulid.ULID]*aggregate.Instance
		bad  map[ulid.ULID]error
		n    int
	}
	targets := map[topicPartition]*target{}
	consume := map[string]map[int32]kgo.Offset{}
	for _, part := range parts {
		end, _ := ends.Lookup(part.route.EventsTopic, part.id)
		t := &target{part: part, end: end.Offset, aggs: map[ulid.ULID]*aggregate.Instance{}, bad: map[ulid.ULID]error{}}
		if end.Offset > 0 {
			targets[topicPartition{part.route.EventsTopic, part.id}] = t
			if consume[part.route.EventsTopic] == nil {
				consume[part.route.EventsTopic] = map[int32]kgo.Offset{}
			}
			consume[part.route.EventsTopic][part.id] = kgo.NewOffset().AtStart()
		}
		part.aggs, part.broken = t.aggs, t.bad
	}
	if len(targets) > 0 {
		cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), p.cfg.ClientOpts...),
			kgo.ConsumePartitions(consume),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.KeepControlRecords(), // to see where a partition ends
			kgo.FetchMaxWait(200*time.Millisecond),
		)...)
		if err != nil {
			return fmt.Errorf("replay client: %w", err)
		}
		defer cl.Close()
		stall := p.cfg.TransactionTimeout * 3
		lastProgress := time.Now()
		for len(targets) > 0 {
			pollCtx, cancel := context.WithTimeout(ctx, time.Second)
			fs := cl.PollFetches(pollCtx)
			cancel()
			progressed := false
			fs.EachError(func(t string, part int32, err error) {
				if err != context.DeadlineExceeded {
					p.log.Warn("interlock: replaying events", "topic", t, "partition", part, "err", err)
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				t := targets[topicPartition{r.Topic, r.Partition}]
				if t == nil || r.Offset >= t.end {
					return
				}
				progressed = true
				if !r.Attrs.IsControl() {
					t.n++
					p.replay(t.part.route, r, t.aggs, t.bad)
				}
				if r.Offset+1 >= t.end {
					delete(targets, topicPartition{r.Topic, r.Partition})
				}
			})
			if progressed {
				lastProgress = time.Now()
			} else if time.Since(lastProgress) > stall {
				for k, t := range targets {
					return fmt.Errorf("events %s/%d: no progress past the committed records for %v (end %d): is a transaction of a previous owner still open?", k.topic, k.partition, stall, t.end)
				}
			}
		}
	}
	for _, part := range parts {
		part.restored = true
		p.log.Info("interlock: partition restored", "aggregate", part.route.Type.Name(), "partition", part.id, "aggregates", len(part.aggs), "took", time.Since(started).Round(time.Millisecond))
	}
	return nil
}

// replay folds one event record into the aggregates being rebuilt. An event
// that cannot be decoded or applied marks its aggregate broken rather than
// leaving it with a state that is not the fold of its events.
func (p *Processor) replay(route *producer.Route, r *kgo.Record, aggs map[ulid.ULID]*aggregate.Instance, bad map[ulid.ULID]error) {
	h, err := producer.ParseHeaders(r)
	if err != nil {
		p.log.Error("interlock: unreadable event record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	id := h.Command.AggregateID
	if bad[id] != nil {
		return
	}
	fail := func(err error) {
		err = fmt.Errorf("event at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		p.log.Error("interlock: aggregate cannot be rebuilt; its commands will be rejected", "aggregate", route.Type.Name(), "aggregate_id", id, "err", err)
		bad[id] = err
		delete(aggs, id)
	}
	inst, ok := aggs[id]
	if !ok {
		inst = route.Type.New(id)
		aggs[id] = inst
	}
	if h.Version != inst.Version+1 {
		fail(fmt.Errorf("version %d follows version %d", h.Version, inst.Version))
		return
	}
	msg, ok := route.Event(h.Type)
	if !ok {
		fail(fmt.Errorf("unknown event type %q", h.Type))
		return
	}
	ptr, err := msg.Serde.Decode(r.Value)
	if err != nil {
		fail(err)
		return
	}
	if err := route.Type.Apply(inst, reflect.ValueOf(ptr).Elem().Interface()); err != nil {
		fail(err)
	}
}
