package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/middleware"
)

// Middleware returns the middleware that counts commands by side,
// aggregate, type and outcome and observes their latency. Register it on
// both sides with Builder.Use, first to see the whole chain's time, last
// to see the handler's (or the Kafka round trip's) alone.
//
// On the handle side it counts handler runs: a command in a transaction
// that aborts runs again and is counted again; interlock_transactions_total
// counts what committed. A retry answered with its first outcome does not
// run the chain (see interlock_command_duplicates_total).
//
// Registered with Builder.UseQuery as well, it counts queries under side
// "query" (the projection as aggregate, the query's type as type) with
// outcome "answered", "rejected" (a middleware refused it) or "failed", and
// observes their latency.
func (m *Metrics) Middleware() middleware.Middleware {
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, msg *middleware.Message) (middleware.Outcome, error) {
			start := time.Now()
			out, err := next(ctx, msg)
			side := msg.Side.String()
			m.commands.WithLabelValues(side, msg.Aggregate, msg.Type, outcomeOf(msg, err)).Inc()
			if !msg.Async {
				m.latency.WithLabelValues(side, msg.Aggregate, msg.Type).Observe(time.Since(start).Seconds())
			}
			return out, err
		}
	}
}

// outcomeOf names a command's outcome.
func outcomeOf(msg *middleware.Message, err error) string {
	switch {
	case errors.Is(err, aggregate.ErrRejected):
		return outcomeRejected
	case err != nil:
		return outcomeFailed
	case msg.Async:
		return outcomeSent
	case msg.Side == middleware.Query:
		return outcomeAnswered
	}
	return outcomeApplied
}
