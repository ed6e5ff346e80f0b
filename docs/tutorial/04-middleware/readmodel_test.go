package bank_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	bank "github.com/interlock-go/interlock/docs/tutorial/04-middleware"
	"github.com/interlock-go/interlock/projections/projectionstest"
)

// TestReadModelHandlers runs the projection's handlers on a database
// transaction, without Kafka: given these events, the tables hold this.
func TestReadModelHandlers(t *testing.T) {
	ctx := context.Background()
	pool := testPool(t)
	if err := bank.CreateTables(ctx, pool); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)

	p := bank.ReadModel(pool)
	ada, eve := interlock.NewID(), interlock.NewID()
	projectionstest.Project(t, p, tx, ada,
		bank.AccountOpened{Owner: "Ada", Email: "ada@example.com"},
		bank.MoneyDeposited{Amount: 100},
		bank.MoneyWithdrawn{Amount: 30},
	)
	// A second account with the same email: it does not take the email.
	projectionstest.Project(t, p, tx, eve,
		bank.AccountOpened{Owner: "Eve", Email: "ada@example.com"},
	)

	var balance int64
	if err := tx.QueryRow(ctx, `SELECT balance FROM accounts WHERE id = $1`, ada.String()).Scan(&balance); err != nil || balance != 70 {
		t.Errorf("Ada's balance: %d (%v), want 70", balance, err)
	}
	var owner string
	if err := tx.QueryRow(ctx, `SELECT id FROM account_emails WHERE email = 'ada@example.com'`).Scan(&owner); err != nil || owner != ada.String() {
		t.Errorf("ada@example.com belongs to %s (%v), want Ada's account %s", owner, err, ada)
	}
}

func TestQueriesOnKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := start(t, interlock.NewBuilder(testOptions(t)...).
		RegisterAggregate(bank.Accounts()).
		RegisterProjection(bank.ReadModel(testPool(t))))

	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: aggregate.To(id), Owner: "Ada", Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	res, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 100})
	if err != nil {
		t.Fatal(err)
	}

	// Read your writes: answer once the deposit's events are in the read model.
	view, err := interlock.Ask(ctx, app, bank.BalanceOf{QueryOf: interlock.After[bank.AccountView](res.Positions), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	want := bank.AccountView{ID: id.String(), Owner: "Ada", Email: "ada@example.com", Balance: 100}
	if view != want {
		t.Errorf("BalanceOf: %+v, want %+v", view, want)
	}

	byEmail, err := interlock.Ask(ctx, app, bank.AccountByEmail{Email: "ada@example.com"})
	if err != nil || byEmail != want {
		t.Errorf("AccountByEmail: %+v (%v), want %+v", byEmail, err, want)
	}

	_, err = interlock.Ask(ctx, app, bank.AccountByEmail{Email: "nobody@example.com"})
	if !errors.Is(err, bank.ErrNoAccount) {
		t.Errorf("AccountByEmail of an unknown email: %v, want ErrNoAccount", err)
	}
}
