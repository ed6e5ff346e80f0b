package tracing_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/tracing"
)

// nopSink is an at-least-once projection sink with nothing to write.
type nopSink struct{}

func (nopSink) Apply(ctx context.Context, _ string, _ []projections.Checkpoint, fn func(context.Context, struct{}) error) error {
	return fn(ctx, struct{}{})
}

// TestTraceThroughKafka: each command makes one trace, dispatch → handle
// → project, whose handle span is the parent named by every event's
// traceparent header and of the projection's span for the event; a
// rejected command's trace has no event and says why.
func TestTraceThroughKafka(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	tp, rec := recorder(t)
	projected := make(chan trace.SpanContext, 10) // the span each projection handler runs in
	view := projections.New("traced", projections.Sink[struct{}](nopSink{}))
	projections.On(view, tracing.Project(func(ctx context.Context, _ struct{}, e projections.Event[bank.AccountOpened]) error {
		projected <- trace.SpanContextFromContext(ctx)
		return nil
	}, tracing.WithTracerProvider(tp)))
	projections.On(view, tracing.Project(func(ctx context.Context, _ struct{}, e projections.Event[bank.MoneyDeposited]) error {
		projected <- trace.SpanContextFromContext(ctx)
		return nil
	}, tracing.WithTracerProvider(tp)))
	app, err := interlock.NewBuilder(
		interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	).RegisterAggregate(bank.Accounts()).RegisterProjection(view).
		Use(tracing.Middleware(tracing.WithTracerProvider(tp))).Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())

	// The caller's own span: the commands' traces hang below it.
	callerCtx, caller := tp.Tracer("test").Start(ctx, "request")
	id := interlock.NewID()
	if _, err := interlock.Dispatch(callerCtx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
		t.Fatal(err)
	}
	if _, err := interlock.Dispatch(callerCtx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 100}); err != nil {
		t.Fatal(err)
	}
	_, err = interlock.Dispatch(callerCtx, app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 500})
	if !errors.Is(err, interlock.ErrRejected) {
		t.Fatalf("overdraft: %v, want a rejection", err)
	}
	caller.End()
	inHandlers := map[trace.SpanID]bool{}
	for range 2 {
		select {
		case sc := <-projected:
			inHandlers[sc.SpanID()] = true
		case <-ctx.Done():
			t.Fatal("the projection did not see both events")
		}
	}

	// A projection span ends just after its handler returns.
	var byName map[string]sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		byName = map[string]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			if _, dup := byName[s.Name()]; dup {
				t.Fatalf("two spans named %q", s.Name())
			}
			byName[s.Name()] = s
		}
		if len(byName) == 9 || time.Now().After(deadline) { // the caller's, 3 dispatch, 3 handle, 2 project
			break
		}
	}
	handles := map[trace.SpanID]string{} // handle span → command type
	for _, typ := range []string{"OpenAccount", "DepositMoney", "WithdrawMoney"} {
		d, h := byName[typ+" dispatch"], byName[typ+" handle"]
		if d == nil || h == nil {
			t.Fatalf("%s: dispatch span %v, handle span %v", typ, d != nil, h != nil)
		}
		if d.SpanKind() != trace.SpanKindProducer || h.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("%s: kinds %v and %v", typ, d.SpanKind(), h.SpanKind())
		}
		if d.Parent().SpanID() != caller.SpanContext().SpanID() {
			t.Errorf("%s dispatch: parent %v, want the caller's span", typ, d.Parent().SpanID())
		}
		if h.SpanContext().TraceID() != caller.SpanContext().TraceID() || h.Parent().SpanID() != d.SpanContext().SpanID() || !h.Parent().IsRemote() {
			t.Errorf("%s handle: trace %v parent %v, want trace %v below the dispatch span %v, across Kafka",
				typ, h.SpanContext().TraceID(), h.Parent().SpanID(), caller.SpanContext().TraceID(), d.SpanContext().SpanID())
		}
		handles[h.SpanContext().SpanID()] = typ
	}
	for event, cmd := range map[string]string{"AccountOpened": "OpenAccount", "MoneyDeposited": "DepositMoney"} {
		p := byName[event+" project"]
		if p == nil {
			t.Errorf("no span for the projection of %s", event)
			continue
		}
		if !inHandlers[p.SpanContext().SpanID()] {
			t.Errorf("the handler of %s did not run in its span", event)
		}
		if p.SpanKind() != trace.SpanKindConsumer || p.SpanContext().TraceID() != caller.SpanContext().TraceID() || handles[p.Parent().SpanID()] != cmd {
			t.Errorf("%s project: kind %v, trace %v, parent %v; want a consumer span in trace %v below the handle span of %s",
				event, p.SpanKind(), p.SpanContext().TraceID(), p.Parent().SpanID(), caller.SpanContext().TraceID(), cmd)
		}
	}
	if got := attrs(byName["WithdrawMoney handle"])["interlock.outcome"].AsString(); got != "rejected" {
		t.Errorf("the rejected withdrawal's handle span: outcome %q", got)
	}

	events := kafkatest.ReadAll(t, brokers, name+".bank-account.events")
	if len(events) != 2 {
		t.Fatalf("%d events, want 2 (the withdrawal was rejected)", len(events))
	}
	for _, e := range events {
		carrier := propagation.MapCarrier{}
		for _, h := range e.Headers {
			carrier[h.Key] = string(h.Value)
		}
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
		typ, _ := producer.Header(e, producer.HeaderType)
		if !sc.IsValid() || sc.TraceID() != caller.SpanContext().TraceID() {
			t.Errorf("event %s: traceparent %q, want one of trace %v", typ, carrier["traceparent"], caller.SpanContext().TraceID())
			continue
		}
		want := map[string]string{"AccountOpened": "OpenAccount", "MoneyDeposited": "DepositMoney"}[string(typ)]
		if got := handles[sc.SpanID()]; got != want {
			t.Errorf("event %s: parent span %v is the handle span of %q, want %q", typ, sc.SpanID(), got, want)
		}
	}
}
