package middleware

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/interlock-go/interlock/aggregate"
)

// LogOption configures Logging.
type LogOption interface{ applyLog(*logConfig) }

type logConfig struct {
	level    slog.Level
	payloads bool
}

type logOptionFunc func(*logConfig)

func (f logOptionFunc) applyLog(c *logConfig) { f(c) }

// LogLevel sets the level of applied and sent commands. Default
// slog.LevelInfo. Rejections are logged at Info too (they are answers, not
// faults), failures at Error.
func LogLevel(l slog.Level) LogOption {
	return logOptionFunc(func(c *logConfig) { c.level = l })
}

// LogPayloads adds the command value to each record. Off by default:
// payloads may hold personal data or secrets.
func LogPayloads() LogOption {
	return logOptionFunc(func(c *logConfig) { c.payloads = true })
}

// Logging logs one record per command when its outcome is known, with
// the message "interlock: command <outcome>": side, type, aggregate,
// aggregate and command IDs, correlation and causation IDs, outcome
// (applied, sent, rejected, failed), version, events emitted (Handle
// side), duration, and the reason of a rejection or failure. A query
// (registered with UseQuery) has no envelope: its record, "interlock:
// query <outcome>" (answered, rejected, failed), has the side, type,
// projection (as aggregate), outcome, duration and reason.
func Logging(log *slog.Logger, opts ...LogOption) Middleware {
	cfg := logConfig{level: slog.LevelInfo}
	for _, o := range opts {
		o.applyLog(&cfg)
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (Outcome, error) {
			start := time.Now()
			out, err := next(ctx, m)
			attrs := make([]slog.Attr, 0, 14)
			attrs = append(attrs,
				slog.String("side", m.Side.String()),
				slog.String("type", m.Type),
				slog.String("aggregate", m.Aggregate),
			)
			if env, ok := aggregate.EnvelopeOf(m.Command); ok {
				attrs = append(attrs,
					slog.String("aggregate_id", env.AggregateID.String()),
					slog.String("command_id", env.CommandID.String()),
					slog.String("correlation_id", env.CorrelationID),
				)
				if env.CausationID != "" {
					attrs = append(attrs, slog.String("causation_id", env.CausationID))
				}
			}
			level, outcome := cfg.level, "applied"
			var rej *aggregate.RejectedError
			switch {
			case errors.As(err, &rej):
				level, outcome = slog.LevelInfo, "rejected"
				attrs = append(attrs, slog.String("reason", rej.Reason))
			case err != nil:
				level, outcome = slog.LevelError, "failed"
				attrs = append(attrs, slog.String("err", err.Error()))
			case m.Async:
				outcome = "sent"
			case m.Side == Query:
				outcome = "answered"
			default:
				attrs = append(attrs, slog.Int64("version", out.Version))
				if m.Side == Handle {
					attrs = append(attrs, slog.Int("events", len(out.Events)))
				}
			}
			attrs = append(attrs, slog.String("outcome", outcome), slog.Duration("duration", time.Since(start)))
			kind := "command"
			if m.Side == Query {
				kind = "query"
			}
			if cfg.payloads {
				attrs = append(attrs, slog.Any(kind, m.Command))
			}
			log.LogAttrs(ctx, level, "interlock: "+kind+" "+outcome, attrs...)
			return out, err
		}
	}
}
