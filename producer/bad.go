package producer

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/interlock-go/interlock/schema"
)

// Errors of ParseHeaders, matched with errors.Is, that say what kind of
// bad record it met; the message says which header.
var (
	// ErrBadULID: the key, or a header that holds an ID, is not a ULID.
	ErrBadULID = errors.New("not a ULID")
	// ErrMissingHeader: a header every record needs is missing.
	ErrMissingHeader = errors.New("missing header")
	// ErrBadHeader: a header's value cannot be read.
	ErrBadHeader = errors.New("malformed header")
)

// Reasons a record cannot be used, as Reason returns them: a fixed set,
// fit for a metric label.
const (
	ReasonBadULID       = "bad_ulid"       // the key or an ID header is not a ULID
	ReasonMissingHeader = "missing_header" // a required header is missing
	ReasonBadHeader     = "bad_header"     // a header's value cannot be read
	ReasonUnknownType   = "unknown_type"   // no command or event of that type is registered
	ReasonUnknownSchema = "unknown_schema" // the value's schema ID is not known
	ReasonUndecodable   = "undecodable"    // the value does not decode as its type
	ReasonUpcast        = "upcast_failed"  // an upcaster refused the old event
	ReasonTooLarge      = "too_large"      // a record over the size Kafka accepts
	ReasonOther         = "other"          // anything else (an event its aggregate cannot apply)
)

// Reasons lists every reason Reason returns.
var Reasons = []string{
	ReasonBadULID, ReasonMissingHeader, ReasonBadHeader, ReasonUnknownType, ReasonUnknownSchema,
	ReasonUndecodable, ReasonUpcast, ReasonTooLarge, ReasonOther,
}

// Reason classifies err, an error of ParseHeaders, of decoding a value
// (package schema) or of producing a record, as one of the Reasons.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrBadULID):
		return ReasonBadULID
	case errors.Is(err, ErrMissingHeader):
		return ReasonMissingHeader
	case errors.Is(err, ErrBadHeader):
		return ReasonBadHeader
	case errors.Is(err, schema.ErrUnknownSchema):
		return ReasonUnknownSchema
	case errors.Is(err, schema.ErrUpcast):
		return ReasonUpcast
	case errors.Is(err, schema.ErrDecode):
		return ReasonUndecodable
	case errors.Is(err, kerr.MessageTooLarge):
		return ReasonTooLarge
	}
	return ReasonOther
}

// kindError is an error of ParseHeaders: its message, and its kind for
// errors.Is.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func kinded(kind, err error) error { return &kindError{kind: kind, err: err} }
