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

// Status reports the projection's progress on every partition of its
// topics, as applied by any instance.
func (pr *Projector) Status(ctx context.Context) (Status, error) {
	st := Status{Name: pr.name, Err: pr.Err()}
	ends, err := kadm.NewClient(pr.dlq).ListCommittedOffsets(ctx, pr.topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return st, fmt.Errorf("projection %q: end offsets: %w", pr.name, err)
	}
	pending := map[string]map[int32]kgo.Offset{}
	for _, topic := range pr.topics {
		applied, err := pr.remote(ctx, topic)
		if err != nil {
			return st, fmt.Errorf("projection %q: progress on %s: %w", pr.name, topic, err)
		}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Topic != topic {
				return
			}
			ps := PartitionStatus{Topic: topic, Partition: o.Partition, Applied: applied[o.Partition], End: o.Offset}
			ps.Lag = max(0, ps.End-ps.Applied)
			st.Partitions = append(st.Partitions, ps)
			st.Lag += ps.Lag
			if ps.Lag > 0 {
				if pending[topic] == nil {
					pending[topic] = map[int32]kgo.Offset{}
				}
				pending[topic][o.Partition] = kgo.NewOffset().At(ps.Applied)
			}
		})
	}
	slices.SortFunc(st.Partitions, func(a, b PartitionStatus) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
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
