package bank

import (
	"context"
	"errors"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/projections"
)

// A transfer moves money between two accounts without a transaction that
// spans them: the transfer is an aggregate of its own that records how far
// it got, and a saga (TransferSaga) reacts to each step's event with the
// next command. A transfer ends completed, or failed with nothing moved:
// when the credit is refused after the debit, the debit is refunded
// (compensation).
//
//	StartTransfer ─▶ TransferStarted ─saga─▶ DebitForTransfer (from)
//	  TransferDebited ─saga─▶ CreditForTransfer (to)
//	    TransferCredited ─saga─▶ CompleteTransfer ─▶ TransferCompleted
//	    TransferCreditRefused ─saga─▶ RefundTransfer (from)
//	      TransferRefunded ─saga─▶ FailTransfer ─▶ TransferFailed
//	  TransferDebitRefused ─saga─▶ FailTransfer ─▶ TransferFailed

// Transfer is the state of a transfer aggregate.
type Transfer struct {
	From   string `avro:"from" json:"from"`
	To     string `avro:"to" json:"to"`
	Amount int64  `avro:"amount" json:"amount"`
	// Status is "", "started", "completed" or "failed".
	Status string `avro:"status" json:"status"`
	Reason string `avro:"reason" json:"reason"`
}

// StartTransfer starts moving Amount from account From to account To.
type StartTransfer struct {
	aggregate.Command
	From   ulid.ULID `avro:"from" json:"from"`
	To     ulid.ULID `avro:"to" json:"to"`
	Amount int64     `avro:"amount" json:"amount"`
}

// CompleteTransfer and FailTransfer end a transfer; the saga sends them.
type (
	CompleteTransfer struct {
		aggregate.Command
	}
	FailTransfer struct {
		aggregate.Command
		Reason string `avro:"reason" json:"reason"`
	}
)

// The transfer's events.
type (
	TransferStarted struct {
		From   string `avro:"from" json:"from"`
		To     string `avro:"to" json:"to"`
		Amount int64  `avro:"amount" json:"amount"`
	}
	TransferCompleted struct{}
	TransferFailed    struct {
		Reason string `avro:"reason" json:"reason"`
	}
)

// The accounts' side of a transfer: commands the saga sends, and the
// events that record their outcome. A refusal is an event, not a
// rejection, so the saga learns of it from the log.
type (
	// DebitForTransfer takes Amount from the account for Transfer, whose
	// money goes to To.
	DebitForTransfer struct {
		aggregate.Command
		Transfer string `avro:"transfer" json:"transfer"`
		To       string `avro:"to" json:"to"`
		Amount   int64  `avro:"amount" json:"amount"`
	}
	// CreditForTransfer gives Amount, taken from From, to the account.
	CreditForTransfer struct {
		aggregate.Command
		Transfer string `avro:"transfer" json:"transfer"`
		From     string `avro:"from" json:"from"`
		Amount   int64  `avro:"amount" json:"amount"`
	}
	// RefundTransfer gives back Amount taken for a transfer that failed.
	RefundTransfer struct {
		aggregate.Command
		Transfer string `avro:"transfer" json:"transfer"`
		Amount   int64  `avro:"amount" json:"amount"`
		Reason   string `avro:"reason" json:"reason"`
	}
	TransferDebited struct {
		Transfer string `avro:"transfer" json:"transfer"`
		To       string `avro:"to" json:"to"`
		Amount   int64  `avro:"amount" json:"amount"`
	}
	TransferDebitRefused struct {
		Transfer string `avro:"transfer" json:"transfer"`
		Reason   string `avro:"reason" json:"reason"`
	}
	TransferCredited struct {
		Transfer string `avro:"transfer" json:"transfer"`
		Amount   int64  `avro:"amount" json:"amount"`
	}
	TransferCreditRefused struct {
		Transfer string `avro:"transfer" json:"transfer"`
		From     string `avro:"from" json:"from"`
		Amount   int64  `avro:"amount" json:"amount"`
		Reason   string `avro:"reason" json:"reason"`
	}
	TransferRefunded struct {
		Transfer string `avro:"transfer" json:"transfer"`
		Amount   int64  `avro:"amount" json:"amount"`
		Reason   string `avro:"reason" json:"reason"`
	}
)

// ErrSameAccount rejects a transfer from an account to itself.
var ErrSameAccount = errors.New("cannot transfer to the same account")

// Transfers returns the definition of the transfer aggregate, named
// "bank-transfer".
func Transfers() *aggregate.Definition[Transfer] {
	return aggregate.Define[Transfer]("bank-transfer",
		aggregate.Handle(startTransfer),
		aggregate.Handle(func(a *aggregate.Root[Transfer], c CompleteTransfer) error {
			if a.State().Status == "started" {
				a.Emit(TransferCompleted{})
			}
			return nil
		}),
		aggregate.Handle(func(a *aggregate.Root[Transfer], c FailTransfer) error {
			if a.State().Status == "started" {
				a.Emit(TransferFailed{Reason: c.Reason})
			}
			return nil
		}),
		aggregate.Apply(func(s *Transfer, e TransferStarted) {
			s.From, s.To, s.Amount, s.Status = e.From, e.To, e.Amount, "started"
		}),
		aggregate.Apply(func(s *Transfer, e TransferCompleted) { s.Status = "completed" }),
		aggregate.Apply(func(s *Transfer, e TransferFailed) { s.Status, s.Reason = "failed", e.Reason }),
	)
}

func startTransfer(a *aggregate.Root[Transfer], c StartTransfer) error {
	switch {
	case a.State().Status != "":
		return errors.New("transfer already started")
	case c.Amount <= 0:
		return ErrInvalidAmount
	case c.From == c.To:
		return ErrSameAccount
	case c.From == (ulid.ULID{}) || c.To == (ulid.ULID{}):
		return errors.New("both accounts are required")
	}
	a.Emit(TransferStarted{From: c.From.String(), To: c.To.String(), Amount: c.Amount})
	return nil
}

func debitForTransfer(a *aggregate.Root[Account], c DebitForTransfer) error {
	s := a.State()
	switch {
	case !s.Open:
		a.Emit(TransferDebitRefused{Transfer: c.Transfer, Reason: ErrNotOpen.Error()})
	case c.Amount > s.Balance:
		a.Emit(TransferDebitRefused{Transfer: c.Transfer, Reason: ErrInsufficientFunds.Error()})
	default:
		a.Emit(TransferDebited{Transfer: c.Transfer, To: c.To, Amount: c.Amount})
	}
	return nil
}

func creditForTransfer(a *aggregate.Root[Account], c CreditForTransfer) error {
	if !a.State().Open {
		a.Emit(TransferCreditRefused{Transfer: c.Transfer, From: c.From, Amount: c.Amount, Reason: ErrNotOpen.Error()})
		return nil
	}
	a.Emit(TransferCredited{Transfer: c.Transfer, Amount: c.Amount})
	return nil
}

func refundTransfer(a *aggregate.Root[Account], c RefundTransfer) error {
	a.Emit(TransferRefunded{Transfer: c.Transfer, Amount: c.Amount, Reason: c.Reason})
	return nil
}

// TransferSaga returns the saga that drives transfers: a projection on the
// Kafka sink, whose reactions to each step's event are commands sent in
// the same Kafka transaction as the event's offset, so each step runs once,
// across crashes. Register it with the builder beside Accounts and
// Transfers.
func TransferSaga() *projections.Projection[*projections.Output] {
	s := projections.New("bank-transfer-saga", projections.Kafka())
	send := func(out *projections.Output, to string, cmd func(aggregate.Command) any) error {
		id, err := ulid.ParseStrict(to)
		if err != nil {
			return err
		}
		return out.Send(cmd(aggregate.To(id)))
	}
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferStarted]) error {
		t := e.AggregateID.String()
		return send(out, e.Data.From, func(c aggregate.Command) any {
			return DebitForTransfer{Command: c, Transfer: t, To: e.Data.To, Amount: e.Data.Amount}
		})
	})
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferDebited]) error {
		from := e.AggregateID.String()
		return send(out, e.Data.To, func(c aggregate.Command) any {
			return CreditForTransfer{Command: c, Transfer: e.Data.Transfer, From: from, Amount: e.Data.Amount}
		})
	})
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferDebitRefused]) error {
		return send(out, e.Data.Transfer, func(c aggregate.Command) any {
			return FailTransfer{Command: c, Reason: "debit refused: " + e.Data.Reason}
		})
	})
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferCredited]) error {
		return send(out, e.Data.Transfer, func(c aggregate.Command) any { return CompleteTransfer{Command: c} })
	})
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferCreditRefused]) error {
		return send(out, e.Data.From, func(c aggregate.Command) any {
			return RefundTransfer{Command: c, Transfer: e.Data.Transfer, Amount: e.Data.Amount, Reason: "credit refused: " + e.Data.Reason}
		})
	})
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferRefunded]) error {
		return send(out, e.Data.Transfer, func(c aggregate.Command) any {
			return FailTransfer{Command: c, Reason: e.Data.Reason + "; refunded"}
		})
	})
	return s
}
