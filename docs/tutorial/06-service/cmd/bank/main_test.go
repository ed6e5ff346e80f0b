package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/service"
)

// TestServe runs `bank serve` with nothing configured but its HTTP
// address and the gateway's token: an embedded Kafka, in-process
// snapshots. It answers its probes, takes commands over HTTP, and drains
// when it is stopped.
func TestServe(t *testing.T) {
	b := serve(t, "--name", "bank")

	id := interlock.NewID()
	b.command(t, "OpenAccount", id, `{"owner": "Ada", "email": "ada@example.com"}`)
	res := b.command(t, "DepositMoney", id, `{"amount": 10000}`)
	if res.Version != 2 || string(res.Result) != `{"Balance":10000}` {
		t.Errorf("deposit: version %d, result %s; want 2 and a balance of 10000", res.Version, res.Result)
	}
	// The fraud check is in the chain.
	if code, body := b.post(t, "/v1/commands/DepositMoney", fmt.Sprintf(`{"aggregateId": %q, "payload": {"amount": 5000000}}`, id)); code != http.StatusUnprocessableEntity || !strings.Contains(body, "fraud check") {
		t.Errorf("a deposit over the limit: %d %s, want 422 and the fraud check's reason", code, body)
	}
	// serve's metrics count the commands; the rejection is counted on the
	// dispatch side, where its reply arrives (serve puts its metrics
	// inside your middleware, so on the handle side the fraud check
	// refuses the deposit before they see it).
	if n := b.metric(t, "interlock_commands_total", `side="dispatch"`, `type="DepositMoney"`, `outcome="applied"`); n != 1 {
		t.Errorf("/metrics counts %v applied deposits, want 1", n)
	}
	if n := b.metric(t, "interlock_commands_total", `side="dispatch"`, `type="DepositMoney"`, `outcome="rejected"`); n != 1 {
		t.Errorf("/metrics counts %v rejected deposits, want 1", n)
	}
	if n := b.metric(t, "interlock_commands_total", `side="handle"`, `type="DepositMoney"`, `outcome="rejected"`); n != 0 {
		t.Errorf("/metrics counts %v deposits rejected on the handle side, want 0: the fraud check is outside serve's metrics", n)
	}
	b.stop(t)
}

// TestServeRedisSnapshots: the service keeps its snapshots in Redis, so
// after a restart it does not replay the log from the start: it loads the
// account's snapshot, and the account goes on from where it was.
func TestServeRedisSnapshots(t *testing.T) {
	rdb, url, prefix := testRedis(t)
	args := []string{"--brokers", testBrokers(t), "--name", testName(t), "--partitions", "3",
		"--redis", url, "--redis-key-prefix", prefix}

	first := serve(t, args...)
	id := interlock.NewID()
	first.command(t, "OpenAccount", id, `{"owner": "Ada", "email": "ada@example.com"}`)
	first.command(t, "DepositMoney", id, `{"amount": 10000}`)

	// Wait for the snapshot, and for its partition's watermark: every
	// event below it is in a snapshot.
	ctx := context.Background()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		keys, err := rdb.Keys(ctx, prefix+"*:s:"+id.String()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 1 {
			meta := strings.TrimSuffix(keys[0], ":s:"+id.String()) + ":meta"
			if w, _ := rdb.HGet(ctx, meta, "w").Int64(); w > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot of account %s in Redis (keys %q)", id, keys)
		}
	}
	first.stop(t)

	second := serve(t, args...)
	res := second.command(t, "DepositMoney", id, `{"amount": 500}`)
	if res.Version != 3 || string(res.Result) != `{"Balance":10500}` {
		t.Errorf("deposit after the restart: version %d, result %s; want 3 and a balance of 10500", res.Version, res.Result)
	}
	if n := second.metric(t, "interlock_restore_full_replays_total"); n != 0 {
		t.Errorf("%v partitions replayed from the start after the restart, want 0", n)
	}
	if n := second.metric(t, "interlock_snapshot_hits_total"); n < 1 {
		t.Errorf("%v snapshots loaded after the restart, want at least 1", n)
	}
	second.stop(t)
}

// TestServeQueries: with a PostgreSQL DSN the service runs the read model,
// and the gateway answers its queries, after the command's positions.
func TestServeQueries(t *testing.T) {
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(testPostgresDSN(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	b := serve(t, "--brokers", testBrokers(t), "--name", testName(t), "--partitions", "3",
		"--postgres-dsn-file", dsnFile)

	id := interlock.NewID()
	b.command(t, "OpenAccount", id, `{"owner": "Ada", "email": "ada@example.com"}`)
	res := b.command(t, "DepositMoney", id, `{"amount": 10000}`)
	positions, err := json.Marshal(res.Positions)
	if err != nil {
		t.Fatal(err)
	}
	code, body := b.post(t, "/v1/queries/AccountByEmail", fmt.Sprintf(`{"query": {"email": "ada@example.com"}, "after": %s}`, positions))
	want := fmt.Sprintf(`{"ID":%q,"Owner":"Ada","Email":"ada@example.com","Balance":10000}`, id)
	if code != http.StatusOK || !strings.Contains(body, want) {
		t.Errorf("AccountByEmail: %d %s, want 200 and %s", code, body, want)
	}
	b.stop(t)
}

// running is a `bank serve` running in the test's process.
type running struct {
	base, token string
	cancel      context.CancelFunc
	done        chan error
	logs        *syncBuffer
}

// serve runs `bank serve` with args, on a free port, with a gateway token,
// through service.Run: what main runs, minus the process's arguments and
// signals. It returns once the service is ready.
func serve(t *testing.T, args ...string) *running {
	t.Helper()
	token := "test-token"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &running{token: token, done: make(chan error, 1), logs: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	args = append([]string{"serve", "--http", "127.0.0.1:0", "--gateway-token-file", tokenFile, "--drain-timeout", "10s"}, args...)
	go func() { r.done <- service.Run(ctx, args, io.Discard, r.logs, build) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
		r.done <- nil
		if t.Failed() {
			t.Logf("the service's log:\n%s", r.logs)
		}
	})

	for deadline := time.Now().Add(2 * time.Minute); r.base == ""; time.Sleep(20 * time.Millisecond) {
		// The message starts "interlock: "; matched without it, since the
		// logger redacts secrets wherever they appear, and a test
		// database's password may be "interlock".
		if addr := r.logs.attr("serving /metrics, /healthz and /readyz", "addr"); addr != "" {
			r.base = "http://" + addr
		}
		select {
		case err := <-r.done:
			r.done <- err // for the cleanup
			t.Fatalf("serve ended before it served HTTP: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the service never served HTTP")
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if code, _ := r.get(t, "/readyz"); code == http.StatusOK {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatal("the service never got ready")
		}
	}
}

// stop stops the service as SIGTERM would, and checks that it drained
// cleanly.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
		r.done <- nil
	case <-time.After(time.Minute):
		t.Fatal("serve did not stop")
	}
}

// answer is the gateway's answer to a command.
type answer struct {
	Version   int64
	Positions []interlock.Position
	Result    json.RawMessage
}

// command sends a command to the gateway and returns its answer.
func (r *running) command(t *testing.T, typ string, id fmt.Stringer, payload string) answer {
	t.Helper()
	code, body := r.post(t, "/v1/commands/"+typ, fmt.Sprintf(`{"aggregateId": %q, "payload": %s}`, id, payload))
	if code != http.StatusOK {
		t.Fatalf("%s: %d %s", typ, code, body)
	}
	var a answer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("%s: %v in %s", typ, err, body)
	}
	return a
}

func (r *running) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	return r.do(t, req)
}

func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.do(t, req)
}

func (r *running) do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// metric returns the sum of the series of a metric on /metrics whose
// labels include every one of labels (as name="value").
func (r *running) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	code, body := r.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		if !allIn(line, labels) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func allIn(line string, labels []string) bool {
	for _, l := range labels {
		if !strings.Contains(line, l) {
			return false
		}
	}
	return true
}

// syncBuffer collects the service's JSON logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// attr returns the attribute key of the first record whose message ends
// with msg.
func (b *syncBuffer) attr(msg, key string) string {
	for _, line := range strings.Split(b.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			if m, _ := rec["msg"].(string); !strings.HasSuffix(m, msg) {
				continue
			}
			s, _ := rec[key].(string)
			return s
		}
	}
	return ""
}
