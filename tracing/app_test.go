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
	"github.com/interlock-go/interlock/tracing"
)

// TestTraceThroughKafka: each command makes one trace, dispatch → handle,
// whose handle span is the parent named by every event's traceparent
// header; a rejected command's trace has no event and says why.
func TestTraceThroughKafka(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	tp, rec := recorder(t)
	app, err := interlock.NewBuilder(
		interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	).RegisterAggregate(bank.Accounts()).Use(tracing.Middleware(tracing.WithTracerProvider(tp))).Build()
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

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if _, dup := byName[s.Name()]; dup {
			t.Fatalf("two spans named %q", s.Name())
		}
		byName[s.Name()] = s
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
