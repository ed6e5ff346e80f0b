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
	// Positions are where the command's events were written, in order.
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
	var res Result[R]
	var rep *producer.Reply // the last reply the chain got, for its positions
	m, d, err := app.message(&cmd, false)
	if err != nil {
		return res, err
	}
	out, err := app.dispatchChain(func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
		cmd, env, err := prepared[C](m)
		if err != nil {
			return middleware.Outcome{}, err
		}
		if rep, err = d.Dispatch(ctx, cmd, env, m.Metadata); err != nil {
			return middleware.Outcome{}, err
		}
		return outcome[R](cmd, rep)
	})(ctx, m)
	res.CommandID = m.Envelope().CommandID
	if err != nil {
		return res, err
	}
	res.Version = out.Version
	res.Value, _ = out.Result.(R)
	if rep != nil {
		res.Positions = rep.Positions
	}
	return res, nil
}

// outcome turns a reply into the outcome or the error Dispatch returns.
func outcome[R any](cmd any, rep *producer.Reply) (middleware.Outcome, error) {
	switch rep.Status {
	case producer.Applied:
		var v R
		if len(rep.Result) > 0 {
			if err := json.Unmarshal(rep.Result, &v); err != nil {
				return middleware.Outcome{}, fmt.Errorf("decoding the result of %T: %w", cmd, err)
			}
		}
		return middleware.Outcome{Version: rep.Version, Result: v}, nil
	case producer.Rejected:
		rej := &RejectedError{Reason: rep.Reason}
		if rep.Conflict != nil {
			rej.Conflict = &ConcurrencyError{Expected: rep.Conflict.Expected, Actual: rep.Conflict.Actual}
		}
		return middleware.Outcome{}, rej
	default:
		return middleware.Outcome{}, fmt.Errorf("%w: %s", ErrFailed, rep.Reason)
	}
}

// Send writes cmd to its commands topic and returns its command ID once
// Kafka has it durably; it does not wait for the command to be handled.
// The dispatch middleware runs around it, with Message.Async set.
func Send[C aggregate.Cmd[R], R any](ctx context.Context, app *App, cmd C) (ulid.ULID, error) {
	m, d, err := app.message(&cmd, true)
	if err != nil {
		return ulid.ULID{}, err
	}
	_, err = app.dispatchChain(func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
		cmd, env, err := prepared[C](m)
		if err != nil {
			return middleware.Outcome{}, err
		}
		return middleware.Outcome{}, d.Send(ctx, cmd, env, m.Metadata)
	})(ctx, m)
	return m.Envelope().CommandID, err
}

// message prepares cmd's envelope and the message the dispatch chain
// carries.
func (a *App) message(cmd any, async bool) (*middleware.Message, *producer.Dispatcher, error) {
	p, ok := cmd.(interface{ Prepare() error })
	if !ok {
		return nil, nil, fmt.Errorf("%T does not embed interlock.Command", cmd)
	}
	t := reflect.TypeOf(cmd).Elem()
	if err := p.Prepare(); err != nil {
		return nil, nil, fmt.Errorf("%v: %w", t, err)
	}
	d, err := a.dispatcherFor()
	if err != nil {
		return nil, nil, err
	}
	route, msg, ok := d.Lookup(t)
	if !ok {
		return nil, nil, fmt.Errorf("%w %v: register the aggregate that handles it", ErrUnknownCommand, t)
	}
	return &middleware.Message{
		Side: middleware.Dispatch, Type: msg.Name, Aggregate: route.Type.Name(),
		Command: reflect.ValueOf(cmd).Elem().Interface(), Async: async, Metadata: middleware.Metadata{},
	}, d, nil
}

// prepared returns the command at the end of the dispatch chain, with its
// envelope's defaults filled in (a middleware may have replaced it).
func prepared[C any](m *middleware.Message) (C, aggregate.Command, error) {
	cmd, ok := m.Command.(C)
	if !ok {
		var want C
		return want, aggregate.Command{}, fmt.Errorf("%w: a middleware replaced the %T command with a %T", ErrFailed, want, m.Command)
	}
	env, err := prepare(&cmd)
	m.Command = cmd
	return cmd, env, err
}

func prepare[C any](cmd *C) (aggregate.Command, error) {
	p, ok := any(cmd).(interface{ Prepare() error })
	if !ok {
		return aggregate.Command{}, fmt.Errorf("%T does not embed interlock.Command", *cmd)
	}
	if err := p.Prepare(); err != nil {
		return aggregate.Command{}, fmt.Errorf("%T: %w", *cmd, err)
	}
	env, _ := aggregate.EnvelopeOf(*cmd)
	return env, nil
}

// ToResult returns the envelope of a command, for aggregate id, whose
// handler returns an R.
func ToResult[R any](id ulid.ULID) CommandOf[R] { return aggregate.ToResult[R](id) }
