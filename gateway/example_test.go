package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/gateway"
)

// The gateway lets a service in another language dispatch commands over
// HTTP: JSON in, the outcome or a typed error out, a bearer token required.
func Example() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	app, err := interlock.NewBuilder(interlock.WithLogger(quiet)).
		RegisterAggregate(bank.Accounts()).
		Build()
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer app.Close(ctx)
	for !app.Ready() { // until then the gateway answers 503, as /readyz does
		time.Sleep(10 * time.Millisecond)
	}

	gw, err := gateway.New(app, gateway.Config{Token: "s3cret", Logger: quiet})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux() // served by your HTTP server
	mux.Handle("/v1/", gw)

	post := func(path, token, body string) {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	id := interlock.NewID()
	post("/v1/commands/OpenAccount", "s3cret", `{"aggregateId": "`+id.String()+`", "payload": {"Owner": "ada"}}`)
	post("/v1/commands/WithdrawMoney", "s3cret", `{"aggregateId": "`+id.String()+`", "payload": {"Amount": 10}}`)
	post("/v1/commands/OpenAccount", "wrong", `{}`)
	// Output:
	// 200
	// 422
	// 401
}
