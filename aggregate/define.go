package aggregate

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"

	"github.com/oklog/ulid/v2"
)

// Definition is an aggregate type: its name, its command handlers and its
// event appliers. Create one with Define and register it on the application
// builder. A Definition is immutable once built and safe for concurrent use.
type Definition[S any] struct {
	declared []reflect.Type
	name     string
	handlers map[reflect.Type]handler[S]
	appliers map[reflect.Type]applier[S]
	commands []Message
	events   []Message
	errs     []error
	clone    func(*S) *S
	// rejections are the errors declared with Errors.
	rejections []error
}

// Option configures a Definition: a command handler or an event applier.
type Option[S any] interface{ apply(*Definition[S]) }

type optionFunc[S any] func(*Definition[S])

func (f optionFunc[S]) apply(d *Definition[S]) { f(d) }

type handler[S any] struct {
	run func(r *Root[S], cmd any) (any, error)
}

type applier[S any] struct {
	apply func(s *S, event any)
}

// Message describes one registered command or event type.
type Message struct {
	// Name is the type name written in record headers.
	Name string
	// Type is the Go type of the payload.
	Type reflect.Type
	// Result is the type a command's handler returns (None when it returns
	// nothing); nil for events.
	Result reflect.Type
}

var preparer = reflect.TypeFor[interface{ Prepare() error }]()

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Define creates the definition of an aggregate type named name (lowercase
// letters, digits and dashes: it becomes part of topic names) with state S.
// Mistakes in the options (a command handled twice, a bad name) are reported
// by Validate and by the application builder, not by a panic.
func Define[S any](name string, opts ...Option[S]) *Definition[S] {
	d := &Definition[S]{
		name:     name,
		handlers: map[reflect.Type]handler[S]{},
		appliers: map[reflect.Type]applier[S]{},
		clone:    cloner[S](),
	}
	if !namePattern.MatchString(name) {
		d.errs = append(d.errs, fmt.Errorf("aggregate name %q: use 1-63 lowercase letters, digits and dashes, starting with a letter", name))
	}
	if t := reflect.TypeFor[S](); t.Kind() != reflect.Struct {
		d.errs = append(d.errs, fmt.Errorf("aggregate %q: state type %v must be a struct", name, t))
	}
	for _, o := range opts {
		o.apply(d)
	}
	return d
}

// Handle registers h as the handler of command type C, a command that
// returns no result (it embeds aggregate.Command).
func Handle[S any, C Cmd[None]](h func(*Root[S], C) error) Option[S] {
	return register[S, C](reflect.TypeFor[None](), func(r *Root[S], cmd any) (any, error) {
		return None{}, h(r, cmd.(C))
	})
}

// HandleResult registers h as the handler of command type C, whose result
// of type R is returned to the caller of Dispatch.
func HandleResult[S any, C Cmd[R], R any](h func(*Root[S], C) (R, error)) Option[S] {
	return register[S, C](reflect.TypeFor[R](), func(r *Root[S], cmd any) (any, error) {
		return h(r, cmd.(C))
	})
}

func register[S, C any](result reflect.Type, run func(*Root[S], any) (any, error)) Option[S] {
	return optionFunc[S](func(d *Definition[S]) {
		t := reflect.TypeFor[C]()
		if _, dup := d.handlers[t]; dup {
			d.errs = append(d.errs, fmt.Errorf("aggregate %q: command %v is handled twice", d.name, t))
			return
		}
		if t.Kind() != reflect.Struct {
			d.errs = append(d.errs, fmt.Errorf("aggregate %q: command %v must be a struct embedding aggregate.Command", d.name, t))
			return
		}
		for i := range t.NumField() {
			if f := t.Field(i); f.Anonymous && f.Type.Kind() == reflect.Pointer && f.Type.Implements(preparer) {
				d.errs = append(d.errs, fmt.Errorf("aggregate %q: command %v embeds %v by pointer; embed it by value", d.name, t, f.Type))
				return
			}
		}
		d.handlers[t] = handler[S]{run: run}
		d.commands = append(d.commands, Message{Name: t.Name(), Type: t, Result: result})
	})
}

// Errors declares the errors this aggregate's handlers reject commands with
// that callers branch on, sentinels such as ErrInsufficientFunds. Across
// Kafka a rejection carries only its message, so errors.Is could not match
// it in the caller's process; a rejection whose handler error matches a
// declared error (errors.Is) also carries that error's message as its
// code, and the error Dispatch returns then matches the declared error
// too. The message is the code: changing it is a change of the contract
// between versions of the code. Default: none.
func Errors[S any](errs ...error) Option[S] {
	return optionFunc[S](func(d *Definition[S]) {
		for _, err := range errs {
			switch {
			case err == nil:
				d.errs = append(d.errs, fmt.Errorf("aggregate %q: Errors: a nil error", d.name))
			case d.ErrorFor(err.Error()) != nil:
				d.errs = append(d.errs, fmt.Errorf("aggregate %q: Errors: two errors say %q", d.name, err))
			default:
				d.rejections = append(d.rejections, err)
			}
		}
	})
}

// ErrorCode returns the code of a handler's error: the message of the
// first declared error (Errors) it matches, or "".
func (d *Definition[S]) ErrorCode(err error) string {
	for _, e := range d.rejections {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return ""
}

// ErrorFor returns the declared error (Errors) whose code is code, or nil.
func (d *Definition[S]) ErrorFor(code string) error {
	for _, e := range d.rejections {
		if code != "" && e.Error() == code {
			return e
		}
	}
	return nil
}

// Apply registers f as the applier of event type E: it folds one event into
// the state, both when a handler emits it and when the aggregate is rebuilt
// from the log. Appliers must be deterministic and must not fail.
func Apply[S, E any](f func(*S, E)) Option[S] {
	return optionFunc[S](func(d *Definition[S]) {
		t := reflect.TypeFor[E]()
		if _, dup := d.appliers[t]; dup {
			d.errs = append(d.errs, fmt.Errorf("aggregate %q: event %v has two appliers", d.name, t))
			return
		}
		if t.Kind() != reflect.Struct {
			d.errs = append(d.errs, fmt.Errorf("aggregate %q: event %v must be a struct", d.name, t))
			return
		}
		d.appliers[t] = applier[S]{apply: func(s *S, e any) {
			if p, ok := e.(*E); ok {
				f(s, *p)
				return
			}
			f(s, e.(E))
		}}
		d.events = append(d.events, Message{Name: t.Name(), Type: t})
	})
}

// Emits declares that the aggregate emits events of type E. Appliers
// declare their event types already; declare the others so that Validate
// (and so the application builder) fails when one has no applier, instead
// of the first command that emits it.
func Emits[S, E any]() Option[S] {
	return optionFunc[S](func(d *Definition[S]) { d.declared = append(d.declared, reflect.TypeFor[E]()) })
}

// Name is the aggregate type's name.
func (d *Definition[S]) Name() string { return d.name }

// StateType is the type of the aggregate's state, S.
func (d *Definition[S]) StateType() reflect.Type { return reflect.TypeFor[S]() }

// Restore returns the instance of an aggregate at version from its state
// (a *S, as a snapshot decodes it).
func (d *Definition[S]) Restore(id ulid.ULID, version int64, state any) (*Instance, error) {
	s, ok := state.(*S)
	if !ok {
		return nil, fmt.Errorf("aggregate %q: state is %T, want %T", d.name, state, s)
	}
	return &Instance{ID: id, Version: version, State: s}, nil
}

// Commands lists the command types the aggregate handles, in registration
// order.
func (d *Definition[S]) Commands() []Message { return d.commands }

// Events lists the event types the aggregate applies, in registration order.
func (d *Definition[S]) Events() []Message { return d.events }

// Validate reports every mistake in the definition.
func (d *Definition[S]) Validate() error {
	errs := append([]error(nil), d.errs...)
	if len(d.handlers) == 0 {
		errs = append(errs, fmt.Errorf("aggregate %q handles no command (register one with aggregate.Handle)", d.name))
	}
	for _, t := range d.declared {
		if _, ok := d.appliers[t]; !ok {
			errs = append(errs, fmt.Errorf("aggregate %q: event %v has no applier (register one with aggregate.Apply)", d.name, t))
		}
	}
	seen := map[string]reflect.Type{}
	for _, m := range append(append([]Message(nil), d.commands...), d.events...) {
		if prev, dup := seen[m.Name]; dup {
			errs = append(errs, fmt.Errorf("aggregate %q: types %v and %v share the name %q", d.name, prev, m.Type, m.Name))
		}
		seen[m.Name] = m.Type
	}
	return errors.Join(errs...)
}

// Instance is one aggregate as the runtime holds it: ID, version and state
// (a *S), and the commands that last changed it.
type Instance struct {
	ID      ulid.ULID
	Version int64
	State   any
	// Recent are the last commands that emitted events, oldest first, kept
	// by the runtime so that a retried command is applied at most once.
	Recent []Applied
}

// Applied is a command that emitted events, as recorded for idempotency.
type Applied struct {
	CommandID ulid.ULID
	// Version is the aggregate's version after the command.
	Version int64
	// Offset is the events-partition offset of the command's first event;
	// its Events events follow it.
	Offset int64
	Events int
	// Result is the handler's result as JSON, nil when it has none.
	Result []byte
}

// Remember returns recent with a appended, keeping at most the last window
// records. It never writes into recent's array, which clones share.
func Remember(recent []Applied, a Applied, window int) []Applied {
	if window <= 0 {
		return nil
	}
	out := make([]Applied, 0, min(len(recent)+1, window))
	if len(recent)+1 > window {
		recent = recent[len(recent)+1-window:]
	}
	return append(append(out, recent...), a)
}

// Find returns the record of command id among recent.
func Find(recent []Applied, id ulid.ULID) (Applied, bool) {
	for i := len(recent) - 1; i >= 0; i-- {
		if recent[i].CommandID == id {
			return recent[i], true
		}
	}
	return Applied{}, false
}

// Outcome is what a successful handler produced.
type Outcome struct {
	// Events are the emitted events, in order.
	Events []any
	// Result is the handler's result (None for a command with no result).
	Result any
}

// New returns the instance of a new aggregate: version 0, zero state.
func (d *Definition[S]) New(id ulid.ULID) *Instance {
	return &Instance{ID: id, State: new(S)}
}

// Clone returns a deep copy of inst, so a handler can run against it and the
// copy be discarded if the command is rejected or its transaction aborted.
func (d *Definition[S]) Clone(inst *Instance) *Instance {
	return &Instance{ID: inst.ID, Version: inst.Version, State: d.clone(inst.State.(*S)), Recent: inst.Recent}
}

// Execute runs the handler of cmd (a command value) against inst, which it
// changes in place: on success inst has every emitted event applied and its
// version advanced. A domain rejection is a *RejectedError (version
// conflicts included); any other error is a failure of the handler (a panic,
// an event without applier). On error, inst must be discarded.
func (d *Definition[S]) Execute(inst *Instance, cmd any) (out Outcome, err error) {
	h, ok := d.handlers[reflect.TypeOf(cmd)]
	if !ok {
		return out, &RejectedError{Reason: fmt.Sprintf("aggregate %q does not handle command %T", d.name, cmd)}
	}
	if env, ok := EnvelopeOf(cmd); ok && env.ExpectedVersion != nil && *env.ExpectedVersion != inst.Version {
		c := &ConcurrencyError{Expected: *env.ExpectedVersion, Actual: inst.Version}
		return out, &RejectedError{Reason: c.Error(), Conflict: c}
	}
	r := &Root[S]{id: inst.ID, version: inst.Version, state: inst.State.(*S), def: d}
	defer func() {
		if v := recover(); v != nil { // named only then: this runs for every command
			err = Recovered(fmt.Sprintf("aggregate %q: handler of %T", d.name, cmd), v)
		}
	}()
	res, herr := h.run(r, cmd)
	if r.err != nil {
		return out, r.err
	}
	if herr != nil {
		return out, Reject(herr)
	}
	inst.Version += int64(len(r.emitted))
	return Outcome{Events: r.emitted, Result: res}, nil
}

// Apply folds one recorded event into inst and advances its version. The
// event is a value or a pointer to one (what a decoder returns; the replay
// passes it without copying it into an interface first). It fails when the
// event's type has no applier, or its applier panics (a *PanicError; inst
// must then be discarded).
func (d *Definition[S]) Apply(inst *Instance, event any) (err error) {
	t := reflect.TypeOf(event)
	if t != nil && t.Kind() == reflect.Pointer {
		if reflect.ValueOf(event).IsNil() {
			return fmt.Errorf("aggregate %q: event %T is nil", d.name, event)
		}
		t = t.Elem()
	}
	ap, ok := d.appliers[t]
	if !ok {
		return fmt.Errorf("aggregate %q: event %T has no applier", d.name, event)
	}
	defer func() {
		if v := recover(); v != nil { // named only then: this runs for every event replayed
			err = Recovered(fmt.Sprintf("aggregate %q: applier of %T", d.name, event), v)
		}
	}()
	ap.apply(inst.State.(*S), event)
	inst.Version++
	return nil
}

// Type is the non-generic view of a Definition that the runtime drives.
// *Definition[S] implements it for every S.
type Type interface {
	Name() string
	StateType() reflect.Type
	Restore(id ulid.ULID, version int64, state any) (*Instance, error)
	Commands() []Message
	Events() []Message
	Validate() error
	New(id ulid.ULID) *Instance
	Clone(*Instance) *Instance
	Execute(inst *Instance, cmd any) (Outcome, error)
	Apply(inst *Instance, event any) error
	ErrorCode(err error) string
	ErrorFor(code string) error
}

var _ Type = (*Definition[struct{}])(nil)
