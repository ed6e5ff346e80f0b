package bank_test

import (
	"testing"

	"github.com/interlock-go/interlock/aggregatetest"
	bank "github.com/interlock-go/interlock/docs/tutorial/01-first-command"
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
