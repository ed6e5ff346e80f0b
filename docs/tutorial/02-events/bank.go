// Package bank is the bank of the Interlock tutorial as it stands at the
// end of chapter 2: accounts open, take deposits and withdrawals, and
// refuse to go below zero. See docs/tutorial/02-events.md.
package bank

import (
	"errors"
	"fmt"
	"net/mail"

	"github.com/interlock-go/interlock/aggregate"
)

// Account is the state of one bank account.
type Account struct {
	Owner   string `avro:"owner"`
	Email   string `avro:"email"`
	Open    bool   `avro:"open"`
	Balance int64  `avro:"balance"`
}

// OpenAccount opens an account for Owner, who is reached at Email.
type OpenAccount struct {
	aggregate.Command
	Owner string `avro:"owner"`
	Email string `avro:"email"`
}

// DepositMoney puts Amount, in cents, into an open account. Its result is
// the new balance.
type DepositMoney struct {
	aggregate.CommandOf[Balance]
	Amount int64 `avro:"amount"`
}

// WithdrawMoney takes Amount, in cents, out of an open account that holds
// at least that much. Its result is the new balance.
type WithdrawMoney struct {
	aggregate.CommandOf[Balance]
	Amount int64 `avro:"amount"`
}

// Balance is what DepositMoney and WithdrawMoney return: the balance after
// the command.
type Balance struct {
	Balance int64 `avro:"balance"`
}

// AccountOpened records that an account was opened.
type AccountOpened struct {
	Owner string `avro:"owner"`
	Email string `avro:"email"`
}

// MoneyDeposited records a deposit.
type MoneyDeposited struct {
	Amount int64 `avro:"amount"`
}

// MoneyWithdrawn records a withdrawal.
type MoneyWithdrawn struct {
	Amount int64 `avro:"amount"`
}

// The reasons the account's commands are rejected.
var (
	ErrAlreadyOpen       = errors.New("account already open")
	ErrNoOwner           = errors.New("owner is required")
	ErrBadEmail          = errors.New("email is not valid")
	ErrNotOpen           = errors.New("account not open")
	ErrBadAmount         = errors.New("amount must be positive")
	ErrInsufficientFunds = errors.New("insufficient funds")
)

// Accounts returns the definition of the account aggregate.
func Accounts() *aggregate.Definition[Account] {
	return aggregate.Define[Account]("account",
		aggregate.Handle(open),
		aggregate.HandleResult(deposit),
		aggregate.HandleResult(withdraw),
		aggregate.Apply(opened),
		aggregate.Apply(deposited),
		aggregate.Apply(withdrawn),
		// Rejections callers branch on with errors.Is, after Dispatch too.
		aggregate.Errors[Account](ErrAlreadyOpen, ErrNoOwner, ErrBadEmail, ErrNotOpen, ErrBadAmount, ErrInsufficientFunds),
	)
}

func open(a *aggregate.Root[Account], c OpenAccount) error {
	if a.State().Open {
		return ErrAlreadyOpen
	}
	if c.Owner == "" {
		return ErrNoOwner
	}
	if addr, err := mail.ParseAddress(c.Email); err != nil || addr.Address != c.Email {
		return fmt.Errorf("%w: %q", ErrBadEmail, c.Email)
	}
	a.Emit(AccountOpened{Owner: c.Owner, Email: c.Email})
	return nil
}

func deposit(a *aggregate.Root[Account], c DepositMoney) (Balance, error) {
	if err := canMove(a.State(), c.Amount); err != nil {
		return Balance{}, err
	}
	a.Emit(MoneyDeposited{Amount: c.Amount})
	return Balance{Balance: a.State().Balance}, nil
}

func withdraw(a *aggregate.Root[Account], c WithdrawMoney) (Balance, error) {
	if err := canMove(a.State(), c.Amount); err != nil {
		return Balance{}, err
	}
	if c.Amount > a.State().Balance {
		return Balance{}, fmt.Errorf("%w: balance %d, withdrawal %d", ErrInsufficientFunds, a.State().Balance, c.Amount)
	}
	a.Emit(MoneyWithdrawn{Amount: c.Amount})
	return Balance{Balance: a.State().Balance}, nil
}

// canMove checks what every movement of money needs.
func canMove(s *Account, amount int64) error {
	if !s.Open {
		return ErrNotOpen
	}
	if amount <= 0 {
		return fmt.Errorf("%w: got %d", ErrBadAmount, amount)
	}
	return nil
}

func opened(s *Account, e AccountOpened) {
	s.Owner = e.Owner
	s.Email = e.Email
	s.Open = true
}

func deposited(s *Account, e MoneyDeposited) { s.Balance += e.Amount }

func withdrawn(s *Account, e MoneyWithdrawn) { s.Balance -= e.Amount }
