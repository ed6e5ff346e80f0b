// Package postgres is the exactly-once PostgreSQL sink of projections:
// each batch's read-model changes and the projection's offsets commit in
// one database transaction.
//
// Handlers get the batch's pgx.Tx:
//
//	balances := projections.New("balances", postgres.NewSink(pool))
//	projections.On(balances, func(ctx context.Context, tx pgx.Tx, e projections.Event[bank.MoneyDeposited]) error {
//		_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $2 WHERE id = $1`, e.AggregateID.String(), e.Data.Amount)
//		return err
//	})
//
// Offsets live in the table interlock_checkpoints (projection, topic,
// partition, next_offset), created by Setup when missing. A batch's
// checkpoint names the offset it continues from and the update is a
// compare-and-set, so a projector that lost its partition to another
// instance cannot commit a batch twice: its transaction is rolled back
// with projections.ErrStale.
package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/interlock-go/interlock/projections"
)

// Sink writes projections into PostgreSQL, exactly once.
type Sink struct {
	pool *pgxpool.Pool
}

// NewSink returns a sink on pool. The pool's search_path decides the
// schema of interlock_checkpoints.
func NewSink(pool *pgxpool.Pool) *Sink { return &Sink{pool: pool} }

var _ projections.Sink[pgx.Tx] = (*Sink)(nil)
var _ projections.Checkpointer = (*Sink)(nil)
var _ projections.Setup = (*Sink)(nil)
var _ projections.Resetter = (*Sink)(nil)

// Setup creates the checkpoints table when it is missing.
func (s *Sink) Setup(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS interlock_checkpoints (
	projection  text   NOT NULL,
	topic       text   NOT NULL,
	partition   int    NOT NULL,
	next_offset bigint NOT NULL,
	updated_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (projection, topic, partition)
)`)
	if err != nil {
		return fmt.Errorf("postgres sink: creating interlock_checkpoints: %w", err)
	}
	return nil
}

// Checkpoints returns the next offsets stored for projection's partitions
// of topic.
func (s *Sink) Checkpoints(ctx context.Context, projection, topic string) (map[int32]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT partition, next_offset FROM interlock_checkpoints WHERE projection = $1 AND topic = $2`, projection, topic)
	if err != nil {
		return nil, fmt.Errorf("postgres sink: reading checkpoints: %w", err)
	}
	out := map[int32]int64{}
	var p int32
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&p, &next}, func() error {
		out[p] = next
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres sink: reading checkpoints: %w", err)
	}
	return out, nil
}

// Apply runs fn and moves the checkpoints in one transaction.
func (s *Sink) Apply(ctx context.Context, projection string, cps []projections.Checkpoint, fn func(context.Context, pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, cp := range cps {
			if cp.Prev >= 0 && cp.Next <= cp.Prev {
				return fmt.Errorf("%w: %s/%d would move back from %d to %d", projections.ErrStale, cp.Topic, cp.Partition, cp.Prev, cp.Next)
			}
			var tag pgconn.CommandTag
			var err error
			if cp.Prev < 0 {
				tag, err = tx.Exec(ctx, `INSERT INTO interlock_checkpoints (projection, topic, partition, next_offset) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
					projection, cp.Topic, cp.Partition, cp.Next)
			} else {
				tag, err = tx.Exec(ctx, `UPDATE interlock_checkpoints SET next_offset = $5, updated_at = now() WHERE projection = $1 AND topic = $2 AND partition = $3 AND next_offset = $4`,
					projection, cp.Topic, cp.Partition, cp.Prev, cp.Next)
			}
			if err != nil {
				return fmt.Errorf("postgres sink: checkpoint of %s/%d: %w", cp.Topic, cp.Partition, err)
			}
			if tag.RowsAffected() != 1 {
				return fmt.Errorf("%w: %s/%d no longer at offset %d", projections.ErrStale, cp.Topic, cp.Partition, cp.Prev)
			}
		}
		return fn(ctx, tx)
	})
}

// Reset deletes projection's checkpoints. Wrap the sink to also clear the
// read model's tables (see examples/bank).
func (s *Sink) Reset(ctx context.Context, projection string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM interlock_checkpoints WHERE projection = $1`, projection); err != nil {
		return fmt.Errorf("postgres sink: deleting checkpoints: %w", err)
	}
	return nil
}
