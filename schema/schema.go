package schema

import (
	"errors"
	"reflect"
)

// Codec encodes and decodes the payloads of message types (commands,
// events). A Codec is safe for concurrent use.
type Codec interface {
	// Name identifies the codec in record headers: "avro" or "json".
	Name() string
	// For returns the Serde of Go type t (a struct type, not a pointer), or
	// an error that names the type, the field path and why it cannot be
	// encoded (e.g. `schema: bank.Foo.Bar: chan int cannot be encoded`).
	// Called once per type when the application is built; the result is
	// cached by the caller.
	For(t reflect.Type) (Serde, error)
}

// Serde encodes and decodes values of one Go type. Safe for concurrent use.
type Serde interface {
	// Encode returns the encoded, framed value v (a value of the Serde's
	// type, passed as any; a non-nil pointer to one is accepted too).
	Encode(v any) ([]byte, error)
	// Decode decodes b into a new value and returns a pointer to it (a *T
	// as any). Errors about b name the type and what was wrong (bad
	// framing, unknown schema ID, truncated body) and wrap ErrDecode; an
	// error that does not is a schema registry that could not be asked
	// for b's writer schema (retrying may help).
	Decode(b []byte) (any, error)
	// Schema is the writer schema text: for Avro, compact JSON in
	// hamba/avro's attribute order, with logical types and defaults (the
	// text a schema registry stores); "" for JSON.
	Schema() string
	// ID is the schema ID written in the frame (0 for JSON): with a
	// registry, the registry's once Register has run.
	ID() uint32
}

// ErrDecode is wrapped by every error a Serde's Decode returns: the input
// is not a valid encoding of the Serde's type. Retrying will not help.
var ErrDecode = errors.New("schema: cannot decode")

// ErrUnsupported is wrapped by the errors of Codec.For that are about the
// Go type: a field of a kind the codec cannot encode, a name that is not a
// valid Avro name, an explicit schema that does not parse or fit the type.
var ErrUnsupported = errors.New("schema: unsupported type")

// typeError says why a type (at a field path) cannot be encoded.
type typeError struct {
	path string // Go type and field path, e.g. "bank.Foo.Bar"
	msg  string
}

func (e *typeError) Error() string { return "schema: " + e.path + ": " + e.msg }

func (e *typeError) Unwrap() error { return ErrUnsupported }

func unsupported(path, msg string) error { return &typeError{path: path, msg: msg} }
