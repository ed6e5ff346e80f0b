package interlock_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/projections/postgres"
	"github.com/interlock-go/interlock/snapshot"
)

type Account struct{ Balance int64 }

type Balance struct{ Balance int64 }

type DepositMoney struct {
	interlock.CommandOf[Balance]
	Amount int64 `avro:"amount"`
}

type MoneyDeposited struct {
	Amount int64 `avro:"amount"`
}

func depositMoney(a *aggregate.Root[Account], c DepositMoney) (Balance, error) {
	if c.Amount <= 0 {
		return Balance{}, errors.New("amount must be positive")
	}
	a.Emit(MoneyDeposited{Amount: c.Amount})
	return Balance{a.State().Balance}, nil
}

func moneyDeposited(s *Account, e MoneyDeposited) { s.Balance += e.Amount }

// The seed's quick example: an aggregate, a command with a typed result, a
// rejection. With no brokers the application runs an embedded Kafka.
func Example() {
	accounts := aggregate.Define[Account]("account",
		aggregate.HandleResult(depositMoney),
		aggregate.Apply(moneyDeposited),
	)
	app, err := interlock.NewBuilder(interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))).
		RegisterAggregate(accounts).
		Build()
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer app.Close(ctx)

	id := interlock.NewID()
	res, err := interlock.Dispatch(ctx, app, DepositMoney{CommandOf: interlock.ToResult[Balance](id), Amount: 100})
	if err != nil {
		panic(err)
	}
	fmt.Println("balance", res.Value.Balance, "version", res.Version)

	_, err = interlock.Dispatch(ctx, app, DepositMoney{CommandOf: interlock.ToResult[Balance](id), Amount: -5})
	fmt.Println(errors.Is(err, interlock.ErrRejected), err)
	// Output:
	// balance 100 version 1
	// true command rejected: amount must be positive
}

// Middleware: a fraud check of your own in the processor, logging on both
// sides, and expected-version conflicts retried by the dispatcher after
// deciding again.
func ExampleBuilder_Use() {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	fraud := middleware.For(func(ctx context.Context, c bank.WithdrawMoney, m *middleware.Message, next middleware.Handler) (middleware.Outcome, error) {
		if c.Amount > 10_000 {
			return middleware.Outcome{}, aggregate.Reject(errors.New("fraud check: amount over 10 000"))
		}
		return next(ctx, m)
	})
	reloadWithdrawal := func(ctx context.Context, c bank.WithdrawMoney, conflict *aggregate.ConcurrencyError) (bank.WithdrawMoney, error) {
		c.CommandOf = c.CommandOf.Expect(conflict.Actual) // read again, decide again
		return c, nil
	}
	app, err := interlock.NewBuilder(interlock.WithLogger(logger)).
		RegisterAggregate(bank.Accounts()).
		Use(middleware.Logging(logger)). // both sides
		UseHandle(fraud).                // in the processor, before the handler
		UseDispatch(middleware.RetryConflicts(middleware.Backoff{Attempts: 3}, reloadWithdrawal)).
		Build()
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer app.Close(ctx)

	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
		panic(err)
	}
	if _, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 50_000}); err != nil {
		panic(err)
	}
	_, err = interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 20_000})
	fmt.Println(err)
	// Expects version 1, but the deposit made it 2: rejected with
	// ErrConcurrency, reloaded, sent again.
	res, err := interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](id).Expect(1), Amount: 100})
	fmt.Println(res.Value.Balance, res.Version, err)
	// Output:
	// command rejected: fraud check: amount over 10 000
	// 49900 3 <nil>
}

// Redis snapshots, a bounded in-memory cache and a snapshot strategy.
// Compiled, not run: it needs Kafka and Redis.
func ExampleWithSnapshotStore() {
	ctx := context.Background()
	store, err := snapshot.NewRedis(ctx, snapshot.RedisConfig{
		URL:       "rediss://interlock@redis:6379/0", // TLS, ACL user
		Password:  os.Getenv("REDIS_PASSWORD"),
		KeyPrefix: "bank",
	})
	if err != nil {
		panic(err)
	}
	app, err := interlock.NewBuilder(
		interlock.WithBrokers("kafka:9092"),
		interlock.WithSnapshotStore(store),
		interlock.WithCache(100_000, 512<<20), // aggregates, bytes
		interlock.WithFlushInterval(5*time.Second),
	).RegisterAggregate(bank.Accounts(), interlock.Snapshots(snapshot.EveryN(100))).Build()
	if err != nil {
		panic(err)
	}
	if err := app.Run(ctx); err != nil {
		panic(err)
	}
}

// A projection keeping balances in PostgreSQL, exactly once, that answers
// a query; Ask with After reads the caller's own writes. Compiled, not
// run: it needs Kafka and PostgreSQL (examples/bank's Balances is the
// whole read model).
func ExampleAsk() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	balances := projections.New("balances", postgres.NewSink(pool))
	projections.On(balances, func(ctx context.Context, tx pgx.Tx, e projections.Event[bank.MoneyDeposited]) error {
		_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $2 WHERE id = $1`, e.AggregateID.String(), e.Data.Amount)
		return err
	})
	projections.Answer(balances, func(ctx context.Context, q bank.BalanceOf) (bank.AccountBalance, error) {
		var b bank.AccountBalance
		err := pool.QueryRow(ctx, `SELECT owner, balance FROM balances WHERE id = $1`, q.ID.String()).Scan(&b.Owner, &b.Balance)
		return b, err
	})

	app, err := interlock.NewBuilder(interlock.WithBrokers("kafka:9092")).
		RegisterAggregate(bank.Accounts()).
		RegisterProjection(balances).
		Build()
	if err != nil {
		panic(err)
	}
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer app.Close(ctx)

	id := interlock.NewID()
	res, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 100})
	if err != nil {
		panic(err)
	}
	// Read your writes: wait until the projection has applied the deposit's events.
	b, err := interlock.Ask(ctx, app, bank.BalanceOf{QueryOf: interlock.After[bank.AccountBalance](res.Positions), ID: id})
	fmt.Println(b.Balance, err)
}
