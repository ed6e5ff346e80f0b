package service

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/logbuf"
)

type fakeHealth struct{ live, ready bool }

func (f fakeHealth) Live() bool  { return f.live }
func (f fakeHealth) Ready() bool { return f.ready }

// TestProbes: each endpoint answers 200 or 503 with a one-line JSON body
// from the application's state, and /metrics is the metrics handler.
func TestProbes(t *testing.T) {
	t.Parallel()
	metricsHandler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics here\n") })
	cases := []struct {
		health     fakeHealth
		method     string
		path       string
		code       int
		body       string
		cacheCtrl  string
		jsonCTtype bool
	}{
		{fakeHealth{true, true}, "GET", "/healthz", 200, `{"live":true}`, "no-store", true},
		{fakeHealth{true, true}, "GET", "/readyz", 200, `{"ready":true}`, "no-store", true},
		{fakeHealth{true, false}, "GET", "/healthz", 200, `{"live":true}`, "no-store", true},
		{fakeHealth{true, false}, "GET", "/readyz", 503, `{"ready":false}`, "no-store", true},
		{fakeHealth{false, false}, "GET", "/healthz", 503, `{"live":false}`, "no-store", true},
		{fakeHealth{false, true}, "HEAD", "/healthz", 503, `{"live":false}`, "no-store", true}, // a server drops the body
		{fakeHealth{true, true}, "GET", "/metrics", 200, "metrics here", "", false},
		{fakeHealth{true, true}, "POST", "/readyz", 405, "Method Not Allowed", "", false},
		{fakeHealth{true, true}, "GET", "/", 404, "404 page not found", "", false},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		httpHandler(c.health, metricsHandler).ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.code || strings.TrimSpace(rec.Body.String()) != c.body || rec.Header().Get("Cache-Control") != c.cacheCtrl ||
			(rec.Header().Get("Content-Type") == "application/json") != c.jsonCTtype {
			t.Errorf("%s %s with %+v: %d %q (%s, %s), want %d %q", c.method, c.path, c.health, rec.Code, rec.Body,
				rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"), c.code, c.body)
		}
	}
}

// testInvocation returns the invocation of serve with args for the bank,
// its logs going to logs.
func testInvocation(t *testing.T, logs io.Writer, e env, args ...string) *invocation {
	t.Helper()
	return serveInvocation(t, logs, e, bankBuild, args...)
}

// TestServeHTTP runs serve's application on a real listener: /metrics,
// /healthz and /readyz answer while it runs, the metrics and tracing
// middleware are in the chain (a command is counted and carries its
// caller's trace context to its event), /metrics serves every family of
// the processor (its observer and counters are wired), and cancelling ctx
// closes the application and the HTTP server.
func TestServeHTTP(t *testing.T) {
	t.Parallel()
	args := []string{"--name", kafkatest.Name(t), "--http", "127.0.0.1:0"}
	if kafkatest.Real() {
		args = append(args, "--brokers", strings.Join(kafkatest.Brokers(t), ","))
	}
	logs := &logbuf.Buffer{}
	inv := testInvocation(t, logs, env{}, args...)
	cfg := inv.cfg
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve's log:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svc, err := newServer(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.close()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	// Not started: both probes say no, without asking the App.
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		svc.handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s before the start: %d %s", path, rec.Code, rec.Body)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.run(runCtx, ln) }()
	defer func() {
		stop()
		<-done
	}()

	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	scrape := func() map[string]float64 {
		t.Helper()
		code, body := get("/metrics")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics: %d %s", code, body)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("parsing /metrics: %v", err)
		}
		out := map[string]float64{}
		for name, mf := range mfs {
			for _, m := range mf.GetMetric() {
				switch {
				case m.Counter != nil:
					out[name] += m.GetCounter().GetValue()
				case m.Gauge != nil:
					out[name] += m.GetGauge().GetValue()
				case m.Histogram != nil:
					out[name] += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		return out
	}
	// Readiness is asked once every partition's restore is reported (the
	// metric is written after the restore), not during one.
	for deadline := time.Now().Add(time.Minute); scrape()["interlock_restore_duration_seconds"] < 6; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the six partitions were never restored")
		}
	}
	// The restores may end before Start returns, and the probes say no
	// until it has.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		code, body := get("/readyz")
		if code == http.StatusOK && strings.TrimSpace(body) == `{"ready":true}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %s", code, body)
		}
	}
	if code, body := get("/healthz"); code != http.StatusOK || strings.TrimSpace(body) != `{"live":true}` {
		t.Fatalf("/healthz: %d %s", code, body)
	}

	// A command from a caller with a trace.
	caller := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled, Remote: true,
	})
	id := interlock.NewID()
	if _, err := interlock.Dispatch(trace.ContextWithRemoteSpanContext(ctx, caller), svc.app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
		t.Fatal(err)
	}
	// Every family of the processor is served: non-zero where the command
	// counted (dispatch and handle), present for the others.
	nonZero := []string{"interlock_commands_total", "interlock_command_duration_seconds", "interlock_transactions_total",
		"interlock_transaction_commands", "interlock_transaction_duration_seconds", "interlock_restore_duration_seconds",
		"interlock_snapshot_misses_total", "go_goroutines"}
	present := []string{"interlock_events_replayed_total", "interlock_snapshot_hits_total", "interlock_snapshot_writes_total",
		"interlock_snapshot_store_errors_total", "interlock_snapshot_write_errors_total", "interlock_command_duplicates_total", "interlock_consumer_lag"}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m := scrape()
		var missing []string
		for _, name := range nonZero {
			if m[name] == 0 {
				missing = append(missing, name+" (zero or absent)")
			}
		}
		for _, name := range present {
			if _, ok := m[name]; !ok {
				missing = append(missing, name+" (absent)")
			}
		}
		if m["interlock_commands_total"] < 2 {
			missing = append(missing, "interlock_commands_total: the command on both sides")
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a command, /metrics lacks %v; it shows %v", missing, m)
		}
	}
	events := kafkatest.ReadAll(t, svc.app.Brokers(), cfg.Name+".bank-account.events")
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	carrier := propagation.MapCarrier{}
	for _, h := range events[0].Headers {
		carrier[h.Key] = string(h.Value)
	}
	if sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, carrier)); sc.TraceID() != caller.TraceID() {
		t.Errorf("the event's traceparent %q is not of the caller's trace %v", carrier["traceparent"], caller.TraceID())
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after ctx ended")
	}
	done <- nil // for the deferred stop
	if svc.app.Live() || svc.app.Ready() || svc.Live() || svc.Ready() {
		t.Error("the application still runs after run returned")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("HTTP still answers after run returned")
	}
}

// TestServeGateway: with a token, serve answers the JSON gateway on its
// HTTP server: a command with the token is applied, one without is
// refused; without a token there is no gateway.
func TestServeGateway(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"--name", kafkatest.Name(t), "--http", "127.0.0.1:0", "--gateway-max-body", "512"}
	if kafkatest.Real() {
		args = append(args, "--brokers", strings.Join(kafkatest.Brokers(t), ","))
	}
	const token = "gw-t0ken-8842"
	logs := &logbuf.Buffer{}
	inv := testInvocation(t, logs, env{"INTERLOCK_GATEWAY_TOKEN": token}, args...)
	svc, err := newServer(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	defer inv.cfg.close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.run(runCtx, ln) }()
	defer func() {
		stop()
		<-done
	}()
	post := func(path, auth, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+ln.Addr().String()+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	id := interlock.NewID()
	open := `{"aggregateId":"` + id.String() + `","payload":{"owner":"ada"}}`
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		code, body := post("/v1/commands/OpenAccount", token, open)
		if code == http.StatusOK && strings.Contains(body, `"version":1`) {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("POST /v1/commands/OpenAccount: %d %s", code, body)
		}
	}
	if code, _ := post("/v1/commands/OpenAccount", "wrong", open); code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d", code)
	}
	if code, _ := post("/v1/commands/OpenAccount", token, `{"aggregateId":"`+id.String()+`","payload":{"owner":"`+strings.Repeat("a", 600)+`"}}`); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over --gateway-max-body: %d", code)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token shows in the log:\n%s", logs)
	}

	// No token, no gateway.
	plain := testInvocation(t, io.Discard, env{}, "--http", "127.0.0.1:0")
	svc2, err := newServer(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	svc2.handler.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/commands/OpenAccount", strings.NewReader(open)))
	if rec.Code != http.StatusNotFound {
		t.Errorf("without a token, POST /v1/commands: %d %s", rec.Code, rec.Body)
	}
}
