package bank_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	bank "github.com/interlock-go/interlock/docs/tutorial/02-events"
)

// start builds and starts an application, closed when the test ends.
func start(t *testing.T, b *interlock.Builder) *interlock.App {
	t.Helper()
	app, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close(context.Background()) })
	return app
}

func TestMoneyOnKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := start(t, interlock.NewBuilder(testOptions(t)...).RegisterAggregate(bank.Accounts()))

	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: aggregate.To(id), Owner: "Ada", Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	res, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Value.Balance != 100 || res.Version != 2 {
		t.Errorf("after the deposit: balance %d at version %d, want 100 at 2", res.Value.Balance, res.Version)
	}

	// Too much: rejected, and the reason says why.
	_, err = interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 500})
	if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), "insufficient funds") {
		t.Fatalf("withdrawing 500 of 100: %v, want a rejection for insufficient funds", err)
	}

	res, err = interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 30})
	if err != nil {
		t.Fatal(err)
	}
	if res.Value.Balance != 70 || res.Version != 3 {
		t.Errorf("after the withdrawal: balance %d at version %d, want 70 at 3", res.Value.Balance, res.Version)
	}
}

// TestRetryIsAppliedOnce: a command sent again with the same command ID
// (a retry after a timeout, say) is applied once, and the retry gets the
// first outcome.
func TestRetryIsAppliedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := start(t, interlock.NewBuilder(testOptions(t)...).RegisterAggregate(bank.Accounts()))

	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: aggregate.To(id), Owner: "Ada", Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	deposit := bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id).WithID(interlock.NewID()), Amount: 100}
	first, err := interlock.Dispatch(ctx, app, deposit)
	if err != nil {
		t.Fatal(err)
	}
	again, err := interlock.Dispatch(ctx, app, deposit)
	if err != nil {
		t.Fatal(err)
	}
	if again.Value.Balance != 100 || again.Version != first.Version {
		t.Errorf("the retry got balance %d at version %d, want the first outcome: 100 at %d", again.Value.Balance, again.Version, first.Version)
	}
}
