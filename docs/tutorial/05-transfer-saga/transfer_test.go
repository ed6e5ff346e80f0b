package bank_test

import (
	"context"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/aggregatetest"
	bank "github.com/interlock-go/interlock/docs/tutorial/05-transfer-saga"
	"github.com/interlock-go/interlock/projections/projectionstest"
)

func TestStartTransfer(t *testing.T) {
	s := aggregatetest.For(t, bank.Transfers())
	from, to := interlock.NewID(), interlock.NewID()

	s.When(bank.StartTransfer{From: from, To: to, Amount: 30}).
		ThenEvents(bank.TransferStarted{From: from.String(), To: to.String(), Amount: 30}).
		ThenState(bank.Transfer{From: from.String(), To: to.String(), Amount: 30, Status: "started"})
	s.When(bank.StartTransfer{From: from, To: from, Amount: 30}).ThenRejected("same account")
	s.When(bank.StartTransfer{From: from, Amount: 30}).ThenRejected("both accounts are required")
	s.When(bank.StartTransfer{From: from, To: to}).ThenRejected("amount must be positive")

	// A transfer ends once: a second ending, sent again by the saga
	// after a crash, changes nothing.
	s.Given(bank.TransferStarted{From: from.String(), To: to.String(), Amount: 30}, bank.TransferCompleted{}).
		When(bank.FailTransfer{Reason: "late"}).
		ThenEvents().
		ThenState(bank.Transfer{From: from.String(), To: to.String(), Amount: 30, Status: "completed"})
}

func TestAccountSideOfTransfers(t *testing.T) {
	s := aggregatetest.For(t, bank.Accounts())
	tr, other := interlock.NewID().String(), interlock.NewID().String()

	s.Given(opened...).
		When(bank.DebitForTransfer{Transfer: tr, To: other, Amount: 30}).
		ThenEvents(bank.TransferDebited{Transfer: tr, To: other, Amount: 30}).
		ThenStateFunc(func(t testing.TB, a *bank.Account) {
			if a.Balance != 70 {
				t.Errorf("balance %d after the debit, want 70", a.Balance)
			}
		})

	// A refusal is an event, not a rejection: the saga must read it.
	s.Given(opened...).
		When(bank.DebitForTransfer{Transfer: tr, To: other, Amount: 500}).
		ThenEvents(bank.TransferDebitRefused{Transfer: tr, Reason: "insufficient funds"})
	s.When(bank.CreditForTransfer{Transfer: tr, From: other, Amount: 30}).
		ThenEvents(bank.TransferCreditRefused{Transfer: tr, From: other, Amount: 30, Reason: "account not open"})
}

func TestTransferSaga(t *testing.T) {
	tr, from, to := interlock.NewID(), interlock.NewID(), interlock.NewID()
	s := projectionstest.Saga(t, bank.TransferSaga())

	// The happy path: debit, credit, complete.
	s.When(tr, bank.TransferStarted{From: from.String(), To: to.String(), Amount: 30}).
		ThenSends(bank.DebitForTransfer{Command: aggregate.To(from), Transfer: tr.String(), To: to.String(), Amount: 30})
	s.When(from, bank.TransferDebited{Transfer: tr.String(), To: to.String(), Amount: 30}).
		ThenSends(bank.CreditForTransfer{Command: aggregate.To(to), Transfer: tr.String(), From: from.String(), Amount: 30})
	s.When(to, bank.TransferCredited{Transfer: tr.String(), Amount: 30}).
		ThenSends(bank.CompleteTransfer{Command: aggregate.To(tr)})

	// Compensation: the credit is refused, so the debit is refunded, then
	// the transfer fails.
	s.When(to, bank.TransferCreditRefused{Transfer: tr.String(), From: from.String(), Amount: 30, Reason: "account not open"}).
		ThenSends(bank.RefundTransfer{Command: aggregate.To(from), Transfer: tr.String(), Amount: 30, Reason: "credit refused: account not open"})
	s.When(from, bank.TransferRefunded{Transfer: tr.String(), Amount: 30, Reason: "credit refused: account not open"}).
		ThenSends(bank.FailTransfer{Command: aggregate.To(tr), Reason: "credit refused: account not open; refunded"})

	// Nothing was taken: the transfer just fails.
	s.When(from, bank.TransferDebitRefused{Transfer: tr.String(), Reason: "insufficient funds"}).
		ThenSends(bank.FailTransfer{Command: aggregate.To(tr), Reason: "debit refused: insufficient funds"})

	// Events that are not steps of a transfer are none of its business.
	s.When(from, bank.MoneyDeposited{Amount: 5}).ThenSendsNothing()
}

func TestTransfersOnKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := start(t, interlock.NewBuilder(testOptions(t)...).
		RegisterAggregate(bank.Accounts()).
		RegisterAggregate(bank.Transfers()).
		RegisterProjection(bank.TransferSaga()))

	ada, bob, nobody := interlock.NewID(), interlock.NewID(), interlock.NewID()
	for _, cmd := range []any{
		bank.OpenAccount{Command: aggregate.To(ada), Owner: "Ada", Email: "ada@example.com"},
		bank.OpenAccount{Command: aggregate.To(bob), Owner: "Bob", Email: "bob@example.com"},
		bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](ada), Amount: 100},
	} {
		if _, err := interlock.DispatchValue(ctx, app, cmd); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name   string
		to     ulid.ULID
		amount int64
		want   bank.Transfer
	}{
		{"completed", bob, 30, bank.Transfer{Status: "completed"}},
		{"debit refused", bob, 500, bank.Transfer{Status: "failed", Reason: "debit refused: insufficient funds"}},
		{"credit refused and refunded", nobody, 20, bank.Transfer{Status: "failed", Reason: "credit refused: account not open; refunded"}},
	}
	for _, c := range cases {
		id := interlock.NewID()
		if _, err := interlock.Dispatch(ctx, app, bank.StartTransfer{Command: aggregate.To(id), From: ada, To: c.to, Amount: c.amount}); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := waitForTransfer(ctx, t, app, id)
		if got.Status != c.want.Status || got.Reason != c.want.Reason {
			t.Errorf("%s: the transfer ended %q (%s), want %q (%s)", c.name, got.Status, got.Reason, c.want.Status, c.want.Reason)
		}
	}

	// Money is conserved: 30 moved to Bob, the 20 sent to nobody came back.
	for id, want := range map[ulid.ULID]int64{ada: 70, bob: 30} {
		acct, err := app.LoadAggregate(ctx, "account", id)
		if err != nil {
			t.Fatal(err)
		}
		if got := acct.State.(*bank.Account).Balance; got != want {
			t.Errorf("%s has %d, want %d", acct.State.(*bank.Account).Owner, got, want)
		}
	}
}

// waitForTransfer returns the transfer once it has ended.
func waitForTransfer(ctx context.Context, t *testing.T, app *interlock.App, id ulid.ULID) bank.Transfer {
	t.Helper()
	for {
		acct, err := app.LoadAggregate(ctx, "transfer", id)
		if err != nil {
			t.Fatal(err)
		}
		if tr := *acct.State.(*bank.Transfer); tr.Status != "started" {
			return tr
		}
		select {
		case <-ctx.Done():
			t.Fatalf("transfer %s has not ended: %v", id, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
