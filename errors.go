package interlock

import (
	"errors"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
)

// Errors callers branch on. A domain rejection (ErrRejected, with
// ErrConcurrency for version conflicts) is never an infrastructure failure.
var (
	// ErrRejected matches every *RejectedError: the command was refused and
	// wrote no event.
	ErrRejected = aggregate.ErrRejected
	// ErrConcurrency matches an expected-version conflict.
	ErrConcurrency = aggregate.ErrConcurrency
	// ErrFailed matches a command the processor could not handle for a
	// reason that is not a domain rejection (a panicking handler, an event
	// that cannot be encoded). No event was written.
	ErrFailed = errors.New("command failed")
	// ErrUnknownCommand is returned for a command type no registered
	// aggregate handles.
	ErrUnknownCommand = producer.ErrUnknownCommand
	// ErrClosed is returned by Dispatch and Send while the application
	// closes.
	ErrClosed = producer.ErrClosed
	// ErrUnknownQuery is returned by Ask for a query type no registered
	// projection answers.
	ErrUnknownQuery = errors.New("unknown query type")
	// ErrNotStarted is returned when the application is not running, or
	// does not play the role the call needs.
	ErrNotStarted = errors.New("interlock: application not started")
)

// RejectedError is a command refused by its handler or by a version
// conflict; Reason says why.
type RejectedError = aggregate.RejectedError

// ConcurrencyError is the detail of an expected-version conflict.
type ConcurrencyError = aggregate.ConcurrencyError
