package interlock

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
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
// retry it with the same command ID (CommandOf.WithID).
func Dispatch[C aggregate.Cmd[R], R any](ctx context.Context, app *App, cmd C) (Result[R], error) {
	var res Result[R]
	env, err := prepare(&cmd)
	if err != nil {
		return res, err
	}
	d, err := app.dispatcherFor()
	if err != nil {
		return res, err
	}
	rep, err := d.Dispatch(ctx, cmd, env)
	if err != nil {
		return res, err
	}
	res.CommandID = env.CommandID
	switch rep.Status {
	case producer.Applied:
		res.Version, res.Positions = rep.Version, rep.Positions
		if len(rep.Result) > 0 {
			if err := json.Unmarshal(rep.Result, &res.Value); err != nil {
				return res, fmt.Errorf("decoding the result of %T: %w", cmd, err)
			}
		}
		return res, nil
	case producer.Rejected:
		rej := &RejectedError{Reason: rep.Reason}
		if rep.Conflict != nil {
			rej.Conflict = &ConcurrencyError{Expected: rep.Conflict.Expected, Actual: rep.Conflict.Actual}
		}
		return res, rej
	default:
		return res, fmt.Errorf("%w: %s", ErrFailed, rep.Reason)
	}
}

// Send writes cmd to its commands topic and returns its command ID once
// Kafka has it durably; it does not wait for the command to be handled.
func Send[C aggregate.Cmd[R], R any](ctx context.Context, app *App, cmd C) (ulid.ULID, error) {
	env, err := prepare(&cmd)
	if err != nil {
		return ulid.ULID{}, err
	}
	d, err := app.dispatcherFor()
	if err != nil {
		return ulid.ULID{}, err
	}
	return env.CommandID, d.Send(ctx, cmd, env)
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
