package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/gateway"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/pgtest"
)

const token = "s3cret-t0ken"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newApp(t *testing.T, start bool) *interlock.App {
	t.Helper()
	pool, _ := pgtest.Pool(t)
	app, err := interlock.NewBuilder(interlock.WithBrokers(kafkatest.Brokers(t)...), interlock.WithName(kafkatest.Name(t)),
		interlock.WithPartitions(3), interlock.WithLogger(quiet())).
		RegisterAggregate(bank.Accounts()).RegisterProjection(bank.Balances("balances", pool)).Build()
	if err != nil {
		t.Fatal(err)
	}
	if start {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := app.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Close(context.Background()) })
		for deadline := time.Now().Add(30 * time.Second); !app.Ready(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("not ready")
			}
		}
	}
	return app
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

func (r response) code() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func post(t *testing.T, srv *httptest.Server, auth, path, body string) response {
	t.Helper()
	return do(t, srv, http.MethodPost, auth, path, body)
}

// do sends a request and decodes its answer, which must be JSON.
func do(t *testing.T, srv *httptest.Server, method, auth, path, body string) response {
	t.Helper()
	h := map[string]string{}
	if auth != "" {
		h["Authorization"] = auth
	}
	return doWith(t, srv, method, h, path, body)
}

// postWith is post with request headers of the caller's.
func postWith(t *testing.T, srv *httptest.Server, headers map[string]string, path, body string) response {
	t.Helper()
	return doWith(t, srv, http.MethodPost, headers, path, body)
}

// doWith is do with request headers of the caller's.
func doWith(t *testing.T, srv *httptest.Server, method string, headers map[string]string, path, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: the answer is not JSON: %v", path, err)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s: content type %q", path, resp.Header.Get("Content-Type"))
	}
	return response{resp.StatusCode, resp.Header, out}
}

func TestGateway(t *testing.T) {
	t.Parallel()
	app := newApp(t, true)
	g, err := gateway.New(app, gateway.Config{Token: token, MaxBody: 4096, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	bearer := "Bearer " + token
	id := interlock.NewID().String()
	cmdID := interlock.NewID().String()

	opened := post(t, srv, bearer, "/v1/commands/OpenAccount", `{"aggregateId":"`+id+`","payload":{"owner":"ada"}}`)
	if opened.status != 200 || opened.body["version"] != 1.0 {
		t.Fatalf("open: %d %v", opened.status, opened.body)
	}
	deposit := `{"aggregateId":"` + id + `","commandId":"` + cmdID + `","payload":{"amount":40}}`
	first := post(t, srv, bearer, "/v1/commands/DepositMoney", deposit)
	if first.status != 200 || fmt.Sprint(first.body["result"]) != "map[balance:40]" || first.body["commandId"] != cmdID {
		t.Fatalf("deposit: %d %v", first.status, first.body)
	}
	// A retry with the same command ID is applied once: the same answer.
	again := post(t, srv, bearer, "/v1/commands/DepositMoney", deposit)
	if fmt.Sprint(again.body) != fmt.Sprint(first.body) {
		t.Fatalf("retry: %v, want the first answer %v", again.body, first.body)
	}
	// Read your writes through the gateway.
	positions, _ := json.Marshal(first.body["positions"])
	q := post(t, srv, bearer, "/v1/queries/BalanceOf", `{"query":{"ID":"`+id+`"},"after":`+string(positions)+`}`)
	if q.status != 200 || fmt.Sprint(q.body["result"]) != "map[Balance:40 Events:2 Owner:ada]" {
		t.Fatalf("query: %d %v", q.status, q.body)
	}

	for _, tc := range []struct {
		name, auth, path, body string
		status                 int
		code                   string
		method                 string // default POST
	}{
		{"no token", "", "/v1/commands/DepositMoney", deposit, 401, "unauthorized", ""},
		{"wrong token", "Bearer nope", "/v1/commands/DepositMoney", deposit, 401, "unauthorized", ""},
		{"unknown command", bearer, "/v1/commands/Launch", `{}`, 404, "unknown_type", ""},
		{"unknown query", bearer, "/v1/queries/Nope", `{}`, 404, "unknown_type", ""},
		{"malformed", bearer, "/v1/commands/DepositMoney", `{"aggregateId":`, 400, "bad_request", ""},
		{"unknown field", bearer, "/v1/commands/DepositMoney", `{"aggregateId":"` + id + `","payload":{"amount":1,"currency":"EUR"}}`, 400, "bad_request", ""},
		{"bad aggregate ID", bearer, "/v1/commands/DepositMoney", `{"aggregateId":"nope","payload":{"amount":1}}`, 400, "bad_request", ""},
		{"too large", bearer, "/v1/commands/DepositMoney", `{"aggregateId":"` + id + `","payload":{"amount":1},"correlationId":"` + strings.Repeat("x", 5000) + `"}`, 413, "too_large", ""},
		{"rejected", bearer, "/v1/commands/DepositMoney", `{"aggregateId":"` + id + `","payload":{"amount":-5}}`, 422, "rejected", ""},
		{"conflict", bearer, "/v1/commands/DepositMoney", `{"aggregateId":"` + id + `","expectedVersion":1,"payload":{"amount":5}}`, 409, "concurrency", ""},
		{"a GET of a command", bearer, "/v1/commands/DepositMoney", "", 405, "method_not_allowed", http.MethodGet},
		{"a GET of a query", bearer, "/v1/queries/BalanceOf", "", 405, "method_not_allowed", http.MethodGet},
		{"an unknown route", bearer, "/v1/events", `{}`, 404, "not_found", ""},
		{"no type", bearer, "/v1/commands/", `{}`, 404, "not_found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := do(t, srv, method, tc.auth, tc.path, tc.body)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%d %v, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if tc.status == 405 && r.header.Get("Allow") != http.MethodPost {
				t.Errorf("405 with Allow %q, want POST", r.header.Get("Allow"))
			}
		})
	}
	// A rejection with an error the aggregate declared names it.
	if r := post(t, srv, bearer, "/v1/commands/WithdrawMoney", `{"aggregateId":"`+id+`","payload":{"amount":1000}}`); r.status != 422 ||
		r.body["error"].(map[string]any)["reason"] != bank.ErrInsufficientFunds.Error() {
		t.Errorf("overdraft: %d %v, want 422 with reason %q", r.status, r.body, bank.ErrInsufficientFunds)
	}
	// The deposit was applied once, whatever came after.
	b := post(t, srv, bearer, "/v1/queries/BalanceOf", `{"query":{"ID":"`+id+`"},"after":`+string(positions)+`}`)
	if fmt.Sprint(b.body["result"]) != "map[Balance:40 Events:2 Owner:ada]" {
		t.Fatalf("after the errors: %v", b.body)
	}
	// And in the log, the system of record: the deposit sent twice over
	// HTTP is one event, at the version and position its answer gave.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var events []string
	err = app.ReadEvents(ctx, interlock.EventQuery{Aggregate: "bank-account", ID: ulid.MustParseStrict(id)}, func(e interlock.StoredEvent) error {
		events = append(events, fmt.Sprintf("v%d %s %s @%d", e.Version, e.Type, e.CommandID, e.Position.Offset))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pos := first.body["positions"].([]any)[0].(map[string]any)
	if want := fmt.Sprintf("v2 MoneyDeposited %s @%d", cmdID, int64(pos["offset"].(float64))); len(events) != 2 || events[1] != want {
		t.Errorf("the account's events: %q, want [v1 AccountOpened ..., %s]", events, want)
	}

	// An Idempotency-Key header stands for a command ID: the same key for
	// the same aggregate is the same command, applied once.
	keyed := map[string]string{"Authorization": bearer, "Idempotency-Key": "payment-9"}
	pay := `{"aggregateId":"` + id + `","payload":{"amount":2}}`
	k1 := postWith(t, srv, keyed, "/v1/commands/DepositMoney", pay)
	if want := aggregate.KeyID(ulid.MustParseStrict(id), "DepositMoney:payment-9").String(); k1.status != 200 || k1.body["commandId"] != want {
		t.Fatalf("deposit with an Idempotency-Key: %d %v, want command ID %s", k1.status, k1.body, want)
	}
	if k2 := postWith(t, srv, keyed, "/v1/commands/DepositMoney", pay); fmt.Sprint(k2.body) != fmt.Sprint(k1.body) {
		t.Fatalf("retry with the same Idempotency-Key: %v, want the first answer %v", k2.body, k1.body)
	}
	// The same key on another command type is another command.
	w := postWith(t, srv, keyed, "/v1/commands/WithdrawMoney", pay)
	if w.status != 200 || w.body["commandId"] == k1.body["commandId"] || w.body["version"] == k1.body["version"] {
		t.Fatalf("a withdrawal with the deposit's Idempotency-Key: %d %v, want a command of its own (deposit %v)", w.status, w.body, k1.body)
	}
	both := `{"aggregateId":"` + id + `","commandId":"` + cmdID + `","payload":{"amount":2}}`
	if r := postWith(t, srv, keyed, "/v1/commands/DepositMoney", both); r.status != 400 || r.code() != "bad_request" {
		t.Fatalf("commandId and Idempotency-Key together: %d %v, want 400", r.status, r.body)
	}
	positions, _ = json.Marshal(w.body["positions"])
	b = post(t, srv, bearer, "/v1/queries/BalanceOf", `{"query":{"ID":"`+id+`"},"after":`+string(positions)+`}`)
	if fmt.Sprint(b.body["result"]) != "map[Balance:40 Events:4 Owner:ada]" {
		t.Fatalf("after the keyed deposit, its retry and the keyed withdrawal: %v, want the deposit applied once and the withdrawal too", b.body)
	}
}

func TestGatewayNotReadyAndTimeout(t *testing.T) {
	t.Parallel()
	if _, err := gateway.New(newApp(t, false), gateway.Config{}); err == nil {
		t.Fatal("a gateway without a token was built")
	}
	g, err := gateway.New(newApp(t, false), gateway.Config{Token: token, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	body := `{"aggregateId":"` + interlock.NewID().String() + `","payload":{"owner":"ada"}}`
	if r := post(t, srv, "Bearer "+token, "/v1/commands/OpenAccount", body); r.status != 503 || r.code() != "not_ready" {
		t.Fatalf("not started: %d %v", r.status, r.body)
	}
	slow, err := gateway.New(newApp(t, true), gateway.Config{Token: token, Timeout: time.Nanosecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(slow)
	defer srv2.Close()
	if r := post(t, srv2, "Bearer "+token, "/v1/commands/OpenAccount", body); r.status != 504 || r.code() != "timeout" {
		t.Fatalf("timeout: %d %v", r.status, r.body)
	}
}
