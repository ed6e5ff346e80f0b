// Package middleware runs cross-cutting concerns around commands: on the
// dispatcher side (around Dispatch and Send, in the caller's process) and
// around the handler in the processor (inside the command's transaction);
// and around queries (Ask, in the asking process).
//
// A Middleware wraps a Handler and returns a Handler, as in net/http. The
// application builder chains them (Builder.UseDispatch, UseHandle, Use for
// both command sides, UseQuery): the first registered is the outermost,
// so it sees a message first and its outcome last. [For] narrows a
// middleware to one command or query type with a typed function, no
// reflection.
//
// Built-ins, one file each: [Logging] (log/slog: type, IDs, outcome,
// duration, never payloads unless asked) and [RetryConflicts] (re-dispatch a
// command that lost an expected-version race, with backoff and a limit).
// Idempotency, expected versions, deadlines and correlation/causation IDs
// are not middleware: the runtime gives them to every command (see the
// interlock package). Metrics and tracing plug in as middleware as well.
package middleware

import (
	"context"
	"maps"

	"github.com/interlock-go/interlock/aggregate"
)

// Side says where a chain runs.
type Side uint8

const (
	// Dispatch is the caller's side: Dispatch and Send, before the command
	// is written to Kafka and until its reply comes back.
	Dispatch Side = iota + 1
	// Handle is the processor's side: around the aggregate's handler,
	// inside the transaction that writes the command's events. A command
	// whose outcome is already known (a retry with the same command ID)
	// does not run the handler, nor this chain, again.
	Handle
	// Query is around a query's handler (interlock.Ask), in the caller's
	// process: Message.Command holds the query, Message.Aggregate the
	// projection that answers it, and the Outcome's Result the answer.
	Query
)

// String returns "dispatch", "handle" or "query", as logs and metric
// labels show the side.
func (s Side) String() string {
	switch s {
	case Dispatch:
		return "dispatch"
	case Handle:
		return "handle"
	case Query:
		return "query"
	}
	return "unknown"
}

// Message is a command on its way through a chain.
type Message struct {
	// Side is where the chain runs.
	Side Side
	// Type is the command's type name, as written in record headers.
	Type string
	// Aggregate is the name of the aggregate type that handles it (of
	// the projection that answers it, for a query).
	Aggregate string
	// Command is the command (or query) value (a C, not a pointer). A middleware may
	// replace it with another value of the same type before calling next:
	// the command sent (or handled) is the one that reaches the end of the
	// chain.
	Command any
	// Async is set for Send: no reply is awaited, so the outcome is empty.
	Async bool
	// Metadata travels with the command as Kafka record headers (keys must
	// not start with "interlock-") and is copied onto every event the
	// command emits: the place for trace context, tenant IDs and the like.
	// Never nil inside a chain.
	Metadata Metadata
}

// Envelope returns the command's envelope: aggregate ID, command ID,
// correlation and causation IDs, expected version.
func (m *Message) Envelope() aggregate.Command {
	env, _ := aggregate.EnvelopeOf(m.Command)
	return env
}

// Metadata are a message's string headers.
type Metadata map[string]string

// Get returns the value of key, "" when absent (it implements the getter of
// OpenTelemetry's TextMapCarrier).
func (md Metadata) Get(key string) string { return md[key] }

// Set sets key to value.
func (md Metadata) Set(key, value string) { md[key] = value }

// Keys returns the keys, in no order.
func (md Metadata) Keys() []string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// Clone returns a copy.
func (md Metadata) Clone() Metadata { return maps.Clone(md) }

// Outcome is what a command produced.
type Outcome struct {
	// Version is the aggregate's version after the command (0 for Send).
	Version int64
	// Result is the handler's result (aggregate.None when it returns
	// nothing; nil for Send).
	Result any
	// Events are the events the handler emitted, in order; set on the
	// Handle side only. Middleware must not change them.
	Events []any
}

// Handler handles a message: the rest of the chain, down to the Kafka
// round trip (Dispatch side) or the aggregate's handler (Handle side). Its
// errors are those of Dispatch: a *aggregate.RejectedError for a rejection
// (errors.Is aggregate.ErrRejected, aggregate.ErrConcurrency for a version
// conflict), anything else a failure. A middleware that refuses a command
// returns a rejection of its own: aggregate.Reject(err).
type Handler func(ctx context.Context, m *Message) (Outcome, error)

// Middleware wraps a Handler.
type Middleware func(next Handler) Handler

// Chain returns one middleware that runs mws in order: mws[0] outermost.
// Nil entries are skipped.
func Chain(mws ...Middleware) Middleware {
	return func(next Handler) Handler {
		for i := len(mws) - 1; i >= 0; i-- {
			if mws[i] != nil {
				next = mws[i](next)
			}
		}
		return next
	}
}

// For returns a middleware that runs fn for commands of type C and passes
// every other command straight to next. fn gets the command typed; to
// change it, set m.Command before calling next.
func For[C any](fn func(ctx context.Context, cmd C, m *Message, next Handler) (Outcome, error)) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (Outcome, error) {
			cmd, ok := m.Command.(C)
			if !ok {
				return next(ctx, m)
			}
			return fn(ctx, cmd, m, next)
		}
	}
}
