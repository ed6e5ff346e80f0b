package bank_test

import (
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/aggregatetest"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/projections/projectionstest"
)

func TestTransferSagaSteps(t *testing.T) {
	tr, from, to := ulid.Make(), ulid.Make(), ulid.Make()
	s := projectionstest.Saga(t, bank.TransferSaga())
	s.When(tr, bank.TransferStarted{From: from.String(), To: to.String(), Amount: 10}).
		ThenSends(bank.DebitForTransfer{Command: aggregate.To(from), Transfer: tr.String(), To: to.String(), Amount: 10})
	s.When(from, bank.TransferDebited{Transfer: tr.String(), To: to.String(), Amount: 10}).
		ThenSends(bank.CreditForTransfer{Command: aggregate.To(to), Transfer: tr.String(), From: from.String(), Amount: 10})
	s.When(to, bank.TransferCredited{Transfer: tr.String(), Amount: 10}).
		ThenSends(bank.CompleteTransfer{Command: aggregate.To(tr)})
	// Compensation: the credit is refused, the debit refunded, the
	// transfer failed.
	s.When(to, bank.TransferCreditRefused{Transfer: tr.String(), From: from.String(), Amount: 10, Reason: "account not open"}).
		ThenSends(bank.RefundTransfer{Command: aggregate.To(from), Transfer: tr.String(), Amount: 10, Reason: "credit refused: account not open"})
	s.When(from, bank.TransferRefunded{Transfer: tr.String(), Amount: 10, Reason: "credit refused: account not open"}).
		ThenSends(bank.FailTransfer{Command: aggregate.To(tr), Reason: "credit refused: account not open; refunded"})
	s.When(from, bank.TransferDebitRefused{Transfer: tr.String(), Reason: "insufficient funds"}).
		ThenSends(bank.FailTransfer{Command: aggregate.To(tr), Reason: "debit refused: insufficient funds"})
	s.When(from, bank.MoneyDeposited{Amount: 5}).ThenSendsNothing()
	s.When(tr, bank.TransferStarted{From: "not an ID", To: to.String(), Amount: 1}).ThenFails("ulid")
}

func TestTransferAndAccounts(t *testing.T) {
	from, to := ulid.Make(), ulid.Make()
	tr := aggregatetest.For(t, bank.Transfers())
	tr.When(bank.StartTransfer{From: from, To: to, Amount: 10}).
		ThenEvents(bank.TransferStarted{From: from.String(), To: to.String(), Amount: 10})
	tr.When(bank.StartTransfer{From: from, To: from, Amount: 10}).ThenRejected(bank.ErrSameAccount.Error())
	tr.Given(bank.TransferStarted{From: from.String(), To: to.String(), Amount: 10}).
		When(bank.CompleteTransfer{}).ThenEvents(bank.TransferCompleted{}).
		ThenState(bank.Transfer{From: from.String(), To: to.String(), Amount: 10, Status: "completed"})
	tr.Given(bank.TransferStarted{From: from.String(), To: to.String(), Amount: 10}, bank.TransferCompleted{}).
		When(bank.FailTransfer{Reason: "late"}).ThenEvents() // a transfer ends once

	acc := aggregatetest.For(t, bank.Accounts())
	acc.Given(bank.AccountOpened{Owner: "ada"}, bank.MoneyDeposited{Amount: 5}).
		When(bank.DebitForTransfer{Transfer: "t", To: to.String(), Amount: 10}).
		ThenEvents(bank.TransferDebitRefused{Transfer: "t", Reason: bank.ErrInsufficientFunds.Error()})
	acc.Given(bank.AccountOpened{Owner: "ada"}, bank.MoneyDeposited{Amount: 50}).
		When(bank.DebitForTransfer{Transfer: "t", To: to.String(), Amount: 10}).
		ThenEvents(bank.TransferDebited{Transfer: "t", To: to.String(), Amount: 10}).
		ThenState(bank.Account{Owner: "ada", Balance: 40, Open: true})
	acc.When(bank.CreditForTransfer{Transfer: "t", From: from.String(), Amount: 10}).
		ThenEvents(bank.TransferCreditRefused{Transfer: "t", From: from.String(), Amount: 10, Reason: bank.ErrNotOpen.Error()})
}
