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
	// Behind is, when Lag shows events waiting on a partition this
	// instance owns, how long ago the last event it applied was written:
	// the lag in time. Zero otherwise.
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
// topics, as applied by any instance, and whether it has caught up (which
// takes up to a second to tell).
func (pr *Projector) Status(ctx context.Context) (Status, error) {
	st := Status{Name: pr.name, Err: pr.Err()}
	parts, err := pr.Lag(ctx)
	if err != nil {
		return st, err
	}
	st.Partitions = parts
	pending := map[string]map[int32]kgo.Offset{}
	for _, ps := range parts {
		st.Lag += ps.Lag
		if ps.Lag > 0 {
			if pending[ps.Topic] == nil {
				pending[ps.Topic] = map[int32]kgo.Offset{}
			}
			pending[ps.Topic][ps.Partition] = kgo.NewOffset().At(ps.Applied)
		}
	}
	st.CaughtUp, err = pr.nothingCommitted(ctx, pending)
	return st, err
}

// nothingCommitted reports whether no committed record lies at or after
// the given offsets: the lag the end offsets show is only transaction
// markers and aborted records.
func (pr *Projector) nothingCommitted(ctx context.Context, from map[string]map[int32]kgo.Offset) (bool, error) {
	if len(from) == 0 {
		return true, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), pr.cfg.ClientOpts...),
		kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(pctx)
		if fs.NumRecords() > 0 {
			return false, nil
		}
		if pctx.Err() != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return true, nil
		}
	}
}
