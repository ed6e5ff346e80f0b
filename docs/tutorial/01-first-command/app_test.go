package bank_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	bank "github.com/interlock-go/interlock/docs/tutorial/01-first-command"
)

func TestOpenAccountOnKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app, err := interlock.NewBuilder(testOptions(t)...).
		RegisterAggregate(bank.Accounts()).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())

	id := interlock.NewID()
	res, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: aggregate.To(id), Owner: "Ada", Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 1 {
		t.Errorf("version %d after the first command, want 1", res.Version)
	}

	// The second OpenAccount comes back rejected, with the reason, and
	// matches the error the aggregate declared.
	_, err = interlock.Dispatch(ctx, app, bank.OpenAccount{Command: aggregate.To(id), Owner: "Bob", Email: "bob@example.com"})
	var rejected *interlock.RejectedError
	if !errors.As(err, &rejected) || rejected.Reason != "account already open" || !errors.Is(err, bank.ErrAlreadyOpen) {
		t.Fatalf("second open: %v, want a rejection: account already open", err)
	}

	// The events topic is the truth: fold it back into the account.
	acct, err := app.LoadAggregate(ctx, "account", id)
	if err != nil {
		t.Fatal(err)
	}
	want := bank.Account{Owner: "Ada", Email: "ada@example.com", Open: true}
	if got := *acct.State.(*bank.Account); got != want || acct.Version != 1 {
		t.Errorf("the log says %+v at version %d, want %+v at version 1", got, acct.Version, want)
	}
}
