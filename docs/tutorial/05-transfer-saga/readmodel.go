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

// AccountView is an account as the read model has it.
type AccountView struct {
	ID      string
	Owner   string
	Email   string
	Balance int64
}

// BalanceOf asks for the account with this ID.
type BalanceOf struct {
	projections.QueryOf[AccountView]
	ID ulid.ULID
}

// AccountByEmail asks for the account opened with this email address.
type AccountByEmail struct {
	projections.QueryOf[AccountView]
	Email string
}

// ErrNoAccount answers a query about an account the read model does not
// have.
var ErrNoAccount = errors.New("no such account")

// ReadModel returns the projection "accounts": two PostgreSQL tables kept
// from the accounts' events, exactly once, and the answers to BalanceOf
// and AccountByEmail.
func ReadModel(pool *pgxpool.Pool) *projections.Projection[pgx.Tx] {
	p := projections.New("accounts", &tables{Sink: postgres.NewSink(pool), pool: pool})

	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[AccountOpened]) error {
		id := e.AggregateID.String()
		if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, owner, email, balance) VALUES ($1, $2, $3, 0)`,
			id, e.Data.Owner, e.Data.Email); err != nil {
			return err
		}
		// The first account opened with an email keeps it.
		_, err := tx.Exec(ctx, `INSERT INTO account_emails (email, id) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING`,
			e.Data.Email, id)
		return err
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[MoneyDeposited]) error {
		return addToBalance(ctx, tx, e.AggregateID, e.Data.Amount)
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[MoneyWithdrawn]) error {
		return addToBalance(ctx, tx, e.AggregateID, -e.Data.Amount)
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[TransferDebited]) error {
		return addToBalance(ctx, tx, e.AggregateID, -e.Data.Amount)
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[TransferCredited]) error {
		return addToBalance(ctx, tx, e.AggregateID, e.Data.Amount)
	})
	projections.On(p, func(ctx context.Context, tx pgx.Tx, e projections.Event[TransferRefunded]) error {
		return addToBalance(ctx, tx, e.AggregateID, e.Data.Amount)
	})

	projections.Answer(p, func(ctx context.Context, q BalanceOf) (AccountView, error) {
		return account(ctx, pool, `SELECT id, owner, email, balance FROM accounts WHERE id = $1`, q.ID.String())
	})
	projections.Answer(p, func(ctx context.Context, q AccountByEmail) (AccountView, error) {
		return account(ctx, pool, `SELECT a.id, a.owner, a.email, a.balance
			FROM account_emails e JOIN accounts a ON a.id = e.id WHERE e.email = $1`, q.Email)
	})
	return p
}

func addToBalance(ctx context.Context, tx pgx.Tx, id ulid.ULID, amount int64) error {
	tag, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance + $2 WHERE id = $1`, id.String(), amount)
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("account %s has no row", id)
	}
	return err
}

func account(ctx context.Context, pool *pgxpool.Pool, query string, arg string) (AccountView, error) {
	var a AccountView
	err := pool.QueryRow(ctx, query, arg).Scan(&a.ID, &a.Owner, &a.Email, &a.Balance)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("%w: %s", ErrNoAccount, arg)
	}
	return a, err
}

// CreateTables creates the read model's tables when they are missing.
func CreateTables(ctx context.Context, db *pgxpool.Pool) error {
	_, err := db.Exec(ctx, `
CREATE TABLE IF NOT EXISTS accounts (
	id      text   PRIMARY KEY,
	owner   text   NOT NULL,
	email   text   NOT NULL,
	balance bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS account_emails (
	email text PRIMARY KEY,
	id    text NOT NULL
)`)
	return err
}

// tables is the PostgreSQL sink, plus the read model's own tables: the
// projection calls Setup before it starts, and Reset when it is rebuilt
// from the start of the log.
type tables struct {
	*postgres.Sink
	pool *pgxpool.Pool
}

// Setup creates the sink's checkpoints table and the read model's tables.
func (s *tables) Setup(ctx context.Context) error {
	if err := s.Sink.Setup(ctx); err != nil {
		return err
	}
	return CreateTables(ctx, s.pool)
}

// Reset forgets the projection's checkpoints and empties its tables.
func (s *tables) Reset(ctx context.Context, projection string) error {
	if err := s.Sink.Reset(ctx, projection); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `TRUNCATE accounts, account_emails`)
	return err
}
