package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/metrics"
)

// An application with metrics, on an embedded Kafka: the Metrics value is
// its observer and its middleware, watches it once built, and serves
// /metrics.
func Example() {
	m, err := metrics.New(nil) // or prometheus.DefaultRegisterer, or a registry of your own
	if err != nil {
		panic(err)
	}
	app, err := interlock.NewBuilder(
		interlock.WithObserver(m),
		interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	).RegisterAggregate(bank.Accounts()).Use(m.Middleware()).Build()
	if err != nil {
		panic(err)
	}
	m.Watch(app)
	mux := http.NewServeMux() // served by your HTTP server
	mux.Handle("/metrics", m.Handler())

	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer app.Close(ctx)
	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
		panic(err)
	}
	_, err = interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 10})
	fmt.Println(err)

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, "interlock_commands_total{") {
			fmt.Print(line)
		}
	}
	// Output:
	// command rejected: insufficient funds: balance 0, withdrawal 10
	// interlock_commands_total{aggregate="bank-account",outcome="applied",side="dispatch",type="OpenAccount"} 1
	// interlock_commands_total{aggregate="bank-account",outcome="applied",side="handle",type="OpenAccount"} 1
	// interlock_commands_total{aggregate="bank-account",outcome="rejected",side="dispatch",type="WithdrawMoney"} 1
	// interlock_commands_total{aggregate="bank-account",outcome="rejected",side="handle",type="WithdrawMoney"} 1
}
