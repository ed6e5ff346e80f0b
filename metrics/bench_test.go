package metrics_test

import (
	"context"
	"testing"

	"github.com/interlock-go/interlock/middleware"
)

// BenchmarkMiddleware is the cost the metrics middleware adds to a
// handled command.
func BenchmarkMiddleware(b *testing.B) {
	m := mustNew(b, nil)
	h := m.Middleware()(func(context.Context, *middleware.Message) (middleware.Outcome, error) {
		return middleware.Outcome{Version: 1}, nil
	})
	msg := &middleware.Message{Side: middleware.Handle, Type: "DepositMoney", Aggregate: "account", Command: deposit{}, Metadata: middleware.Metadata{}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}
