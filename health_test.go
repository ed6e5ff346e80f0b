package interlock_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/consumer"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/middleware"
)

type observed struct {
	mu       sync.Mutex
	batches  []consumer.Batch
	restores []consumer.Restore
}

func (o *observed) OnBatch(b consumer.Batch) {
	o.mu.Lock()
	o.batches = append(o.batches, b)
	o.mu.Unlock()
}

func (o *observed) OnRestore(r consumer.Restore) {
	o.mu.Lock()
	o.restores = append(o.restores, r)
	o.mu.Unlock()
}

// TestObserverAndLag: an observer sees every transaction with its
// commands by outcome and every partition restore; Lag covers every owned
// partition.
func TestObserverAndLag(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	obs := &observed{}
	app := startApp(t, brokers, name, interlock.WithObserver(obs))
	ctx := ctxT(t)
	id := open(t, ctx, app)
	for range 3 {
		if _, err := interlock.Dispatch(ctx, app, deposit(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := interlock.Dispatch(ctx, app, deposit(id, -1)); err == nil {
		t.Fatal("a negative deposit was applied")
	}
	// The reply is visible once the transaction commits, a moment before
	// the processor reports the batch.
	var applied, rejected int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		obs.mu.Lock()
		applied, rejected = 0, 0
		for _, b := range obs.batches {
			if b.Commands != b.Applied+b.Rejected+b.Failed || b.Duration <= 0 {
				t.Errorf("inconsistent batch %+v", b)
			}
			if b.Committed {
				applied += b.Applied
				rejected += b.Rejected
			}
		}
		obs.mu.Unlock()
		if applied+rejected >= 5 {
			break
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if applied != 4 || rejected != 1 {
		t.Errorf("observed %d applied, %d rejected in committed batches; want 4 and 1", applied, rejected)
	}
	topic := name + ".bank-account.events"
	seen := map[int32]bool{}
	for _, r := range obs.restores {
		if r.Topic != topic || r.Duration <= 0 {
			t.Errorf("restore %+v", r)
		}
		seen[r.Partition] = true
	}
	if len(seen) != 3 {
		t.Errorf("restores of %d partitions observed, want 3: %+v", len(seen), obs.restores)
	}
	lag := app.Lag()[name+".bank-account.commands"]
	if len(lag) != 3 {
		t.Fatalf("lag of %d partitions, want 3: %v", len(lag), app.Lag())
	}
	for p, n := range lag {
		if n != 0 {
			t.Errorf("partition %d: lag %d after every command was answered", p, n)
		}
	}
}

// TestLive: a processor whose loop is stuck (here in a handler middleware
// that blocks) stops being live, and is live again once it moves.
func TestLive(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	release := make(chan struct{})
	block := middleware.For(func(ctx context.Context, c bank.WithdrawMoney, m *middleware.Message, next middleware.Handler) (middleware.Outcome, error) {
		<-release
		return next(ctx, m)
	})
	// The smallest session timeout brokers allow by default is 6 s: Live
	// tolerates 2 × 6 + 1 s without progress.
	app := startWith(t, interlock.NewBuilder(
		interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1), interlock.WithLogger(testLogger()),
		interlock.WithSessionTimeout(6*time.Second), interlock.WithTransactionTimeout(5*time.Second), interlock.WithFlushInterval(time.Second),
	).RegisterAggregate(bank.Accounts()).UseHandle(block))
	ctx := ctxT(t)
	id := open(t, ctx, app)
	if !app.Live() {
		t.Fatal("not live after a command")
	}
	stuck := make(chan error, 1)
	go func() {
		_, err := interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 0})
		stuck <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for app.Live() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if app.Live() {
		t.Fatal("still live 30 s into a blocked handler")
	}
	close(release)
	<-stuck // applied or not: the transaction outlived its timeout
	for !app.Live() && time.Now().Before(deadline.Add(30*time.Second)) {
		time.Sleep(100 * time.Millisecond)
	}
	if !app.Live() {
		t.Fatal("not live again after the handler moved on")
	}
	if err := app.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if app.Live() {
		t.Fatal("live after Close")
	}
}

// TestProbesDoNotWaitForStart: while Start is in progress (here held in a
// hook), probes and counters answer at once: not ready, not live.
func TestProbesDoNotWaitForStart(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	release := make(chan struct{})
	entered := make(chan struct{})
	app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(kafkatest.Name(t)), interlock.WithPartitions(1),
		interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).
		RegisterHook(interlock.Hook{Name: "slow", Start: func(context.Context) error { close(entered); <-release; return nil }}).Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	started := make(chan error, 1)
	go func() { started <- app.Start(ctx) }()
	<-entered
	answered := make(chan bool, 1)
	go func() {
		answered <- app.Ready() || app.Live() || app.Stats() != (interlock.ProcessorStats{}) || app.Lag() != nil || app.Projection("x") != nil
	}()
	select {
	case yes := <-answered:
		if yes {
			t.Fatal("a probe says yes while the application starts")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("probes wait for Start")
	}
	if _, err := interlock.Dispatch(ctx, app, deposit(interlock.NewID(), 1)); !errors.Is(err, interlock.ErrNotStarted) {
		t.Fatalf("dispatch while starting: %v", err)
	}
	close(release)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	for deadline := time.Now().Add(10 * time.Second); !app.Ready() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !app.Ready() || !app.Live() {
		t.Fatal("not ready and live after Start")
	}
}
