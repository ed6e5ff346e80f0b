package tracing_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/tracing"
)

// Tracing an application's commands, on an embedded Kafka. In a service,
// install a TracerProvider with an exporter (OTLP, say) globally with
// otel.SetTracerProvider and call tracing.Middleware() with no options.
func Example() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	app, err := interlock.NewBuilder(interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))).
		RegisterAggregate(bank.Accounts()).
		Use(tracing.Middleware(tracing.WithTracerProvider(tp))).
		Build()
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer app.Close(ctx)
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(interlock.NewID()), Owner: "ada"}); err != nil {
		panic(err)
	}

	ended := spans.Ended() // the handle span ends first, inside the dispatch
	handle, dispatch := ended[0], ended[1]
	fmt.Println(dispatch.Name(), "→", handle.Name())
	fmt.Println("one trace:", handle.SpanContext().TraceID() == dispatch.SpanContext().TraceID())
	fmt.Println("handle is the child of dispatch:", handle.Parent().SpanID() == dispatch.SpanContext().SpanID())
	// Output:
	// OpenAccount dispatch → OpenAccount handle
	// one trace: true
	// handle is the child of dispatch: true
}

// A projection whose handler runs in a span below the handle span of the
// command that wrote each event: the trace reads dispatch → handle →
// project.
func ExampleProject() {
	balances := projections.New("balances", projections.Sink[struct{}](nopSink{}))
	projections.On(balances, tracing.Project(func(ctx context.Context, _ struct{}, e projections.Event[bank.MoneyDeposited]) error {
		// ctx carries the span "MoneyDeposited project": spans started
		// from it, and commands dispatched with it, continue the trace.
		return nil
	}))
	app, err := interlock.NewBuilder().
		RegisterAggregate(bank.Accounts()).
		RegisterProjection(balances).
		Use(tracing.Middleware()).
		Build()
	_, _ = app, err
}
