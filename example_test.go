package interlock_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
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
