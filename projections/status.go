package projections

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// PartitionStatus is a projection's progress on one partition.
type PartitionStatus struct {
	Topic     string
	Partition int32
	// Applied is the offset after the last event the projection applied
	// (by any instance), 0 when none; End is the partition's last stable
	// offset, where read_committed readers stop.
	Applied, End int64
	// Lag is End - Applied: records, aborted ones and transaction markers
	// included (a caught-up partition shows 0, or 1 after a transaction).
	Lag int64
	// Behind is the lag in time: while committed events wait, how long
	// ago the last event applied was written (the first waiting one, when
	// none was applied). Zero otherwise. Status tells it on every
	// partition; Lag (read at every metrics scrape) only on the
	// partitions this instance owns.
	Behind time.Duration
}

// Status is a projection's progress.
type Status struct {
	Name       string
	Partitions []PartitionStatus
	// Lag is the sum of the partitions' lags.
	Lag int64
	// CaughtUp is true when no committed event is left to apply.
	CaughtUp bool
	// Err is why the projection stopped, when it did (this instance).
	Err error
}

// Lag reports the projection's progress on every partition of its topics,
// as applied by any instance; Behind is known for the partitions this
// instance owns.
func (pr *Projector) Lag(ctx context.Context) ([]PartitionStatus, error) {
	ends, err := kadm.NewClient(pr.dlq).ListCommittedOffsets(ctx, pr.topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("projection %q: end offsets: %w", pr.name, err)
	}
	var out []PartitionStatus
	now := time.Now()
	for _, topic := range pr.topics {
		applied, err := pr.remote(ctx, topic)
		if err != nil {
			return nil, fmt.Errorf("projection %q: progress on %s: %w", pr.name, topic, err)
		}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Topic != topic {
				return
			}
			ps := PartitionStatus{Topic: topic, Partition: o.Partition, Applied: applied[o.Partition], End: o.Offset}
			ps.Lag = max(0, ps.End-ps.Applied)
			pr.mu.Lock()
			if at, ok := pr.appliedAt[topicPartition{topic, o.Partition}]; ok && ps.Lag > 1 && pr.owned[topicPartition{topic, o.Partition}] {
				ps.Behind = now.Sub(at)
			}
			pr.mu.Unlock()
			out = append(out, ps)
		})
	}
	slices.SortFunc(out, func(a, b PartitionStatus) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out, nil
}

// Status reports the projection's progress on every partition of its
// topics, as applied by any instance, whether it has caught up, and, on
// every partition where committed events wait, how far behind it is in
// time (Behind), also on an instance that does not run it. Telling takes
// up to a second.
func (pr *Projector) Status(ctx context.Context) (Status, error) {
	st := Status{Name: pr.name, Err: pr.Err()}
	parts, err := pr.Lag(ctx)
	if err != nil {
		return st, err
	}
	st.Partitions = parts
	var pending []PartitionStatus
	for _, ps := range parts {
		st.Lag += ps.Lag
		if ps.Lag > 0 {
			pending = append(pending, ps)
		}
	}
	behind, err := pr.waiting(ctx, pending)
	if err != nil {
		return st, err
	}
	st.CaughtUp = len(behind) == 0
	for i, ps := range st.Partitions {
		st.Partitions[i].Behind = behind[topicPartition{ps.Topic, ps.Partition}]
	}
	return st, nil
}

// waiting reads the partitions of parts from the last event applied on
// each, and returns, for those where a committed record lies at or after
// Applied, how long ago the last event applied was written (the first
// waiting one, when none was applied or it is unreadable). The lag the end
// offsets show on the other partitions is only transaction markers and
// aborted records.
func (pr *Projector) waiting(ctx context.Context, parts []PartitionStatus) (map[topicPartition]time.Duration, error) {
	out := map[topicPartition]time.Duration{}
	if len(parts) == 0 {
		return out, nil
	}
	from := map[string]map[int32]kgo.Offset{}
	applied := map[topicPartition]int64{}
	for _, ps := range parts {
		if from[ps.Topic] == nil {
			from[ps.Topic] = map[int32]kgo.Offset{}
		}
		from[ps.Topic][ps.Partition] = kgo.NewOffset().At(max(ps.Applied-1, 0))
		applied[topicPartition{ps.Topic, ps.Partition}] = ps.Applied
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), pr.cfg.ClientOpts...),
		kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	last := map[topicPartition]time.Time{} // the last event applied, when read
	for len(applied) > 0 {
		fs := cl.PollFetches(pctx)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			k := topicPartition{r.Topic, r.Partition}
			next, open := applied[k]
			switch {
			case !open:
			case r.Offset < next:
				last[k] = r.Timestamp
			default:
				at, ok := last[k]
				if !ok {
					at = r.Timestamp
				}
				out[k] = max(now.Sub(at), time.Nanosecond)
				delete(applied, k)
			}
		})
		if pctx.Err() != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			break
		}
	}
	return out, nil
}
