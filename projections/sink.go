package projections

import (
	"context"
	"errors"
)

// Sink is where a projection writes, with T the handle its handlers get
// (a database transaction, a pipeline, a batch of records).
type Sink[T any] interface {
	// Apply runs fn once for a batch of events with a fresh T and makes
	// fn's writes durable when it returns nil. A sink that implements
	// Checkpointer stores cps in the same unit of work, all or nothing,
	// and fails with ErrStale (wrapped) when a checkpoint's Prev is not
	// what it holds. When Apply fails, none of fn's writes may remain.
	Apply(ctx context.Context, projection string, cps []Checkpoint, fn func(ctx context.Context, tx T) error) error
}

// Checkpointer is implemented by sinks that keep a projection's offsets
// with its read model, making it exactly once.
type Checkpointer interface {
	// Checkpoints returns the next offset to read of each partition of
	// topic the sink has a checkpoint for.
	Checkpoints(ctx context.Context, projection, topic string) (map[int32]int64, error)
}

// Setup is implemented by sinks that prepare their storage (tables, say)
// before a projection starts.
type Setup interface {
	Setup(ctx context.Context) error
}

// Checkpoint is a partition's position after a batch.
type Checkpoint struct {
	Topic     string
	Partition int32
	// Prev is the next offset the sink held before the batch, -1 when it
	// held none; Next is the offset after the batch's last record.
	Prev, Next int64
}

// ErrStale is returned (wrapped) by a Checkpointer's Apply when a
// checkpoint does not continue from the offset the sink holds: another
// instance applied the partition further. The batch is discarded and the
// projector reloads its position.
var ErrStale = errors.New("projections: stale checkpoint: another instance moved the partition on")

// Effects is the sink of side-effect processors (emails, HTTP calls): it
// has no transaction (handlers get a nil *struct{}), so it is at least
// once. Each event is its own batch, so a failing event repeats no other
// event's effect; a handler that keeps failing is retried with backoff,
// then handled by the projection's Policy (DeadLetter parks it). Effects
// must tolerate being run twice for one event (use the event ID as an
// idempotency key where the other side accepts one).
func Effects() Sink[*struct{}] { return effects{} }

type effects struct{}

func (effects) Apply(ctx context.Context, _ string, _ []Checkpoint, fn func(context.Context, *struct{}) error) error {
	return fn(ctx, nil)
}
