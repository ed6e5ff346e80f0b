// Package logread reads the committed records of a topic between offsets,
// as the bench and the tests check what was written: read_committed, up
// to ends listed beforehand, past transactions aborted after the listing.
package logread

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Range reads topic with a new client of opts, read_committed, from the
// offsets in from (0 when missing) up to those in to, and calls fn for
// each record below its partition's end, control records included, in
// offset order per partition; onErr, when not nil, for each fetch error.
// It returns once every partition is read to its end, or ctx's error
// naming those that are not. A partition whose last records below its
// end belong to a transaction aborted after the end was listed ends at
// the abort's marker: a read_committed reader never gets those records.
func Range(ctx context.Context, opts []kgo.Opt, topic string, from, to map[int32]int64, fn func(*kgo.Record), onErr func(partition int32, err error)) error {
	want := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	for p, end := range to {
		if end > from[p] {
			want[p] = end
			offsets[p] = kgo.NewOffset().At(from[p])
		}
	}
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(slices.Concat(opts, []kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // to see where each partition ends
	})...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("partitions %v of %s not read to their end: %w", slices.Sorted(maps.Keys(want)), topic, err)
		}
		if onErr != nil {
			fs.EachError(func(_ string, p int32, err error) { onErr(p, err) })
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok {
				return
			}
			if r.Offset < end {
				fn(r)
			}
			if r.Offset+1 >= end { // any record at or past the end closes it
				delete(want, r.Partition)
			}
		})
	}
	return nil
}
