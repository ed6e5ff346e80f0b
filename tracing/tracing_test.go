package tracing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/tracing"
)

type deposit struct {
	aggregate.CommandOf[int64]
	Amount int64
}

// recorder returns a tracer provider whose ended spans rec holds.
func recorder(t testing.TB) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, rec
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

// same reports whether a and b name the same span (one may be remote).
func same(a, b trace.SpanContext) bool {
	return a.IsValid() && a.TraceID() == b.TraceID() && a.SpanID() == b.SpanID()
}

// spanContextOf reads the trace context a carrier holds.
func spanContextOf(md middleware.Metadata) trace.SpanContext {
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), md))
}

// TestSpans: per side and outcome, the span's name, kind, status,
// attributes and events, and the trace context left in the metadata.
func TestSpans(t *testing.T) {
	t.Parallel()
	id, cmdID := ulid.Make(), ulid.Make()
	cmd := deposit{CommandOf: aggregate.ToResult[int64](id).WithID(cmdID), Amount: 5}
	cmd.CorrelationID = "corr-1"
	rejected := aggregate.Reject(errors.New("insufficient funds"))
	conflict := &aggregate.RejectedError{Reason: "stale", Conflict: &aggregate.ConcurrencyError{Expected: 1, Actual: 2}}
	failed := errors.New("broker unreachable")

	cases := []struct {
		name       string
		side       middleware.Side
		async      bool
		err        error
		wantName   string
		wantKind   trace.SpanKind
		wantStatus codes.Code
		want       map[attribute.Key]attribute.Value
		wantEvent  string
	}{
		{
			name: "dispatch applied", side: middleware.Dispatch,
			wantName: "DepositMoney dispatch", wantKind: trace.SpanKindProducer, wantStatus: codes.Unset,
			want: map[attribute.Key]attribute.Value{
				"messaging.system": attribute.StringValue("kafka"), "messaging.operation.type": attribute.StringValue("send"),
				"messaging.operation.name": attribute.StringValue("dispatch"),
				"interlock.outcome":        attribute.StringValue("applied"), "interlock.version": attribute.Int64Value(3),
			},
		},
		{
			name: "send", side: middleware.Dispatch, async: true,
			wantName: "DepositMoney dispatch", wantKind: trace.SpanKindProducer, wantStatus: codes.Unset,
			want: map[attribute.Key]attribute.Value{
				"messaging.operation.name": attribute.StringValue("send"), "interlock.outcome": attribute.StringValue("sent"),
			},
		},
		{
			name: "dispatch rejected", side: middleware.Dispatch, err: rejected,
			wantName: "DepositMoney dispatch", wantKind: trace.SpanKindProducer, wantStatus: codes.Error,
			want: map[attribute.Key]attribute.Value{
				"interlock.outcome": attribute.StringValue("rejected"), "error.type": attribute.StringValue("rejected"),
			},
			wantEvent: "exception",
		},
		{
			name: "dispatch conflict", side: middleware.Dispatch, err: conflict,
			wantName: "DepositMoney dispatch", wantKind: trace.SpanKindProducer, wantStatus: codes.Error,
			want: map[attribute.Key]attribute.Value{
				"interlock.outcome": attribute.StringValue("rejected"), "error.type": attribute.StringValue("concurrency_conflict"),
			},
			wantEvent: "exception",
		},
		{
			name: "dispatch failed", side: middleware.Dispatch, err: failed,
			wantName: "DepositMoney dispatch", wantKind: trace.SpanKindProducer, wantStatus: codes.Error,
			want: map[attribute.Key]attribute.Value{
				"interlock.outcome": attribute.StringValue("failed"), "error.type": attribute.StringValue("*errors.errorString"),
			},
			wantEvent: "exception",
		},
		{
			name: "handle applied", side: middleware.Handle,
			wantName: "DepositMoney handle", wantKind: trace.SpanKindConsumer, wantStatus: codes.Unset,
			want: map[attribute.Key]attribute.Value{
				"messaging.operation.type": attribute.StringValue("process"), "messaging.operation.name": attribute.StringValue("handle"),
				"interlock.outcome": attribute.StringValue("applied"), "interlock.version": attribute.Int64Value(3),
				"interlock.events": attribute.IntValue(2),
			},
		},
		{
			// The processor did its job: not an error on its span.
			name: "handle rejected", side: middleware.Handle, err: rejected,
			wantName: "DepositMoney handle", wantKind: trace.SpanKindConsumer, wantStatus: codes.Unset,
			want:      map[attribute.Key]attribute.Value{"interlock.outcome": attribute.StringValue("rejected")},
			wantEvent: "interlock.rejected",
		},
		{
			name: "handle failed", side: middleware.Handle, err: failed,
			wantName: "DepositMoney handle", wantKind: trace.SpanKindConsumer, wantStatus: codes.Error,
			want:      map[attribute.Key]attribute.Value{"interlock.outcome": attribute.StringValue("failed")},
			wantEvent: "exception",
		},
	}
	common := map[attribute.Key]attribute.Value{
		"interlock.aggregate":               attribute.StringValue("account"),
		"interlock.command_type":            attribute.StringValue("DepositMoney"),
		"interlock.command_id":              attribute.StringValue(cmdID.String()),
		"messaging.message.id":              attribute.StringValue(cmdID.String()),
		"messaging.message.conversation_id": attribute.StringValue("corr-1"),
		"messaging.kafka.message.key":       attribute.StringValue(id.String()),
		"messaging.system":                  attribute.StringValue("kafka"),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tp, rec := recorder(t)
			mw := tracing.Middleware(tracing.WithTracerProvider(tp), tracing.WithPropagator(propagation.TraceContext{}))

			// The caller's own span (dispatch side), or the dispatcher's
			// context in the command's headers (handle side).
			parentCtx, parent := tp.Tracer("test").Start(context.Background(), "caller")
			parent.End()
			md := middleware.Metadata{"tenant": "acme"}
			ctx := parentCtx
			if c.side == middleware.Handle {
				propagation.TraceContext{}.Inject(parentCtx, md)
				ctx = context.Background()
			}
			var inner trace.SpanContext // what the rest of the chain sees
			_, err := mw(func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
				inner = trace.SpanContextFromContext(ctx)
				if got := spanContextOf(m.Metadata); !same(got, inner) {
					t.Errorf("metadata carries %v, the chain runs in span %v", got, inner)
				}
				return middleware.Outcome{Version: 3, Events: []any{1, 2}}, c.err
			})(ctx, &middleware.Message{
				Side: c.side, Type: "DepositMoney", Aggregate: "account", Command: cmd, Async: c.async, Metadata: md,
			})
			if !errors.Is(err, c.err) {
				t.Fatalf("the middleware changed the error: %v", err)
			}

			spans := rec.Ended()
			if len(spans) != 2 {
				t.Fatalf("%d spans ended, want the caller's and the middleware's", len(spans))
			}
			s := spans[1]
			if s.Name() != c.wantName || s.SpanKind() != c.wantKind || s.Status().Code != c.wantStatus {
				t.Errorf("span %q kind %v status %v, want %q %v %v", s.Name(), s.SpanKind(), s.Status().Code, c.wantName, c.wantKind, c.wantStatus)
			}
			if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
				t.Errorf("span's parent %v, want the caller's span %v", s.Parent(), parent.SpanContext())
			}
			if !same(inner, s.SpanContext()) {
				t.Errorf("the chain ran in %v, not in the span %v", inner, s.SpanContext())
			}
			if got := spanContextOf(md); !same(got, s.SpanContext()) {
				t.Errorf("metadata left with %v, want the span %v (events inherit it)", got, s.SpanContext())
			}
			if md["tenant"] != "acme" {
				t.Error("the middleware dropped other metadata")
			}
			got := attrs(s)
			for _, want := range []map[attribute.Key]attribute.Value{common, c.want} {
				for k, v := range want {
					if got[k] != v {
						t.Errorf("attribute %s = %v, want %v", k, got[k].Emit(), v.Emit())
					}
				}
			}
			var events []string
			for _, e := range s.Events() {
				events = append(events, e.Name)
				if e.Name == "interlock.rejected" && (len(e.Attributes) != 1 || e.Attributes[0].Value.AsString() != rejected.Reason) {
					t.Errorf("rejection event attributes %v", e.Attributes)
				}
			}
			if (c.wantEvent == "") != (len(events) == 0) || (c.wantEvent != "" && events[0] != c.wantEvent) {
				t.Errorf("span events %v, want %q", events, c.wantEvent)
			}
		})
	}
}

// TestNoParent: a command with no trace context starts a trace of its
// own on either side.
func TestNoParent(t *testing.T) {
	t.Parallel()
	for _, side := range []middleware.Side{middleware.Dispatch, middleware.Handle} {
		tp, rec := recorder(t)
		md := middleware.Metadata{}
		_, err := tracing.Middleware(tracing.WithTracerProvider(tp))(func(context.Context, *middleware.Message) (middleware.Outcome, error) {
			return middleware.Outcome{}, nil
		})(context.Background(), &middleware.Message{Side: side, Type: "OpenAccount", Aggregate: "account", Command: deposit{}, Metadata: md})
		if err != nil {
			t.Fatal(err)
		}
		spans := rec.Ended()
		if len(spans) != 1 || spans[0].Parent().IsValid() {
			t.Fatalf("%v: spans %v, want one root span", side, spans)
		}
		// No propagator given and no global one set: W3C trace context.
		if got := spanContextOf(md); !same(got, spans[0].SpanContext()) {
			t.Errorf("%v: traceparent %q, want the span %v", side, md.Get("traceparent"), spans[0].SpanContext())
		}
	}
}

// fieldsPropagator injects under its own key, to show the middleware
// uses the propagator it is given.
type fieldsPropagator struct{ propagation.TraceContext }

func (fieldsPropagator) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	c.Set("x-trace", trace.SpanContextFromContext(ctx).TraceID().String())
}

func (fieldsPropagator) Fields() []string { return []string{"x-trace"} }

// TestPropagatorOption: the configured propagator writes the metadata.
func TestPropagatorOption(t *testing.T) {
	t.Parallel()
	tp, rec := recorder(t)
	md := middleware.Metadata{}
	_, _ = tracing.Middleware(tracing.WithTracerProvider(tp), tracing.WithPropagator(fieldsPropagator{}))(
		func(context.Context, *middleware.Message) (middleware.Outcome, error) {
			return middleware.Outcome{}, nil
		},
	)(context.Background(), &middleware.Message{Side: middleware.Dispatch, Type: "OpenAccount", Command: deposit{}, Metadata: md})
	if len(md) != 1 || md.Get("x-trace") != rec.Ended()[0].SpanContext().TraceID().String() {
		t.Fatalf("metadata %v, want only x-trace with the span's trace ID", md)
	}
}

type deposited struct{ Amount int64 }

// TestProject: a projection handler runs in a consumer span below the
// event's trace context, with the event's attributes; its error is the
// span's; an event with no trace context starts a trace of its own.
func TestProject(t *testing.T) {
	t.Parallel()
	tp, rec := recorder(t)
	parentCtx, parent := tp.Tracer("test").Start(context.Background(), "handle")
	parent.End()
	md := map[string]string{"tenant": "acme"}
	propagation.TraceContext{}.Inject(parentCtx, propagation.MapCarrier(md))
	eventID, aggID, cmdID := ulid.Make(), ulid.Make(), ulid.Make()
	event := func(md map[string]string) projections.Event[deposited] {
		var e projections.Event[deposited]
		e.EventID, e.AggregateID, e.AggregateType, e.Type, e.Version, e.CommandID = eventID, aggID, "account", "MoneyDeposited", 7, cmdID
		e.Data = deposited{Amount: 5}
		e.Position = producer.Position{Topic: "bank.account.events", Partition: 2, Offset: 41}
		e.Metadata = md
		return e
	}
	failure := errors.New("read model down")
	cases := []struct {
		name       string
		md         map[string]string
		err        error
		wantStatus codes.Code
	}{
		{"applied", md, nil, codes.Unset},
		{"failed", md, failure, codes.Error},
		{"untraced", nil, nil, codes.Unset},
	}
	for _, c := range cases {
		var inner trace.SpanContext
		err := tracing.Project(func(ctx context.Context, tx string, e projections.Event[deposited]) error {
			if tx != "tx" || e.Data.Amount != 5 {
				t.Errorf("%s: handler got %q, %+v", c.name, tx, e)
			}
			inner = trace.SpanContextFromContext(ctx)
			return c.err
		}, tracing.WithTracerProvider(tp))(context.Background(), "tx", event(c.md))
		if !errors.Is(err, c.err) {
			t.Fatalf("%s: err %v", c.name, err)
		}
		spans := rec.Ended()
		s := spans[len(spans)-1]
		if s.Name() != "MoneyDeposited project" || s.SpanKind() != trace.SpanKindConsumer || s.Status().Code != c.wantStatus || !same(inner, s.SpanContext()) {
			t.Errorf("%s: span %q kind %v status %v (handler in it: %v)", c.name, s.Name(), s.SpanKind(), s.Status().Code, same(inner, s.SpanContext()))
		}
		if traced := c.md != nil; traced != (s.Parent().SpanID() == parent.SpanContext().SpanID()) || !traced && s.Parent().IsValid() {
			t.Errorf("%s: parent %v, want the event's (%v) when traced, none otherwise", c.name, s.Parent(), parent.SpanContext())
		}
		got := attrs(s)
		for k, v := range map[attribute.Key]attribute.Value{
			"messaging.system":                   attribute.StringValue("kafka"),
			"messaging.operation.type":           attribute.StringValue("process"),
			"messaging.operation.name":           attribute.StringValue("project"),
			"messaging.destination.name":         attribute.StringValue("bank.account.events"),
			"messaging.destination.partition.id": attribute.StringValue("2"),
			"messaging.kafka.offset":             attribute.IntValue(41),
			"messaging.message.id":               attribute.StringValue(eventID.String()),
			"messaging.kafka.message.key":        attribute.StringValue(aggID.String()),
			"interlock.aggregate":                attribute.StringValue("account"),
			"interlock.event_type":               attribute.StringValue("MoneyDeposited"),
			"interlock.version":                  attribute.Int64Value(7),
			"interlock.command_id":               attribute.StringValue(cmdID.String()),
		} {
			if got[k] != v {
				t.Errorf("%s: attribute %s = %v, want %v", c.name, k, got[k].Emit(), v.Emit())
			}
		}
	}
}
