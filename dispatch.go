package interlock

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/producer"
)

// Command is embedded in a command type with no result.
type Command = aggregate.Command

// CommandOf is embedded in a command type whose handler returns an R.
type CommandOf[R any] = aggregate.CommandOf[R]

// None is the result of a command that returns nothing.
type None = aggregate.None

// Position is where an event was written: topic, partition, offset.
type Position = producer.Position

// To returns the envelope of a command for aggregate id.
func To(id ulid.ULID) Command { return aggregate.To(id) }

// NewID returns a new aggregate ID.
func NewID() ulid.ULID { return ulid.Make() }

// Result is the outcome of a command that was applied.
type Result[R any] struct {
	// Value is what the handler returned.
	Value R
	// CommandID is the command's ID (assigned by Dispatch when it was zero).
	CommandID ulid.ULID
	// Version is the aggregate's version after the command.
	Version int64
	// Positions are where the command's events were written, in order;
	// for a command with more events than a reply can list (about 15 000),
	// the last of each partition, which is what waiting for a projection
	// (Projector.WaitFor, interlock.After) needs.
	Positions []Position
}

// Dispatch sends cmd to the processor that owns its aggregate and waits for
// the outcome: the handler's result once its events are committed, a
// *RejectedError (errors.Is ErrRejected; ErrConcurrency for a version
// conflict), an ErrFailed error, or an infrastructure error. If ctx ends
// first, Dispatch returns ctx's error and the command may still be applied:
// retry it with the same command ID (CommandOf.WithID). ctx's deadline
// travels with the command: a processor that reaches it later rejects it.
//
// The dispatch middleware registered on the builder runs around it.
func Dispatch[C aggregate.Cmd[R], R any](ctx context.Context, app *App, cmd C) (Result[R], error) {
	res, err := app.dispatch(ctx, cmd, false, func(raw json.RawMessage) (any, error) {
		var v R
		if len(raw) == 0 {
			return v, nil
		}
		err := json.Unmarshal(raw, &v)
		return v, err
	})
	value, _ := res.Value.(R)
	return Result[R]{Value: value, CommandID: res.CommandID, Version: res.Version, Positions: res.Positions}, err
}

// DispatchValue is Dispatch for a command whose type is known only at run
// time, such as one decoded by a gateway: cmd is a command value (not a
// pointer) of a registered type, and the result is the handler's result
// as JSON.
func DispatchValue(ctx context.Context, app *App, cmd any) (Result[json.RawMessage], error) {
	res, err := app.dispatch(ctx, cmd, false, func(raw json.RawMessage) (any, error) { return raw, nil })
	value, _ := res.Value.(json.RawMessage)
	return Result[json.RawMessage]{Value: value, CommandID: res.CommandID, Version: res.Version, Positions: res.Positions}, err
}

// Send writes cmd to its commands topic and returns its command ID once
// Kafka has it durably; it does not wait for the command to be handled.
// The dispatch middleware runs around it, with Message.Async set.
func Send[C aggregate.Cmd[R], R any](ctx context.Context, app *App, cmd C) (ulid.ULID, error) {
	res, err := app.dispatch(ctx, cmd, true, nil)
	return res.CommandID, err
}

// SendValue is Send for a command whose type is known only at run time,
// such as one a benchmark workload returns: cmd is a command value (not a
// pointer) of a registered type.
func SendValue(ctx context.Context, app *App, cmd any) (ulid.ULID, error) {
	res, err := app.dispatch(ctx, cmd, true, nil)
	return res.CommandID, err
}

// dispatch runs cmd (a command value) through the dispatch middleware to
// the dispatcher: Send when async, else Dispatch, whose JSON result decode
// turns into the result's Value.
func (a *App) dispatch(ctx context.Context, cmd any, async bool, decode func(json.RawMessage) (any, error)) (Result[any], error) {
	var res Result[any]
	t := reflect.TypeOf(cmd)
	m, d, err := a.message(cmd, async)
	if err != nil {
		return res, err
	}
	var rep *producer.Reply // the last reply the chain got, for its positions
	errorFor := func(string) error { return nil }
	if route, _, ok := d.Lookup(t); ok { // message checked it is
		errorFor = route.Type.ErrorFor
	}
	out, err := a.dispatchChain(func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
		if reflect.TypeOf(m.Command) != t {
			return middleware.Outcome{}, fmt.Errorf("%w: a middleware replaced the %v command with a %T", ErrFailed, t, m.Command)
		}
		env, err := prepare(m)
		if err != nil {
			return middleware.Outcome{}, err
		}
		if async {
			return middleware.Outcome{}, d.Send(ctx, m.Command, env, m.Metadata)
		}
		if rep, err = d.Dispatch(ctx, m.Command, env, m.Metadata); err != nil {
			return middleware.Outcome{}, err
		}
		return outcome(m.Command, rep, decode, errorFor)
	})(ctx, m)
	res.CommandID = m.Envelope().CommandID
	if err != nil {
		return res, err
	}
	res.Version, res.Value = out.Version, out.Result
	if rep != nil {
		res.Positions = rep.Positions
	}
	return res, nil
}

// outcome turns a reply into the outcome or the error Dispatch returns.
func outcome(cmd any, rep *producer.Reply, decode func(json.RawMessage) (any, error), errorFor func(string) error) (middleware.Outcome, error) {
	switch rep.Status {
	case producer.Applied:
		if rep.Result == nil && rep.Reason != "" {
			// Applied, its result too large for a reply.
			return middleware.Outcome{Version: rep.Version}, fmt.Errorf("interlock: %T %s", cmd, rep.Reason)
		}
		v, err := decode(rep.Result)
		if err != nil {
			return middleware.Outcome{}, fmt.Errorf("decoding the result of %T: %w", cmd, err)
		}
		return middleware.Outcome{Version: rep.Version, Result: v}, nil
	case producer.Rejected:
		rej := &RejectedError{Reason: rep.Reason, Err: errorFor(rep.Code)}
		if rep.Conflict != nil {
			rej.Conflict = &ConcurrencyError{Expected: rep.Conflict.Expected, Actual: rep.Conflict.Actual}
		}
		return middleware.Outcome{}, rej
	default:
		return middleware.Outcome{}, fmt.Errorf("%w: %s", ErrFailed, rep.Reason)
	}
}

// message prepares cmd's envelope and the message the dispatch chain
// carries.
func (a *App) message(cmd any, async bool) (*middleware.Message, *producer.Dispatcher, error) {
	t := reflect.TypeOf(cmd)
	if _, ok := aggregate.EnvelopeOf(cmd); !ok {
		return nil, nil, fmt.Errorf("%v does not embed interlock.Command", t)
	}
	m := &middleware.Message{Side: middleware.Dispatch, Command: cmd, Async: async, Metadata: middleware.Metadata{}}
	if _, err := prepare(m); err != nil {
		return nil, nil, err
	}
	d, err := a.dispatcherFor()
	if err != nil {
		return nil, nil, err
	}
	route, msg, ok := d.Lookup(t)
	if !ok {
		return nil, nil, fmt.Errorf("%w %v: register the aggregate that handles it", ErrUnknownCommand, t)
	}
	m.Type, m.Aggregate = msg.Name, route.Type.Name()
	return m, d, nil
}

// prepare fills in the defaults of m's command's envelope (a new command
// ID, the correlation ID) and returns it.
func prepare(m *middleware.Message) (aggregate.Command, error) {
	ptr := reflect.New(reflect.TypeOf(m.Command))
	ptr.Elem().Set(reflect.ValueOf(m.Command))
	p, ok := ptr.Interface().(interface{ Prepare() error })
	if !ok {
		return aggregate.Command{}, fmt.Errorf("%T does not embed interlock.Command", m.Command)
	}
	if err := p.Prepare(); err != nil {
		return aggregate.Command{}, fmt.Errorf("%T: %w", m.Command, err)
	}
	m.Command = ptr.Elem().Interface()
	env, _ := aggregate.EnvelopeOf(m.Command)
	return env, nil
}

// ToResult returns the envelope of a command, for aggregate id, whose
// handler returns an R.
func ToResult[R any](id ulid.ULID) CommandOf[R] { return aggregate.ToResult[R](id) }
