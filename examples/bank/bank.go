// Package bank is the seed's bank account as an Interlock domain: an
// account is opened for an owner, money is deposited into it and withdrawn
// from it, and a withdrawal larger than the balance is refused.
//
// It is the domain of the interlock demo command and of the tests that need
// a realistic aggregate. Register it with the application builder through
// [Accounts]; test it with package aggregatetest.
package bank

import (
	"errors"
	"fmt"

	"github.com/interlock-go/interlock/aggregate"
)

// Account is the state of a bank account aggregate.
type Account struct {
	// Owner is the name the account was opened for.
	Owner string `avro:"owner" json:"owner"`
	// Balance is the money in the account, in the smallest currency unit.
	Balance int64 `avro:"balance" json:"balance"`
	// Open is true once the account has been opened.
	Open bool `avro:"open" json:"open"`
}

// OpenAccount opens a new account for Owner. It is the first command of an
// account; opening an account twice is rejected with ErrAlreadyOpen.
type OpenAccount struct {
	aggregate.Command
	Owner string `avro:"owner" json:"owner"`
}

// DepositMoney adds Amount, which must be positive, to an open account. Its
// result is the new balance.
type DepositMoney struct {
	aggregate.CommandOf[Balance]
	Amount int64 `avro:"amount" json:"amount"`
}

// WithdrawMoney takes Amount, which must be positive and at most the
// balance, from an open account. Its result is the new balance.
type WithdrawMoney struct {
	aggregate.CommandOf[Balance]
	Amount int64 `avro:"amount" json:"amount"`
}

// Balance is the result of DepositMoney and WithdrawMoney: the account's
// balance after the command.
type Balance struct {
	Balance int64 `avro:"balance" json:"balance"`
}

// AccountOpened records that an account was opened for Owner.
type AccountOpened struct {
	Owner string `avro:"owner" json:"owner"`
}

// MoneyDeposited records a deposit of Amount.
type MoneyDeposited struct {
	Amount int64 `avro:"amount" json:"amount"`
}

// MoneyWithdrawn records a withdrawal of Amount.
type MoneyWithdrawn struct {
	Amount int64 `avro:"amount" json:"amount"`
}

// The rejections of the bank account's handlers. A handler returns one of
// them, wrapped with details, and the command is rejected with a reason that
// contains its message.
var (
	// ErrAlreadyOpen rejects OpenAccount for an account that is open.
	ErrAlreadyOpen = errors.New("account already open")
	// ErrNoOwner rejects OpenAccount without an owner.
	ErrNoOwner = errors.New("owner is required")
	// ErrNotOpen rejects a deposit or withdrawal on an account that was
	// never opened.
	ErrNotOpen = errors.New("account not open")
	// ErrInvalidAmount rejects a deposit or withdrawal of zero or less.
	ErrInvalidAmount = errors.New("amount must be positive")
	// ErrInsufficientFunds rejects a withdrawal larger than the balance.
	ErrInsufficientFunds = errors.New("insufficient funds")
)

// Accounts returns the definition of the bank account aggregate, named
// "bank-account".
func Accounts() *aggregate.Definition[Account] {
	return aggregate.Define[Account]("bank-account",
		aggregate.Handle(open),
		aggregate.HandleResult(deposit),
		aggregate.HandleResult(withdraw),
		aggregate.Apply(opened),
		aggregate.Apply(deposited),
		aggregate.Apply(withdrawn),
		// The accounts' side of transfers (transfer.go).
		aggregate.Handle(debitForTransfer),
		aggregate.Handle(creditForTransfer),
		aggregate.Handle(refundTransfer),
		aggregate.Apply(func(s *Account, e TransferDebited) { s.Balance -= e.Amount }),
		aggregate.Apply(func(s *Account, e TransferDebitRefused) {}),
		aggregate.Apply(func(s *Account, e TransferCredited) { s.Balance += e.Amount }),
		aggregate.Apply(func(s *Account, e TransferCreditRefused) {}),
		aggregate.Apply(func(s *Account, e TransferRefunded) { s.Balance += e.Amount }),
		// Callers branch on these with errors.Is, after Dispatch too.
		aggregate.Errors[Account](ErrAlreadyOpen, ErrNoOwner, ErrNotOpen, ErrInvalidAmount, ErrInsufficientFunds),
	)
}

func open(a *aggregate.Root[Account], c OpenAccount) error {
	if a.State().Open {
		return fmt.Errorf("%w (owner %s)", ErrAlreadyOpen, a.State().Owner)
	}
	if c.Owner == "" {
		return ErrNoOwner
	}
	a.Emit(AccountOpened{Owner: c.Owner})
	return nil
}

func deposit(a *aggregate.Root[Account], c DepositMoney) (Balance, error) {
	if err := movable(a.State(), c.Amount); err != nil {
		return Balance{}, err
	}
	a.Emit(MoneyDeposited{Amount: c.Amount})
	return Balance{Balance: a.State().Balance}, nil
}

func withdraw(a *aggregate.Root[Account], c WithdrawMoney) (Balance, error) {
	if err := movable(a.State(), c.Amount); err != nil {
		return Balance{}, err
	}
	if c.Amount > a.State().Balance {
		return Balance{}, fmt.Errorf("%w: balance %d, withdrawal %d", ErrInsufficientFunds, a.State().Balance, c.Amount)
	}
	a.Emit(MoneyWithdrawn{Amount: c.Amount})
	return Balance{Balance: a.State().Balance}, nil
}

// movable checks what a deposit and a withdrawal both require.
func movable(s *Account, amount int64) error {
	if !s.Open {
		return ErrNotOpen
	}
	if amount <= 0 {
		return fmt.Errorf("%w: got %d", ErrInvalidAmount, amount)
	}
	return nil
}

func opened(s *Account, e AccountOpened) {
	s.Owner = e.Owner
	s.Open = true
}

func deposited(s *Account, e MoneyDeposited) { s.Balance += e.Amount }

func withdrawn(s *Account, e MoneyWithdrawn) { s.Balance -= e.Amount }
