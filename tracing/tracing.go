// Package tracing traces commands with OpenTelemetry, from Dispatch
// through the processor to every event the command writes and into the
// projections that read them, with W3C trace context in Kafka record
// headers.
//
// Register the middleware on both sides:
//
//	interlock.NewBuilder(...).RegisterAggregate(accounts).Use(tracing.Middleware())
//
// On the dispatch side it starts a span "<type> dispatch" (kind producer,
// a child of any span in the caller's ctx) and injects its context into
// the message's metadata, which travels as the command record's headers
// (traceparent, and tracestate when there is one). On the handle side it
// extracts that context, starts the child span "<type> handle" (kind
// consumer) around the handler, and injects the handle span's context
// into the metadata again: every event the command writes carries it, so
// the events' traceparent names the handle span as their parent.
//
// Spans get the messaging.* attributes of OpenTelemetry's semantic
// conventions that fit (messaging.system "kafka", the operation, the
// command ID as messaging.message.id, the correlation ID as
// messaging.message.conversation_id, the aggregate ID as
// messaging.kafka.message.key) and Interlock's own: interlock.aggregate,
// interlock.command_type, interlock.command_id, interlock.outcome
// (applied, rejected, failed, sent), interlock.version and, on the handle
// side, interlock.events. A failure sets the span's status to Error and
// records the error. A rejection is an error for the caller (the dispatch
// span's status is Error) but not for the processor, which did its job:
// the handle span records it as an event with the reason, like an HTTP
// server span for a 4xx answer.
//
// # Continuing a trace from an event
//
// [Project] wraps a projection's event handler in a span "<event type>
// project" (kind consumer), a child of the handle span named by the
// event's traceparent, and runs the handler in it:
//
//	projections.On(balances, tracing.Project(onDeposited))
//
// The trace then reads dispatch → handle → project, for each event. Any
// other reader of the events topic (a Kafka Connect or Flink job, a
// consumer of your own) continues it the same way: extract the context
// from the record's headers with the same propagator and start its span
// as a child (or, for a batch of events, with one link per event):
//
//	carrier := propagation.MapCarrier{}
//	for _, h := range record.Headers {
//		carrier[h.Key] = string(h.Value)
//	}
//	ctx = propagation.TraceContext{}.Extract(ctx, carrier)
//	ctx, span := tracer.Start(ctx, eventType+" project", trace.WithSpanKind(trace.SpanKindConsumer))
//	defer span.End()
package tracing

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/middleware"
)

// ScopeName is the instrumentation scope of the tracer the middleware
// gets from its TracerProvider.
const ScopeName = "github.com/interlock-go/interlock/tracing"

// Attribute keys of Interlock's own span attributes.
const (
	// AggregateKey is the name of the aggregate type that handles the
	// command.
	AggregateKey = attribute.Key("interlock.aggregate")
	// CommandTypeKey is the command's type name, as in record headers.
	CommandTypeKey = attribute.Key("interlock.command_type")
	// CommandIDKey is the command's ID.
	CommandIDKey = attribute.Key("interlock.command_id")
	// OutcomeKey is applied, rejected, failed, or sent (Send).
	OutcomeKey = attribute.Key("interlock.outcome")
	// VersionKey is the aggregate's version after an applied command.
	VersionKey = attribute.Key("interlock.version")
	// EventsKey is how many events the handler emitted (handle side).
	EventsKey = attribute.Key("interlock.events")
	// ReasonKey is a rejection's reason, on the handle span's
	// "interlock.rejected" event.
	ReasonKey = attribute.Key("interlock.reason")
	// EventTypeKey is an event's type name (projection spans).
	EventTypeKey = attribute.Key("interlock.event_type")
)

// Option configures Middleware.
type Option interface{ apply(*config) }

type config struct {
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTracerProvider sets where spans go. Default: the global provider
// (otel.SetTracerProvider), also when it is set after Middleware is
// called.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.provider = tp })
}

// WithPropagator sets how trace context is written to and read from the
// metadata (record headers). Default: the global propagator
// (otel.SetTextMapPropagator) or, while none is set (the global default
// propagates nothing), W3C trace context (propagation.TraceContext).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) { c.propagator = p })
}

// Middleware returns the tracing middleware, for both sides
// (Builder.Use). Register it first, so its spans cover the other
// middleware.
func Middleware(opts ...Option) middleware.Middleware {
	return newTracer(opts).wrap
}

func newTracer(opts []Option) *tracer {
	var cfg config
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.provider == nil {
		cfg.provider = otel.GetTracerProvider()
	}
	return &tracer{
		tracer:     cfg.provider.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		propagator: cfg.propagator,
	}
}

type tracer struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator // nil: the global one, or W3C
}

func (t *tracer) prop() propagation.TextMapPropagator {
	if t.propagator != nil {
		return t.propagator
	}
	if p := otel.GetTextMapPropagator(); len(p.Fields()) > 0 {
		return p
	}
	return propagation.TraceContext{}
}

func (t *tracer) wrap(next middleware.Handler) middleware.Handler {
	return func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
		prop := t.prop()
		kind, name, op := trace.SpanKindProducer, "dispatch", semconv.MessagingOperationTypeSend
		if m.Side == middleware.Handle {
			kind, name, op = trace.SpanKindConsumer, "handle", semconv.MessagingOperationTypeProcess
			ctx = prop.Extract(ctx, m.Metadata)
		}
		opName := name
		if m.Async {
			opName = "send"
		}
		ctx, span := t.tracer.Start(ctx, m.Type+" "+name, trace.WithSpanKind(kind), trace.WithAttributes(
			semconv.MessagingSystemKafka,
			op,
			semconv.MessagingOperationName(opName),
			AggregateKey.String(m.Aggregate),
			CommandTypeKey.String(m.Type),
		))
		defer span.End()
		prop.Inject(ctx, m.Metadata)
		if !span.IsRecording() {
			// No SDK, or not sampled: the context flows on, nothing to record.
			return next(ctx, m)
		}
		out, err := next(ctx, m)
		record(span, m, out, err)
		return out, err
	}
}

// record sets the attributes of a command's outcome on span.
func record(span trace.Span, m *middleware.Message, out middleware.Outcome, err error) {
	// The envelope as it reached the end of the chain: a middleware
	// may have replaced the command.
	env := m.Envelope()
	span.SetAttributes(
		CommandIDKey.String(env.CommandID.String()),
		semconv.MessagingMessageID(env.CommandID.String()),
		semconv.MessagingKafkaMessageKey(env.AggregateID.String()),
	)
	if env.CorrelationID != "" {
		span.SetAttributes(semconv.MessagingMessageConversationID(env.CorrelationID))
	}
	var rej *aggregate.RejectedError
	switch {
	case errors.As(err, &rej):
		span.SetAttributes(OutcomeKey.String("rejected"))
		if m.Side == middleware.Handle {
			span.AddEvent("interlock.rejected", trace.WithAttributes(ReasonKey.String(rej.Reason)))
			break
		}
		errType := "rejected"
		if errors.Is(err, aggregate.ErrConcurrency) {
			errType = "concurrency_conflict"
		}
		span.SetAttributes(semconv.ErrorTypeKey.String(errType))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	case err != nil:
		span.SetAttributes(OutcomeKey.String("failed"), semconv.ErrorType(err))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	case m.Async:
		span.SetAttributes(OutcomeKey.String("sent"))
	default:
		span.SetAttributes(OutcomeKey.String("applied"), VersionKey.Int64(out.Version))
		if m.Side == middleware.Handle {
			span.SetAttributes(EventsKey.Int(len(out.Events)))
		}
	}
}
