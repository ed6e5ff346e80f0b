package service

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/internal/services"
	"github.com/interlock-go/interlock/projections"
)

// TestServeRun runs serve through Run until its ctx ends: it starts the
// application, and returns nil once drained; a bad address fails at once.
func TestServeRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"serve", "--name", kafkatest.Name(t), "--http", "127.0.0.1:0"}
	if kafkatest.Real() {
		args = append(args, "--brokers", strings.Join(kafkatest.Brokers(t), ","))
	}
	logs := &logbuf.Buffer{}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, args, io.Discard, logs, bankBuild) }()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(logs.String(), `"msg":"interlock: started"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve never started:\n%s", logs)
		}
	}
	if !strings.Contains(logs.String(), "serving /metrics, /healthz and /readyz") {
		t.Errorf("serve did not serve HTTP:\n%s", logs)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v\n%s", err, logs)
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not return after its ctx ended")
	}
	if !strings.Contains(logs.String(), `"msg":"interlock: stopped"`) {
		t.Errorf("serve did not close the application:\n%s", logs)
	}

	err := Run(ctx, []string{"serve", "--http", "127.0.0.1:99999"}, io.Discard, io.Discard, bankBuild)
	if err == nil || !strings.Contains(err.Error(), "--http") {
		t.Errorf("serve on a bad address: %v", err)
	}
	err = Run(ctx, []string{"serve", "--roles", "cook"}, io.Discard, io.Discard, bankBuild)
	if !errors.Is(err, ErrUsage) {
		t.Errorf("serve with a bad role: %v", err)
	}
	noBuilder := func(context.Context, *Config) (*interlock.Builder, error) { return nil, nil }
	if err := Run(ctx, []string{"serve", "--http", "off"}, io.Discard, io.Discard, noBuilder); err == nil {
		t.Error("serve with a build function that returns no builder")
	}
}

// audit is a projection on the Kafka sink that fails on a deposit of 13
// until cured: with the DeadLetter policy, the deposit is parked.
func audit(cured *atomic.Bool) *projections.Projection[*projections.Output] {
	p := projections.New("audit", projections.Kafka(), projections.WithPolicy(projections.DeadLetter), projections.WithRetries(1, time.Millisecond))
	projections.On(p, func(ctx context.Context, _ *projections.Output, e projections.Event[bank.MoneyDeposited]) error {
		if e.Data.Amount == 13 && !cured.Load() {
			return errors.New("unlucky amount")
		}
		return nil
	})
	return p
}

// TestDeadLetters: projections dlq list shows a parked event, dlq retry
// has the running instance apply it once the handler is fixed, and the
// list is empty again; status shows the projection; bad names are refused.
func TestDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	var cured atomic.Bool
	app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	).RegisterAggregate(bank.Accounts()).RegisterProjection(audit(&cured)).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	bad := interlock.NewID()
	var last interlock.Result[bank.Balance]
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(bad), Owner: "bad"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{13, 2} {
		if last, err = interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](bad), Amount: n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Projection("audit").WaitFor(ctx, last.Positions); err != nil {
		t.Fatal(err)
	}

	// The CLI's application: the same projection, passive there.
	build := func(_ context.Context, cfg *Config) (*interlock.Builder, error) {
		return interlock.NewBuilder(cfg.Options()...).RegisterAggregate(bank.Accounts()).RegisterProjection(audit(&atomic.Bool{})), nil
	}
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := Run(ctx, append(args, "--brokers", strings.Join(brokers, ","), "--name", name, "--partitions", "3"), &out, &errOut, build)
		return out.String(), err
	}
	out, err := cli("projections", "dlq", "list", "audit")
	if err != nil || !strings.Contains(out, bad.String()+"  MoneyDeposited") || !strings.Contains(out, "unlucky amount") || strings.Count(out, "\n"+bad.String()) != 2 {
		t.Fatalf("dlq list: %v\n%s", err, out)
	}
	out, err = cli("projections", "status", "audit")
	if err != nil || !strings.Contains(out, "audit: lag") {
		t.Errorf("status: %v\n%s", err, out)
	}
	// Still failing: the retry says so, and the events stay parked.
	if _, err := cli("projections", "dlq", "retry", "audit", bad.String()); err == nil || !strings.Contains(err.Error(), "unlucky amount") {
		t.Errorf("retry while the handler fails: %v", err)
	}
	cured.Store(true)
	out, err = cli("projections", "dlq", "retry", "audit", bad.String())
	if err != nil || !strings.Contains(out, "applied") {
		t.Fatalf("retry once cured: %v\n%s", err, out)
	}
	if out, err := cli("projections", "dlq", "list", "audit"); err != nil || !strings.Contains(out, "no parked event") {
		t.Errorf("dlq list after the retry: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"projections", "dlq", "list", "audti"}, {"projections", "dlq", "retry", "audti", ulid.Make().String()}, {"projections", "reset", "audti"}} {
		if _, err := cli(args...); err == nil || !strings.Contains(err.Error(), `no projection "audti" (registered: audit)`) {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// ExampleRun runs a command of a binary whose build function registers
// the bank: how to rebuild its transfer saga without downtime.
func ExampleRun() {
	build := func(_ context.Context, cfg *Config) (*interlock.Builder, error) {
		return interlock.NewBuilder(cfg.Options()...).
			RegisterAggregate(bank.Accounts()).
			RegisterAggregate(bank.Transfers()).
			RegisterProjection(bank.TransferSaga()), nil
	}
	err := Run(context.Background(), []string{"projections", "rebuild", "bank-transfer-saga"}, os.Stdout, os.Stderr, build)
	if err != nil {
		panic(err)
	}
	// Output:
	// Projection bank-transfer-saga is at version 1. To rebuild it without downtime:
	//
	//   1. Register version 2 beside it, with its own tables if the read model changes:
	//        projections.New("bank-transfer-saga", sink, projections.Version(2))
	//      It runs as bank-transfer-saga.v2, from the start of the log, in its own group with its own checkpoints,
	//      while version 1 keeps answering queries.
	//   2. Deploy. 'interlock projections status bank-transfer-saga.v2' shows its progress; Ask switches to it
	//      once it has caught up.
	//   3. Remove version 1 from the code and deploy again. To drop the data its sink keeps,
	//      run 'interlock projections reset bank-transfer-saga' with the previous release's binary (where
	//      version 1 is still registered) once no instance runs it, or drop its tables by hand.
	//
	// To rebuild in place instead (the read model is unavailable meanwhile): stop every instance
	// that runs it, 'interlock projections reset bank-transfer-saga', and start them again.
}

// TestServeRedis: serve keeps its snapshots in the Redis of --redis, with
// the password of INTERLOCK_REDIS_PASSWORD; credentials Redis refuses
// stop serve with an error that does not show the password.
func TestServeRedis(t *testing.T) {
	url := services.Lookup(t, services.EnvRedis, "Redis")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"serve", "--name", kafkatest.Name(t), "--http", "off", "--redis", url}
	if kafkatest.Real() {
		args = append(args, "--brokers", strings.Join(kafkatest.Brokers(t), ","))
	}
	logs := &logbuf.Buffer{}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, args, io.Discard, logs, bankBuild) }()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(logs.String(), `"msg":"interlock: started"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("serve with Redis never started: %v\n%s", <-done, logs)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve with Redis: %v\n%s", err, logs)
	}

	// An ACL user Redis does not know, with a password.
	const password = "not-Redis-s3cret-5521"
	t.Setenv("INTERLOCK_REDIS_PASSWORD", password)
	logs = &logbuf.Buffer{}
	err := Run(ctx, append(args, "--redis", strings.Replace(url, "://", "://nobody@", 1)), io.Discard, logs, bankBuild)
	if err == nil || !strings.Contains(err.Error(), "snapshot store") {
		t.Fatalf("serve with a password Redis refuses: %v", err)
	}
	if strings.Contains(err.Error(), password) || strings.Contains(logs.String(), password) {
		t.Errorf("the password shows: %v\n%s", err, logs)
	}
}
