// Package snapshot is Interlock's snapshot cache: where a processor keeps
// the state of aggregates so that taking over a partition does not replay
// its whole history.
//
// The events topic is the source of truth; a Store is only a cache. Per
// events partition p a watermark W(p) says: every aggregate's snapshot
// reflects all its events below offset W(p). A new owner of p claims it
// (getting a fencing token greater than every earlier owner's), replays the
// events from W(p) only, and loads the snapshots of the aggregates it needs.
// Snapshots are written after the transaction that produced their events
// commits, and W(p) advances only once everything below it is stored.
// A store that lost its data (Redis flushed or restarted) is noticed by its
// missing watermark or token, and the partition is rebuilt from the log:
// losing the store loses time, never data.
//
// Two stores pass the one conformance suite in package snapshot/storetest:
// Memory, in-process, and Redis.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// Partition names one events partition.
type Partition struct {
	// Topic is the events topic.
	Topic string
	// ID is the partition number.
	ID int32
}

// String returns "topic/id".
func (p Partition) String() string { return fmt.Sprintf("%s/%d", p.Topic, p.ID) }

// Snapshot is one aggregate's state as of one of its versions.
type Snapshot struct {
	// AggregateID is the aggregate whose state this is.
	AggregateID ulid.ULID
	// Version is the aggregate version the state reflects.
	Version int64
	// Offset is the events-partition offset of the event that brought the
	// aggregate to Version.
	Offset int64
	// Fingerprint identifies the state's Go type and encoding: a snapshot
	// whose fingerprint differs from the running code's is ignored.
	Fingerprint uint64
	// State is the encoded state.
	State []byte
}

// Mark is a partition's ownership and watermark as a store holds them.
type Mark struct {
	// Token is the fencing token of the partition's current owner; 0 when
	// the store has none (never claimed, or its data was lost).
	Token int64
	// Watermark is W(p): every snapshot reflects all its aggregate's events
	// below this offset. Valid when HasWatermark.
	Watermark int64
	// HasWatermark reports whether the store holds a watermark for the
	// partition: false until the first Save after a claim, and after the
	// store lost its data.
	HasWatermark bool
}

// ErrFenced is returned by Save when the token is not the partition's
// current one: a newer owner claimed it (or the store lost the claim), and
// nothing was written.
var ErrFenced = errors.New("snapshot: fenced: the partition has another owner")

// Store keeps snapshots and watermarks. Implementations are safe for
// concurrent use; every method honours ctx's deadline.
type Store interface {
	// Claim makes the caller the owner of p. The returned Mark holds a
	// token greater than every token given for p before, also after the
	// store lost its data (tokens have a floor of the current time in
	// microseconds), and the watermark as it was.
	Claim(ctx context.Context, p Partition) (Mark, error)
	// Load returns the stored snapshots of ids (absent ids are missing from
	// the map) and p's Mark as it is now, read together, so the caller can
	// tell a store that lost data or changed owner from a missing snapshot.
	Load(ctx context.Context, p Partition, ids []ulid.ULID) (map[ulid.ULID]Snapshot, Mark, error)
	// Save stores snaps, then advances W(p) to watermark if that is higher
	// than the stored one (it never moves back). Each snapshot replaces the
	// stored one unless that has a higher version; an older one is skipped
	// without error. An equal version replaces: it is the same state,
	// unless the stored one is corrupt or of another state type, which the
	// owner's rewrite repairs. Nothing is written, and ErrFenced is
	// returned, unless token is p's current token.
	Save(ctx context.Context, p Partition, token int64, snaps []Snapshot, watermark int64) error
}

// Resetter is implemented by stores that can forget a partition, for its
// owner: its watermark and its snapshots, as when its events partition
// was deleted and created again (the processor finds the stored watermark
// past the partition's end). Reset writes nothing and returns ErrFenced
// unless token is p's current token; the token stays. A store without it
// keeps the old watermark, and a later owner, once the new partition has
// grown past it, would trust it: the processor logs that the store's keys
// of the partition must be deleted by hand.
type Resetter interface {
	Reset(ctx context.Context, p Partition, token int64) error
}

// Strategy says when an aggregate type's dirty state is written as a
// snapshot. Whatever the strategy, the processor also writes every dirty
// aggregate at least once per flush interval, so the watermark cannot lag
// forever; only Never opts out.
type Strategy struct {
	never  bool
	everyN int64
	after  time.Duration
}

// Never writes no snapshot: the aggregate type is always rebuilt from the
// log, and its partitions' watermarks stay below its first event.
func Never() Strategy { return Strategy{never: true} }

// EveryN writes a snapshot once n events were applied since the last one.
func EveryN(n int64) Strategy { return Strategy{everyN: max(n, 1)} }

// After writes a snapshot once the oldest event not in a snapshot is d old.
func After(d time.Duration) Strategy { return Strategy{after: d} }

// IsNever reports whether the strategy writes no snapshot.
func (s Strategy) IsNever() bool { return s.never }

// Due reports whether an aggregate with events events applied since its
// last snapshot, the first of them at first, must be written now.
func (s Strategy) Due(events int64, first, now time.Time) bool {
	switch {
	case s.never || events == 0:
		return false
	case s.everyN > 0:
		return events >= s.everyN
	case s.after > 0:
		return now.Sub(first) >= s.after
	}
	return false
}

// String describes the strategy, for logs.
func (s Strategy) String() string {
	switch {
	case s.never:
		return "never"
	case s.everyN > 0:
		return fmt.Sprintf("every %d events", s.everyN)
	case s.after > 0:
		return "after " + s.after.String()
	}
	return "at the flush interval"
}
