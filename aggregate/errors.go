package aggregate

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrConcurrency is matched (errors.Is) by every expected-version conflict.
var ErrConcurrency = errors.New("concurrency conflict")

// ErrRejected is matched (errors.Is) by every domain rejection: a handler
// error, a version conflict, a payload that cannot be decoded.
var ErrRejected = errors.New("command rejected")

// RejectedError is a command that was refused: no event was written. Reason
// is the handler's error message (or what was wrong with the command).
type RejectedError struct {
	// Reason says why the command was rejected.
	Reason string
	// Conflict is set when the rejection is an expected-version conflict.
	Conflict *ConcurrencyError
	// Err is the handler's error, in the process that ran the handler (a
	// test, a scenario). Across Kafka it is the declared error (see
	// Errors) the handler's error matched, or nil.
	Err error
}

// Error says the command was rejected, and why.
func (e *RejectedError) Error() string { return "command rejected: " + e.Reason }

// Is matches ErrRejected, and ErrConcurrency for a version conflict.
func (e *RejectedError) Is(target error) bool {
	return target == ErrRejected || (target == ErrConcurrency && e.Conflict != nil)
}

// Unwrap returns the version conflict and the handler's error, when known.
func (e *RejectedError) Unwrap() []error {
	var errs []error
	if e.Conflict != nil {
		errs = append(errs, e.Conflict)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// ConcurrencyError is an expected-version mismatch.
type ConcurrencyError struct {
	Expected, Actual int64
}

// Error names the expected and the actual version.
func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("concurrency conflict: expected version %d, aggregate is at %d", e.Expected, e.Actual)
}

// Is matches ErrConcurrency.
func (e *ConcurrencyError) Is(target error) bool { return target == ErrConcurrency }

// Reject returns the rejection a handler error becomes.
func Reject(err error) *RejectedError {
	var r *RejectedError
	if errors.As(err, &r) {
		return r
	}
	var c *ConcurrencyError
	if errors.As(err, &c) {
		return &RejectedError{Reason: c.Error(), Conflict: c}
	}
	return &RejectedError{Reason: err.Error(), Err: err}
}

// PanicError is a panic of user code that Interlock called (a handler, an
// applier, a middleware, a projection's handler), recovered: the command
// fails or the event is retried, and the process goes on. Its message
// names what panicked and the panic's value; the stack is for the log,
// never for a caller.
type PanicError struct {
	// Where says what panicked: `aggregate "account": handler of bank.DepositMoney`.
	Where string
	// Value is what panic was called with.
	Value any
	// Stack is the panicking goroutine's stack.
	Stack []byte
}

// Error names what panicked and the panic's value.
func (e *PanicError) Error() string { return fmt.Sprintf("%s panicked: %v", e.Where, e.Value) }

// Recovered turns the value of recover() into a *PanicError, with the
// stack of the goroutine that called it, or into nil (an untyped nil
// error) when value is nil. Call it in the deferred function itself,
// naming what panicked only when something did:
//
//	defer func() {
//		if v := recover(); v != nil {
//			err = aggregate.Recovered(fmt.Sprintf("handler of %T", cmd), v)
//		}
//	}()
func Recovered(where string, value any) error {
	if value == nil {
		return nil
	}
	return &PanicError{Where: where, Value: value, Stack: debug.Stack()}
}
