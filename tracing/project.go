package tracing

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/interlock-go/interlock/projections"
)

// Project wraps fn, a projection's handler of events of type E (for
// projections.On), in a span "<event type> project" of kind consumer whose
// parent is the context in the event's metadata: the handle span of the
// command that wrote it, when that command was traced. fn runs with the
// span in its ctx, so what it starts, or dispatches, continues the trace.
// The span has the messaging.* attributes that fit (the events topic,
// partition, offset, the event ID as messaging.message.id, the aggregate ID
// as the key) and interlock.aggregate, interlock.event_type,
// interlock.version and interlock.command_id; fn's error sets its status
// to Error. A batch retried after an error runs fn, and a span, again.
// The options are Middleware's.
func Project[E, T any](fn func(ctx context.Context, tx T, e projections.Event[E]) error, opts ...Option) func(ctx context.Context, tx T, e projections.Event[E]) error {
	t := newTracer(opts)
	return func(ctx context.Context, tx T, e projections.Event[E]) error {
		ctx = t.prop().Extract(ctx, propagation.MapCarrier(e.Metadata))
		ctx, span := t.tracer.Start(ctx, e.Type+" project", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			semconv.MessagingSystemKafka,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("project"),
			semconv.MessagingDestinationName(e.Position.Topic),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(e.Position.Partition))),
			semconv.MessagingKafkaOffset(int(e.Position.Offset)),
			semconv.MessagingMessageID(e.EventID.String()),
			semconv.MessagingKafkaMessageKey(e.AggregateID.String()),
			AggregateKey.String(e.AggregateType),
			EventTypeKey.String(e.Type),
			VersionKey.Int64(e.Version),
			CommandIDKey.String(e.CommandID.String()),
		))
		defer span.End()
		err := fn(ctx, tx, e)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	}
}
