package bank_test

import (
	"testing"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/aggregatetest"
	"github.com/interlock-go/interlock/examples/bank"
)

func TestDefinition(t *testing.T) {
	d := bank.Accounts()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Name() != "bank-account" {
		t.Errorf("name %q", d.Name())
	}
	if n, m := len(d.Commands()), len(d.Events()); n != 6 || m != 8 {
		t.Errorf("%d commands, %d events; want 6 and 8", n, m)
	}
}

func TestOpen(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())
	s.When(bank.OpenAccount{Owner: "ada"}).
		ThenEvents(bank.AccountOpened{Owner: "ada"}).
		ThenState(bank.Account{Owner: "ada", Open: true}).
		ThenVersion(1)
	s.When(bank.OpenAccount{}).
		ThenRejected(bank.ErrNoOwner.Error())
	s.Given(bank.AccountOpened{Owner: "ada"}).
		When(bank.OpenAccount{Owner: "bob"}).
		ThenRejected("account already open").
		ThenState(bank.Account{Owner: "ada", Open: true})
}

func TestDeposit(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())
	s.Given(bank.AccountOpened{Owner: "ada"}, bank.MoneyDeposited{Amount: 100}).
		When(bank.DepositMoney{Amount: 50}).
		ThenEvents(bank.MoneyDeposited{Amount: 50}).
		ThenResult(bank.Balance{Balance: 150}).
		ThenState(bank.Account{Owner: "ada", Balance: 150, Open: true}).
		ThenVersion(3)
}

func TestDepositRejected(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())
	for _, amount := range []int64{0, -10} {
		s.Given(bank.AccountOpened{Owner: "ada"}).
			When(bank.DepositMoney{Amount: amount}).
			ThenRejected(bank.ErrInvalidAmount.Error()).
			ThenVersion(1)
	}
	s.When(bank.DepositMoney{Amount: 10}).
		ThenRejected("account not open").
		ThenState(bank.Account{}).
		ThenVersion(0)
}

func TestWithdraw(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())
	opened := []any{bank.AccountOpened{Owner: "ada"}, bank.MoneyDeposited{Amount: 100}}
	s.Given(opened...).
		When(bank.WithdrawMoney{Amount: 100}).
		ThenEvents(bank.MoneyWithdrawn{Amount: 100}).
		ThenResult(bank.Balance{Balance: 0}).
		ThenVersion(3)
	s.Given(opened...).
		When(bank.WithdrawMoney{Amount: 500}).
		ThenRejected("insufficient funds: balance 100, withdrawal 500").
		ThenError(bank.ErrInsufficientFunds).
		ThenState(bank.Account{Owner: "ada", Balance: 100, Open: true}).
		ThenVersion(2)
	s.Given(opened...).
		When(bank.WithdrawMoney{Amount: -1}).
		ThenRejected(bank.ErrInvalidAmount.Error())
	s.When(bank.WithdrawMoney{Amount: 1}).
		ThenRejected(bank.ErrNotOpen.Error())
}

func TestExpectedVersion(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())
	opened := []any{bank.AccountOpened{Owner: "ada"}, bank.MoneyDeposited{Amount: 100}}
	s.Given(opened...).
		When(bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](s.ID()).Expect(1), Amount: 5}).
		ThenError(aggregate.ErrConcurrency).
		ThenVersion(2)
	s.Given(opened...).
		When(bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](s.ID()).Expect(2), Amount: 5}).
		ThenEvents(bank.MoneyDeposited{Amount: 5}).
		ThenResult(bank.Balance{Balance: 105})
	s.When(bank.OpenAccount{Command: aggregate.To(s.ID()).Expect(0), Owner: "ada"}).
		ThenEvents(bank.AccountOpened{Owner: "ada"})
}
