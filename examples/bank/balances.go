package bank

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/projections/postgres"
)

// BalanceOf asks for an account's balance as the balances read model has
// it. Embed projections.After(res.Positions) to read your own writes.
type BalanceOf struct {
	projections.QueryOf[AccountBalance]
	ID ulid.ULID
}

// AccountBalance is a row of the balances read model.
type AccountBalance struct {
	Owner   string
	Balance int64
	// Events counts the account's events applied to the row: a row
	// counted twice would show it.
	Events int64
}

// ErrNoAccount answers BalanceOf for an account the read model does not
// have.
var ErrNoAccount = errors.New("no such account")

// Balances returns the balances read model: a PostgreSQL table
// bank_balances (id, owner, balance, events) kept exactly once by a
// projection named name, which also answers BalanceOf.
func Balances(name string, pool *pgxpool.Pool, opts ...projections.Option) *projections.Projection[pgx.Tx] {
	p := projections.New(name, &tableSink{postgres.NewSink(pool), pool}, opts...)
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[AccountOpened]) error {
		_, err := tx.Exec(ctx, `INSERT INTO bank_balances (id, owner, balance, events) VALUES ($1, $2, 0, 1)`, e.AggregateID.String(), e.Data.Owner)
		return err
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[MoneyDeposited]) error {
		return add(ctx, tx, e.AggregateID, e.Data.Amount)
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[MoneyWithdrawn]) error {
		return add(ctx, tx, e.AggregateID, -e.Data.Amount)
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[TransferDebited]) error {
		return add(ctx, tx, e.AggregateID, -e.Data.Amount)
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[TransferCredited]) error {
		return add(ctx, tx, e.AggregateID, e.Data.Amount)
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[TransferRefunded]) error {
		return add(ctx, tx, e.AggregateID, e.Data.Amount)
	})
	projections.Answer(p, func(ctx context.Context, q BalanceOf) (AccountBalance, error) {
		var b AccountBalance
		err := pool.QueryRow(ctx, `SELECT owner, balance, events FROM bank_balances WHERE id = $1`, q.ID.String()).Scan(&b.Owner, &b.Balance, &b.Events)
		if errors.Is(err, pgx.ErrNoRows) {
			return b, fmt.Errorf("%w: %s", ErrNoAccount, q.ID)
		}
		return b, err
	})
	return p
}

func add(ctx context.Context, tx pgx.Tx, id ulid.ULID, amount int64) error {
	tag, err := tx.Exec(ctx, `UPDATE bank_balances SET balance = balance + $2, events = events + 1 WHERE id = $1`, id.String(), amount)
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("account %s has no row", id)
	}
	return err
}

// tableSink is the PostgreSQL sink that also creates the read model's
// table.
type tableSink struct {
	*postgres.Sink
	pool *pgxpool.Pool
}

func (s *tableSink) Setup(ctx context.Context) error {
	if err := s.Sink.Setup(ctx); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bank_balances (
	id      text   PRIMARY KEY,
	owner   text   NOT NULL,
	balance bigint NOT NULL,
	events  bigint NOT NULL
)`)
	return err
}

// Reset forgets the projection: its checkpoints and the table's rows.
func (s *tableSink) Reset(ctx context.Context, projection string) error {
	if err := s.Sink.Reset(ctx, projection); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `TRUNCATE bank_balances`)
	return err
}
