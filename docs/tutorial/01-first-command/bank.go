// Package bank is the bank of the Interlock tutorial as it stands at the
// end of chapter 1: an account aggregate and its first command,
// OpenAccount. See docs/tutorial/01-first-command.md.
package bank

import (
	"errors"
	"fmt"
	"net/mail"

	"github.com/interlock-go/interlock/aggregate"
)

// Account is the state of one bank account.
type Account struct {
	Owner string `avro:"owner"`
	Email string `avro:"email"`
	Open  bool   `avro:"open"`
}

// OpenAccount opens an account for Owner, who is reached at Email.
type OpenAccount struct {
	aggregate.Command
	Owner string `avro:"owner"`
	Email string `avro:"email"`
}

// AccountOpened records that an account was opened.
type AccountOpened struct {
	Owner string `avro:"owner"`
	Email string `avro:"email"`
}

// The reasons OpenAccount is rejected.
var (
	ErrAlreadyOpen = errors.New("account already open")
	ErrNoOwner     = errors.New("owner is required")
	ErrBadEmail    = errors.New("email is not valid")
)

// Accounts returns the definition of the account aggregate.
func Accounts() *aggregate.Definition[Account] {
	return aggregate.Define[Account]("account",
		aggregate.Handle(open),
		aggregate.Apply(opened),
		// Rejections callers branch on with errors.Is, after Dispatch too.
		aggregate.Errors[Account](ErrAlreadyOpen, ErrNoOwner, ErrBadEmail),
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

func opened(s *Account, e AccountOpened) {
	s.Owner = e.Owner
	s.Email = e.Email
	s.Open = true
}
