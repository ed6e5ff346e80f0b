package bank_test

import (
	"testing"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/aggregatetest"
	bank "github.com/interlock-go/interlock/docs/tutorial/03-read-model"
)

func TestOpenAccount(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())

	// A new account opens: one event, and the state it leads to.
	s.When(bank.OpenAccount{Owner: "Ada", Email: "ada@example.com"}).
		ThenEvents(bank.AccountOpened{Owner: "Ada", Email: "ada@example.com"}).
		ThenState(bank.Account{Owner: "Ada", Email: "ada@example.com", Open: true}).
		ThenVersion(1)

	// Bad input is rejected, and a rejection records nothing.
	s.When(bank.OpenAccount{Email: "ada@example.com"}).
		ThenRejected("owner is required").
		ThenVersion(0)
	s.When(bank.OpenAccount{Owner: "Ada", Email: "ada at example"}).
		ThenRejected("email is not valid")

	// An account opens once.
	s.Given(bank.AccountOpened{Owner: "Ada", Email: "ada@example.com"}).
		When(bank.OpenAccount{Owner: "Bob", Email: "bob@example.com"}).
		ThenRejected("account already open").
		ThenState(bank.Account{Owner: "Ada", Email: "ada@example.com", Open: true})
}

// opened is the history most tests start from: an account with 100 in it.
var opened = []any{
	bank.AccountOpened{Owner: "Ada", Email: "ada@example.com"},
	bank.MoneyDeposited{Amount: 100},
}

func TestDeposit(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())

	s.Given(opened...).
		When(bank.DepositMoney{Amount: 50}).
		ThenEvents(bank.MoneyDeposited{Amount: 50}).
		ThenResult(bank.Balance{Balance: 150}).
		ThenVersion(3)

	for _, amount := range []int64{0, -5} {
		s.Given(opened...).
			When(bank.DepositMoney{Amount: amount}).
			ThenRejected("amount must be positive").
			ThenError(bank.ErrBadAmount)
	}

	s.When(bank.DepositMoney{Amount: 50}).
		ThenRejected("account not open")
}

func TestWithdraw(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())

	s.Given(opened...).
		When(bank.WithdrawMoney{Amount: 100}).
		ThenEvents(bank.MoneyWithdrawn{Amount: 100}).
		ThenResult(bank.Balance{Balance: 0}).
		ThenState(bank.Account{Owner: "Ada", Email: "ada@example.com", Open: true, Balance: 0})

	s.Given(opened...).
		When(bank.WithdrawMoney{Amount: 101}).
		ThenRejected("insufficient funds: balance 100, withdrawal 101").
		ThenError(bank.ErrInsufficientFunds).
		ThenVersion(2)
}

func TestExpectedVersion(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())

	// The caller saw the account at version 1; it is at 2 now.
	s.Given(opened...).
		When(bank.WithdrawMoney{CommandOf: aggregate.ToResult[bank.Balance](s.ID()).Expect(1), Amount: 10}).
		ThenError(aggregate.ErrConcurrency)

	s.Given(opened...).
		When(bank.WithdrawMoney{CommandOf: aggregate.ToResult[bank.Balance](s.ID()).Expect(2), Amount: 10}).
		ThenResult(bank.Balance{Balance: 90})
}
