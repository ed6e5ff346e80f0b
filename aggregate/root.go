package aggregate

import (
	"fmt"
	"reflect"

	"github.com/oklog/ulid/v2"
)

// Root is the aggregate a handler works on: its identity, its version and
// its state. Handlers decide with State and record what happened with Emit.
type Root[S any] struct {
	id      ulid.ULID
	version int64
	state   *S
	def     *Definition[S]
	emitted []any
	err     error
}

// ID is the aggregate's ID.
func (r *Root[S]) ID() ulid.ULID { return r.id }

// Version is the aggregate's version: the number of events applied to it,
// including those emitted by the running handler. 0 means it does not exist
// yet (the command is its first).
func (r *Root[S]) Version() int64 { return r.version + int64(len(r.emitted)) }

// IsNew reports whether the aggregate had no events before this command.
func (r *Root[S]) IsNew() bool { return r.version == 0 }

// State is the aggregate's current state, with every emitted event applied.
// Handlers read it; only appliers change it.
func (r *Root[S]) State() *S { return r.state }

// Emit applies the event to the state and records it to be written when the
// handler returns nil. The event's type must have an applier on this
// aggregate; otherwise the command fails with an error naming the type.
func (r *Root[S]) Emit(event any) {
	if r.err != nil {
		return
	}
	t := reflect.TypeOf(event)
	ap, ok := r.def.appliers[t]
	if !ok {
		r.err = fmt.Errorf("aggregate %q: emitted event %v has no applier (register one with aggregate.Apply)", r.def.name, t)
		return
	}
	ap.apply(r.state, event)
	r.emitted = append(r.emitted, event)
}
