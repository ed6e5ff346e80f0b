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
	// Behind is the lag in time: how long the oldest committed event not
	// yet applied has waited since it was written; zero when none waits.
	// Status tells it on every partition; Lag (read at every metrics
	// scrape) only on the partitions this instance owns, once it has
	// polled the event.
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
			k := topicPartition{topic, o.Partition}
			if w := pr.waiting[k]; len(w) > 0 && pr.owned[k] {
				ps.Behind = max(now.Sub(w[0].Timestamp), time.Nanosecond)
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
	behind, err := pr.oldestWaiting(ctx, pending)
	if err != nil {
		return st, err
	}
	st.CaughtUp = len(behind) == 0
	for i, ps := range st.Partitions {
		st.Partitions[i].Behind = behind[topicPartition{ps.Topic, ps.Partition}]
	}
	return st, nil
}

// oldestWaiting reads the partitions of parts from the offset applied on each,
// and returns, for those where a committed record lies there or after, how
// long the first of them has waited since it was written. The lag the end
// offsets show on the other partitions is only transaction markers and
// aborted records.
func (pr *Projector) oldestWaiting(ctx context.Context, parts []PartitionStatus) (map[topicPartition]time.Duration, error) {
	out := map[topicPartition]time.Duration{}
	if len(parts) == 0 {
		return out, nil
	}
	from := map[string]map[int32]kgo.Offset{}
	for _, ps := range parts {
		if from[ps.Topic] == nil {
			from[ps.Topic] = map[int32]kgo.Offset{}
		}
		from[ps.Topic][ps.Partition] = kgo.NewOffset().At(ps.Applied)
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
	for len(out) < len(parts) {
		fs := cl.PollFetches(pctx)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			if k := (topicPartition{r.Topic, r.Partition}); out[k] == 0 {
				out[k] = max(now.Sub(r.Timestamp), time.Nanosecond)
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
