package aggregate

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/oklog/ulid/v2"
)

// None is the result type of a command that returns nothing but its outcome.
type None struct{}

// CommandOf is embedded in every command type. It carries the routing and
// tracing envelope of a command, and R names the result its handler returns
// to the caller of Dispatch (the seed's Command[TResp]). Embed [Command] for
// a command with no result.
//
// The envelope travels in Kafka record headers, never in the encoded payload.
type CommandOf[R any] struct {
	// AggregateID is the aggregate the command is for; it is required. An
	// aggregate is created by the first command sent to a new ID.
	AggregateID ulid.ULID `json:"-" avro:"-"`
	// CommandID identifies this command; a new ULID is assigned when it is
	// zero.
	CommandID ulid.ULID `json:"-" avro:"-"`
	// CorrelationID ties together every message of one business flow; it
	// defaults to the command ID.
	CorrelationID string `json:"-" avro:"-"`
	// CausationID is the ID of the message that caused this command, if any.
	CausationID string `json:"-" avro:"-"`
	// ExpectedVersion, when set, rejects the command with ErrConcurrency
	// unless the aggregate is at exactly this version (0: not yet created).
	ExpectedVersion *int64 `json:"-" avro:"-"`
}

// Command is the envelope of a command that returns no result.
type Command = CommandOf[None]

// Cmd is the constraint satisfied by every type that embeds CommandOf[R].
type Cmd[R any] interface {
	resultOf(R)
	envelope() envelopeHolder
}

// envelopeHolder lets the runtime reach the embedded envelope of any command
// type without knowing R.
type envelopeHolder = CommandOf[None]

func (CommandOf[R]) resultOf(R) {}

// envelope returns a copy, not a pointer: a pointer would be a heap
// allocation on every call (four per dispatched command).
func (c CommandOf[R]) envelope() envelopeHolder {
	return envelopeHolder{
		AggregateID:     c.AggregateID,
		CommandID:       c.CommandID,
		CorrelationID:   c.CorrelationID,
		CausationID:     c.CausationID,
		ExpectedVersion: c.ExpectedVersion,
	}
}

func (c *CommandOf[R]) setEnvelope(e Command) {
	c.AggregateID = e.AggregateID
	c.CommandID = e.CommandID
	c.CorrelationID = e.CorrelationID
	c.CausationID = e.CausationID
	c.ExpectedVersion = e.ExpectedVersion
}

// To returns the envelope of a command for the aggregate with the given ID.
func To(id ulid.ULID) Command { return Command{AggregateID: id} }

// ToResult is To for a command whose handler returns an R.
func ToResult[R any](id ulid.ULID) CommandOf[R] { return CommandOf[R]{AggregateID: id} }

// Expect returns a copy of the envelope that requires the aggregate to be at
// version v when the command is handled.
func (c CommandOf[R]) Expect(v int64) CommandOf[R] {
	c.ExpectedVersion = &v
	return c
}

// WithID returns a copy of the envelope with the given command ID, so that a
// retry of the same intent carries the same ID.
func (c CommandOf[R]) WithID(id ulid.ULID) CommandOf[R] {
	c.CommandID = id
	return c
}

// WithKey returns a copy of the envelope whose command ID is derived from
// an idempotency key of the caller's (an order number, a payment
// reference, an HTTP Idempotency-Key): KeyID(c.AggregateID, key). Every
// call with the same key for the same aggregate gives the same command
// ID, so a retry is applied at most once and gets the first outcome, as
// with WithID. A key names one command, not a business operation: two
// commands under one key (an order's authorize, then its capture) are the
// same command, and the second is answered with the first's outcome
// without being applied; give each its own key ("order-42/capture").
// Set the aggregate ID first (To, ToResult). An empty key changes nothing.
func (c CommandOf[R]) WithKey(key string) CommandOf[R] {
	if key != "" {
		c.CommandID = KeyID(c.AggregateID, key)
	}
	return c
}

// KeyID returns the command ID of the idempotency key key for the
// aggregate aggregateID: the first 16 bytes of a SHA-256 of both, the
// same in every process. Unlike a new ULID it is not ordered by time.
func KeyID(aggregateID ulid.ULID, key string) ulid.ULID {
	h := sha256.New()
	h.Write([]byte("interlock idempotency key\x00"))
	h.Write(aggregateID[:])
	h.Write([]byte(key))
	var id ulid.ULID
	copy(id[:], h.Sum(nil))
	return id
}

// EnvelopeOf returns the envelope embedded in cmd, which must be a command
// value (a type embedding CommandOf).
func EnvelopeOf(cmd any) (Command, bool) {
	if c, ok := cmd.(interface{ envelope() envelopeHolder }); ok {
		return c.envelope(), true
	}
	return Command{}, false
}

// SetEnvelope stores e in the command that ptr points to. It reports false
// when ptr is not a pointer to a command.
func SetEnvelope(ptr any, e Command) bool {
	if c, ok := ptr.(interface{ setEnvelope(Command) }); ok {
		c.setEnvelope(e)
		return true
	}
	return false
}

// ErrMissingID is returned for a command without an aggregate ID.
var ErrMissingID = errors.New("aggregate: command has no aggregate ID")

// Prepare fills in the defaults of an envelope: a new command ID when it is
// zero and the correlation ID from the command ID. It fails when the aggregate
// ID is missing.
func (c *CommandOf[R]) Prepare() error {
	if c.AggregateID == (ulid.ULID{}) {
		return ErrMissingID
	}
	if c.CommandID == (ulid.ULID{}) {
		c.CommandID = ulid.Make()
	}
	if c.CorrelationID == "" {
		c.CorrelationID = c.CommandID.String()
	}
	if c.ExpectedVersion != nil && *c.ExpectedVersion < 0 {
		return fmt.Errorf("aggregate: expected version %d is negative", *c.ExpectedVersion)
	}
	return nil
}
