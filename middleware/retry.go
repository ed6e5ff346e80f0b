package middleware

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/interlock-go/interlock/aggregate"
)

// Backoff bounds the retries of RetryConflicts.
type Backoff struct {
	// Attempts is how many times a command is retried after its first
	// try. Default 3.
	Attempts int
	// Initial is the longest wait before the first retry; each next wait
	// may be twice as long, up to Max. Waits are drawn at random below
	// their bound ("full jitter"), so clients in conflict spread out.
	// Defaults 10ms and 1s.
	Initial, Max time.Duration
}

// Reload rebuilds a command that lost an expected-version race: read the
// aggregate (or a read model) again, decide again, and return the command
// to retry, with its new expected version. An error stops the retries and
// is returned to the caller.
type Reload[C any] func(ctx context.Context, cmd C, conflict *aggregate.ConcurrencyError) (C, error)

// RetryConflicts retries commands of type C that are rejected with
// aggregate.ErrConcurrency, on the Dispatch side (Send has no outcome to
// retry on; on the Handle side it does nothing: the processor always runs a
// handler on the latest state, so a conflict there can only be resolved by
// the caller's new decision). Before each retry it waits (see Backoff) and
// calls reload. A nil reload retries the command unchanged except for its
// expected version, set to the version the conflict reported: only right
// for commands valid whatever happened in between.
//
// The retried command keeps its command ID unless reload changes it: a
// rejected command wrote nothing, so its ID is still free. After the last
// attempt the conflict is returned.
func RetryConflicts[C any](b Backoff, reload Reload[C]) Middleware {
	if b.Attempts <= 0 {
		b.Attempts = 3
	}
	if b.Initial <= 0 {
		b.Initial = 10 * time.Millisecond
	}
	if b.Max < b.Initial {
		b.Max = max(time.Second, b.Initial)
	}
	return For(func(ctx context.Context, cmd C, m *Message, next Handler) (Outcome, error) {
		if m.Side != Dispatch || m.Async {
			return next(ctx, m)
		}
		bound := b.Initial
		for attempt := 0; ; attempt++ {
			out, err := next(ctx, m)
			var conflict *aggregate.ConcurrencyError
			if attempt == b.Attempts || !errors.As(err, &conflict) {
				return out, err
			}
			t := time.NewTimer(rand.N(bound) + 1)
			select {
			case <-ctx.Done():
				t.Stop()
				return out, err
			case <-t.C:
			}
			bound = min(2*bound, b.Max)
			if reload != nil {
				if cmd, err = reload(ctx, cmd, conflict); err != nil {
					return Outcome{}, err
				}
			} else {
				env, _ := aggregate.EnvelopeOf(cmd)
				v := conflict.Actual
				env.ExpectedVersion = &v
				aggregate.SetEnvelope(&cmd, env)
			}
			m.Command = cmd
		}
	})
}
