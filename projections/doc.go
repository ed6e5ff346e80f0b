// Package projections builds read models from the events topics: the read
// side of CQRS.
//
// A Projection is a name, a Sink and typed event handlers:
//
//	balances := projections.New("balances", postgres.NewSink(pool))
//	projections.On(balances, func(ctx context.Context, tx pgx.Tx, e projections.Event[bank.MoneyDeposited]) error {
//		_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $2 WHERE id = $1`, e.AggregateID.String(), e.Data.Amount)
//		return err
//	})
//	app, err := interlock.NewBuilder(...).RegisterAggregate(bank.Accounts()).RegisterProjection(balances).Build()
//
// The application runs each registered projection as a consumer group
// (<app>.projection.<name>) over the events topics of the aggregates that
// emit its event types, reading read_committed, so it sees committed events
// only, each aggregate's in order (an aggregate's events share a
// partition). Several projections run side by side in one process, each
// with its own group; partitions spread over the instances that run it.
//
// # Guarantees
//
// What a projection guarantees is its sink's:
//
//   - A sink that keeps checkpoints (it implements Checkpointer, like
//     package postgres's) is exactly once: each batch's read-model changes
//     and the next offsets of its partitions commit in one transaction of
//     the sink, and a projector assigned a partition starts from the
//     offset the sink stored, not from Kafka's. A checkpoint names the
//     offset it continues from, so a zombie instance that lost its
//     partition cannot commit a batch twice: the sink refuses it
//     (ErrStale).
//   - Any other sink is at least once: offsets are committed to Kafka after
//     the sink applied the batch; after a crash the batch is applied again,
//     so its writes must be idempotent, e.g. guarded by (aggregate ID,
//     version).
//
// # Poison events
//
// A handler error aborts the batch, which is retried with backoff
// (WithRetries). An error that is not the event's fault (Transient, or a
// schema registry that does not answer: schema.ErrRegistryUnavailable)
// is retried until it passes, never counted. When the retries are spent
// the projection's Policy
// decides: DeadLetter (the default; DESIGN.md's invariant 7: bad input
// never stops a partition) parks the event in the projection's
// dead-letter topic (<app>.<name>.dlq) and holds back the later events of
// the same aggregate, parked after it in order, while every other
// aggregate flows on; Stop halts the projection and reports the event.
// Every instance follows the dead-letter topic (read from its start at
// Start, then tailed), so a held aggregate stays held when its partition
// moves and across restarts, and an event parked twice counts once.
// Projector.Retry applies a key's parked events again, in order, on the
// instance that owns the key's partition, exactly once with an
// exactly-once sink, then releases the key. Each poison event parked is
// told, with the reason it is bad, to the ParkObservers of
// Config.Observers (package metrics counts them).
//
// # Read your writes
//
// Dispatch returns the positions of the events it wrote; WaitFor blocks
// until a projection has applied them, so a query right after a command
// sees its effect.
package projections
