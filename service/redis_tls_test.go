package service

import (
	"context"
	"flag"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/snapshot"
)

// redisACLCommands are the commands the snapshot store needs (see
// docs/deployment.md, "Redis: ACL user and TLS").
const redisACLCommands = "+ping +hmget +evalsha +eval +time +hget +hset"

// snapshotBuild is bankBuild with a snapshot after every command, so each
// command touches Redis.
func snapshotBuild(_ context.Context, cfg *Config) (*interlock.Builder, error) {
	return interlock.NewBuilder(cfg.Options()...).RegisterAggregate(bank.Accounts(), interlock.Snapshots(snapshot.EveryN(1))), nil
}

// serveInvocation returns the invocation of serve with args and build,
// its logs going to logs.
func serveInvocation(t *testing.T, logs io.Writer, e env, build Build, args ...string) *invocation {
	t.Helper()
	r := &runner{prog: "interlock", build: build, stdout: io.Discard, stderr: logs, getenv: e.get}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	vals := addFlags(fs, true)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := resolve(fs, vals, r.getenv, logs)
	if err != nil {
		t.Fatal(err)
	}
	return &invocation{runner: r, cmd: commands[0], cfg: cfg}
}

// scrapeMetric returns the sum of a metric's series in svc's /metrics.
func scrapeMetric(t *testing.T, svc *server, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	svc.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	var sum float64
	for _, m := range mfs[name].GetMetric() {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// startServe builds and runs serve's application (no HTTP listener) until
// the returned stop is called, waiting until it is ready.
func startServe(t *testing.T, ctx context.Context, inv *invocation) (svc *server, stop func() error) {
	t.Helper()
	svc, err := newServer(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.run(runCtx, nil) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		err := <-done
		inv.cfg.close()
		return err
	}
	t.Cleanup(func() { stop() })
	for deadline := time.Now().Add(time.Minute); !svc.Ready(); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve never became ready")
		}
	}
	return svc, stop
}

// TestServeRedisTLSACL: serve, configured as an operator would (a
// rediss:// URL naming the ACL user, the password in a file, the CA in a
// file), keeps its snapshots in a TLS-only Redis whose user has only the
// documented rights. When Redis refuses that user everything, commands
// are still applied from memory and the log, the failure is logged and
// counted (interlock_snapshot_store_errors_total), and once the rights are
// back the snapshots catch up; a new instance restores the state. A wrong
// password stops serve at start with an error that says so.
func TestServeRedisTLSACL(t *testing.T) {
	t.Parallel()
	const password = "serve-redis-Sekr1t-3307"
	name := kafkatest.Name(t)
	user := "interlock on >" + password + " resetchannels ~" + name + ":* -@all " + redisACLCommands
	srv := redistest.StartTLS(t, user)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := env{
		"INTERLOCK_REDIS_URL":           "rediss://interlock@" + srv.Addr + "/0",
		"INTERLOCK_REDIS_PASSWORD_FILE": writeFile(t, "redis-password", password+"\n"),
		"INTERLOCK_REDIS_TLS_CA_FILE":   srv.CAFile,
	}
	brokers := kafkatest.Brokers(t)
	args := []string{"--name", name, "--http", "off", "--partitions", "2", "--brokers", strings.Join(brokers, ",")}
	logs := &logbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve's log:\n%s", logs.String())
		}
	})
	svc, stop := startServe(t, ctx, serveInvocation(t, logs, e, snapshotBuild, args...))

	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, svc.app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
		t.Fatal(err)
	}
	balance, version := int64(0), int64(1)
	depositOne := func(amount int64) {
		t.Helper()
		res, err := interlock.Dispatch(ctx, svc.app, bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: amount})
		balance, version = balance+amount, version+1
		if err != nil || res.Value.Balance != balance || res.Version != version {
			t.Fatalf("deposit %d: %+v, %v; want balance %d at version %d", amount, res, err, balance, version)
		}
	}
	depositOne(5)
	// storedVersion is the version of id's snapshot in Redis, 0 if none.
	storedVersion := func() int64 {
		keys, err := srv.Admin.Keys(ctx, name+":*:s:"+id.String()).Result()
		if err != nil || len(keys) != 1 {
			return 0
		}
		v, _ := strconv.ParseInt(srv.Admin.HGet(ctx, keys[0], "v").Val(), 10, 64)
		return v
	}
	waitStored := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(45 * time.Second); storedVersion() != version; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the snapshot in Redis is at version %d, want %d", what, storedVersion(), version)
			}
		}
	}
	waitStored("over TLS as the ACL user")
	if n := scrapeMetric(t, svc, "interlock_snapshot_store_errors_total"); n != 0 {
		t.Fatalf("%v snapshot store errors with every right granted", n)
	}

	// Redis refuses the user everything: commands go on.
	if err := srv.Admin.Do(ctx, "ACL", "SETUSER", "interlock", "-@all").Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		depositOne(10)
	}
	for deadline := time.Now().Add(30 * time.Second); scrapeMetric(t, svc, "interlock_snapshot_store_errors_total") == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("interlock_snapshot_store_errors_total did not count the refusals")
		}
	}
	if l := logs.String(); !strings.Contains(l, "snapshot store failed; processing goes on") || !strings.Contains(l, "NOPERM") {
		t.Fatalf("the refusal is not logged with Redis's reason:\n%s", l)
	}
	if v := storedVersion(); v >= version {
		t.Fatalf("a snapshot at version %d was written while Redis refused the user", v)
	}

	// The rights are back: snapshots catch up (after the store's backoff).
	if err := srv.Admin.Do(ctx, "ACL", "SETUSER", "interlock", "+ping", "+hmget", "+evalsha", "+eval", "+time", "+hget", "+hset").Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(45 * time.Second); storedVersion() != version; {
		depositOne(1)
		if time.Now().After(deadline) {
			t.Fatalf("the snapshots did not catch up: Redis has version %d, want %d", storedVersion(), version)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "snapshot store is back") {
		t.Error("the recovery is not logged")
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	var n int64
	for _, r := range kafkatest.ReadAll(t, brokers, name+".bank-account.events") {
		if string(r.Key) == id.String() {
			n++
		}
	}
	if n != version {
		t.Fatalf("%d events in the log, want %d", n, version)
	}

	// A new instance restores from Redis and the log: nothing was lost.
	logs2 := &logbuf.Buffer{}
	svc, _ = startServe(t, ctx, serveInvocation(t, logs2, e, snapshotBuild, args...))
	depositOne(2)
	if st := svc.app.Stats(); st.SnapshotsLoaded == 0 {
		t.Errorf("the new instance loaded no snapshot: %+v", st)
	}

	// A wrong password: serve does not start, and says why.
	bad := env{"INTERLOCK_REDIS_URL": e["INTERLOCK_REDIS_URL"], "INTERLOCK_REDIS_TLS_CA_FILE": srv.CAFile, "INTERLOCK_REDIS_PASSWORD": "not-" + password}
	_, err := newServer(ctx, serveInvocation(t, io.Discard, bad, snapshotBuild, args...))
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") || strings.Contains(err.Error(), password) {
		t.Fatalf("serve with a wrong Redis password: %v", err)
	}
}
