package tracing_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/tracing"
)

// BenchmarkMiddleware is the cost the tracing middleware adds to a
// handled command: with no SDK (the global default), and recording every
// span with the SDK (no exporter).
func BenchmarkMiddleware(b *testing.B) {
	rec, _ := recorder(b)
	for _, bc := range []struct {
		name string
		opt  tracing.Option
	}{
		{"noop", tracing.WithTracerProvider(noop.NewTracerProvider())},
		{"sdk", tracing.WithTracerProvider(rec)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := tracing.Middleware(bc.opt)(func(context.Context, *middleware.Message) (middleware.Outcome, error) {
				return middleware.Outcome{Version: 1}, nil
			})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				msg := &middleware.Message{Side: middleware.Handle, Type: "DepositMoney", Aggregate: "account", Command: deposit{}, Metadata: middleware.Metadata{}}
				if _, err := h(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
