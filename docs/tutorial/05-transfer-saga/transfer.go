package bank

import (
	"context"
	"errors"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/projections"
)

// Transfer is the state of one transfer between two accounts.
type Transfer struct {
	From   string `avro:"from"`
	To     string `avro:"to"`
	Amount int64  `avro:"amount"`
	// Status is "", then "started", then "completed" or "failed".
	Status string `avro:"status"`
	// Reason says why a failed transfer failed.
	Reason string `avro:"reason"`
}

// StartTransfer moves Amount from account From to account To.
type StartTransfer struct {
	aggregate.Command
	From   ulid.ULID `avro:"from"`
	To     ulid.ULID `avro:"to"`
	Amount int64     `avro:"amount"`
}

// CompleteTransfer ends a transfer whose money arrived. The saga sends it.
type CompleteTransfer struct {
	aggregate.Command
}

// FailTransfer ends a transfer that moved nothing, for Reason. The saga
// sends it.
type FailTransfer struct {
	aggregate.Command
	Reason string `avro:"reason"`
}

// TransferStarted records a transfer's start.
type TransferStarted struct {
	From   string `avro:"from"`
	To     string `avro:"to"`
	Amount int64  `avro:"amount"`
}

// TransferCompleted records that a transfer's money arrived.
type TransferCompleted struct{}

// TransferFailed records that a transfer ended with nothing moved.
type TransferFailed struct {
	Reason string `avro:"reason"`
}

// The account's side of a transfer: the commands the saga sends to
// accounts, and the events that record what the account did. A refusal is
// an event, not a rejection, so that the saga reads it from the log.
type (
	// DebitForTransfer takes Amount out of the account for Transfer.
	DebitForTransfer struct {
		aggregate.Command
		Transfer string `avro:"transfer"`
		To       string `avro:"to"`
		Amount   int64  `avro:"amount"`
	}
	// CreditForTransfer puts Amount, taken from account From, into the
	// account.
	CreditForTransfer struct {
		aggregate.Command
		Transfer string `avro:"transfer"`
		From     string `avro:"from"`
		Amount   int64  `avro:"amount"`
	}
	// RefundTransfer gives back Amount taken for a transfer that failed.
	RefundTransfer struct {
		aggregate.Command
		Transfer string `avro:"transfer"`
		Amount   int64  `avro:"amount"`
		Reason   string `avro:"reason"`
	}

	// TransferDebited records money taken out for a transfer to To.
	TransferDebited struct {
		Transfer string `avro:"transfer"`
		To       string `avro:"to"`
		Amount   int64  `avro:"amount"`
	}
	// TransferDebitRefused records that the account refused a debit.
	TransferDebitRefused struct {
		Transfer string `avro:"transfer"`
		Reason   string `avro:"reason"`
	}
	// TransferCredited records money put in by a transfer.
	TransferCredited struct {
		Transfer string `avro:"transfer"`
		Amount   int64  `avro:"amount"`
	}
	// TransferCreditRefused records that the account refused a credit
	// of money taken from From.
	TransferCreditRefused struct {
		Transfer string `avro:"transfer"`
		From     string `avro:"from"`
		Amount   int64  `avro:"amount"`
		Reason   string `avro:"reason"`
	}
	// TransferRefunded records money given back after a failed transfer.
	TransferRefunded struct {
		Transfer string `avro:"transfer"`
		Amount   int64  `avro:"amount"`
		Reason   string `avro:"reason"`
	}
)

// The reasons StartTransfer is rejected.
var (
	ErrSameAccount    = errors.New("cannot transfer to the same account")
	ErrNoAccounts     = errors.New("both accounts are required")
	ErrAlreadyStarted = errors.New("transfer already started")
)

// Transfers returns the definition of the transfer aggregate.
func Transfers() *aggregate.Definition[Transfer] {
	return aggregate.Define[Transfer]("transfer",
		aggregate.Handle(startTransfer),
		aggregate.Handle(completeTransfer),
		aggregate.Handle(failTransfer),
		aggregate.Apply(func(s *Transfer, e TransferStarted) {
			s.From, s.To, s.Amount, s.Status = e.From, e.To, e.Amount, "started"
		}),
		aggregate.Apply(func(s *Transfer, e TransferCompleted) { s.Status = "completed" }),
		aggregate.Apply(func(s *Transfer, e TransferFailed) { s.Status, s.Reason = "failed", e.Reason }),
		aggregate.Errors[Transfer](ErrSameAccount, ErrNoAccounts, ErrAlreadyStarted),
	)
}

func startTransfer(a *aggregate.Root[Transfer], c StartTransfer) error {
	switch {
	case !a.IsNew():
		return ErrAlreadyStarted
	case c.Amount <= 0:
		return ErrBadAmount
	case c.From == (ulid.ULID{}) || c.To == (ulid.ULID{}):
		return ErrNoAccounts
	case c.From == c.To:
		return ErrSameAccount
	}
	a.Emit(TransferStarted{From: c.From.String(), To: c.To.String(), Amount: c.Amount})
	return nil
}

// completeTransfer and failTransfer end a started transfer, once: the saga
// may send them again after a crash, and the second time does nothing.
func completeTransfer(a *aggregate.Root[Transfer], c CompleteTransfer) error {
	if a.State().Status == "started" {
		a.Emit(TransferCompleted{})
	}
	return nil
}

func failTransfer(a *aggregate.Root[Transfer], c FailTransfer) error {
	if a.State().Status == "started" {
		a.Emit(TransferFailed{Reason: c.Reason})
	}
	return nil
}

func debitForTransfer(a *aggregate.Root[Account], c DebitForTransfer) error {
	if err := canMove(a.State(), c.Amount); err != nil {
		a.Emit(TransferDebitRefused{Transfer: c.Transfer, Reason: err.Error()})
		return nil
	}
	if c.Amount > a.State().Balance {
		a.Emit(TransferDebitRefused{Transfer: c.Transfer, Reason: ErrInsufficientFunds.Error()})
		return nil
	}
	a.Emit(TransferDebited{Transfer: c.Transfer, To: c.To, Amount: c.Amount})
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

func debited(s *Account, e TransferDebited) { s.Balance -= e.Amount }

func credited(s *Account, e TransferCredited) { s.Balance += e.Amount }

func refunded(s *Account, e TransferRefunded) { s.Balance += e.Amount }

// TransferSaga returns the saga that drives transfers, step by step: it
// reads each step's event and sends the next command. It is a projection
// on the Kafka sink, so the commands it sends and the offsets of the events
// it read commit in one Kafka transaction: each step happens once, even
// across crashes.
func TransferSaga() *projections.Projection[*projections.Output] {
	s := projections.New("transfer-saga", projections.Kafka())

	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferStarted]) error {
		from, err := ulid.ParseStrict(e.Data.From)
		if err != nil {
			return err
		}
		return out.Send(DebitForTransfer{Command: aggregate.To(from),
			Transfer: e.AggregateID.String(), To: e.Data.To, Amount: e.Data.Amount})
	})
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferDebited]) error {
		to, err := ulid.ParseStrict(e.Data.To)
		if err != nil {
			return err
		}
		return out.Send(CreditForTransfer{Command: aggregate.To(to),
			Transfer: e.Data.Transfer, From: e.AggregateID.String(), Amount: e.Data.Amount})
	})
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferCredited]) error {
		return sendToTransfer(out, e.Data.Transfer, func(c aggregate.Command) any {
			return CompleteTransfer{Command: c}
		})
	})

	// Compensation: the credit was refused after the debit, so the money
	// goes back to where it came from, and then the transfer fails.
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferCreditRefused]) error {
		from, err := ulid.ParseStrict(e.Data.From)
		if err != nil {
			return err
		}
		return out.Send(RefundTransfer{Command: aggregate.To(from),
			Transfer: e.Data.Transfer, Amount: e.Data.Amount, Reason: "credit refused: " + e.Data.Reason})
	})
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferRefunded]) error {
		return sendToTransfer(out, e.Data.Transfer, func(c aggregate.Command) any {
			return FailTransfer{Command: c, Reason: e.Data.Reason + "; refunded"}
		})
	})
	projections.On(s, func(ctx context.Context, out *projections.Output, e projections.Event[TransferDebitRefused]) error {
		return sendToTransfer(out, e.Data.Transfer, func(c aggregate.Command) any {
			return FailTransfer{Command: c, Reason: "debit refused: " + e.Data.Reason}
		})
	})
	return s
}

// sendToTransfer sends the command cmd builds to the transfer whose ID is
// transfer.
func sendToTransfer(out *projections.Output, transfer string, cmd func(aggregate.Command) any) error {
	id, err := ulid.ParseStrict(transfer)
	if err != nil {
		return err
	}
	return out.Send(cmd(aggregate.To(id)))
}
