package interlock_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
)

type counter struct{ N int64 }

type Incr struct{ interlock.CommandOf[int64] }

type Explode struct{ interlock.Command }

type Haunt struct{ interlock.Command }

type Incremented struct{ By int64 }

type Ghost struct{}

func counters() *aggregate.Definition[counter] {
	return aggregate.Define[counter]("counter",
		aggregate.HandleResult(func(a *aggregate.Root[counter], c Incr) (int64, error) {
			a.Emit(Incremented{By: 1})
			return a.State().N, nil
		}),
		aggregate.Handle(func(a *aggregate.Root[counter], c Explode) error {
			a.Emit(Incremented{By: 1000})
			panic("kaboom")
		}),
		aggregate.Handle(func(a *aggregate.Root[counter], c Haunt) error {
			a.Emit(Ghost{})
			return nil
		}),
		aggregate.Apply(func(s *counter, e Incremented) { s.N += e.By }),
	)
}

func startCounters(t *testing.T, opts ...interlock.Option) (*interlock.App, []string, string) {
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app := startWith(t, interlock.NewBuilder(append([]interlock.Option{interlock.WithBrokers(brokers...), interlock.WithName(name),
		interlock.WithPartitions(2), interlock.WithLogger(testLogger())}, opts...)...).RegisterAggregate(counters()))
	return app, brokers, name
}

// TestHandlerFailures: a panicking handler and an event without applier
// fail the command (ErrFailed, no event); the partition keeps going and the
// state is untouched by what the failed handler emitted.
func TestHandlerFailures(t *testing.T) {
	t.Parallel()
	app, brokers, name := startCounters(t)
	ctx := ctxT(t)
	id := interlock.NewID()
	if r, err := interlock.Dispatch(ctx, app, Incr{interlock.ToResult[int64](id)}); err != nil || r.Value != 1 {
		t.Fatalf("incr: %v, %v", r, err)
	}
	_, err := interlock.Dispatch(ctx, app, Explode{interlock.To(id)})
	if !errors.Is(err, interlock.ErrFailed) || errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("panicking handler: %v, want ErrFailed mentioning the panic", err)
	}
	_, err = interlock.Dispatch(ctx, app, Haunt{interlock.To(id)})
	if !errors.Is(err, interlock.ErrFailed) || !strings.Contains(err.Error(), "Ghost has no applier") {
		t.Fatalf("event without applier: %v", err)
	}
	r, err := interlock.Dispatch(ctx, app, Incr{interlock.ToResult[int64](id)})
	if err != nil || r.Value != 2 || r.Version != 2 {
		t.Fatalf("after failures: %+v, %v; want 2 at version 2", r, err)
	}
	if n := len(eventsOf(t, brokers, name+".counter.events", id)); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
}

// TestCloseDrainsInFlight: Close waits for the commands already dispatched;
// every accepted Dispatch gets its outcome, later ones get ErrNotStarted or
// the dispatcher's closed error, and none hangs.
func TestCloseDrainsInFlight(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithLogger(testLogger())).
		RegisterAggregate(counters()).Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, Incr{interlock.ToResult[int64](id)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, refused int
	for range 50 {
		wg.Go(func() {
			_, err := interlock.Dispatch(ctx, app, Incr{interlock.ToResult[int64](id)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, interlock.ErrNotStarted), errors.Is(err, interlock.ErrClosed):
				refused++
			default:
				t.Errorf("dispatch during close: %v", err)
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := app.Close(closeCtx); err != nil {
		t.Fatalf("close: %v", err)
	}
	wg.Wait()
	if ok+refused != 50 {
		t.Fatalf("%d ok + %d refused, want 50", ok, refused)
	}
	if n := len(eventsOf(t, brokers, name+".counter.events", id)); n != ok+1 {
		t.Fatalf("%d events for %d applied commands", n, ok+1)
	}
}

// TestReady: an application is ready once its processor joined the group
// and restored every partition it owns, with or without commands.
func TestReady(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	seed := startApp(t, brokers, name)
	id := open(t, ctx, seed)
	if _, err := interlock.Dispatch(ctx, seed, deposit(id, 1)); err != nil {
		t.Fatal(err)
	}
	// A second processor with its own store restores by replaying the log.
	app := launch(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()), interlock.WithFlushInterval(time.Hour)).RegisterAggregate(bank.Accounts()))
	defer app.Close(ctx)
	// The flush interval is an hour: readiness must not wait for it (a
	// busy CI machine may take seconds to replay).
	for deadline := time.Now().Add(30 * time.Second); !app.Ready() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !app.Ready() {
		t.Fatal("not ready 30 s after start")
	}
	if err := app.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if app.Ready() {
		t.Fatal("ready after Close")
	}
}

// TestDeclaredRejections: a rejection whose handler error matches one the
// aggregate declared (aggregate.Errors) matches it after Dispatch too, in
// the caller's process; other rejections carry their message only.
func TestDeclaredRejections(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	app := startApp(t, brokers, kafkatest.Name(t))
	ctx := ctxT(t)
	id := open(t, ctx, app)
	_, err := interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 10})
	var rej *interlock.RejectedError
	if !errors.Is(err, bank.ErrInsufficientFunds) || !errors.Is(err, interlock.ErrRejected) || !errors.As(err, &rej) ||
		rej.Reason != "insufficient funds: balance 0, withdrawal 10" {
		t.Errorf("overdraft: %v; want a rejection matching bank.ErrInsufficientFunds, with the handler's message", err)
	}
	if errors.Is(err, bank.ErrNotOpen) {
		t.Errorf("overdraft: %v matches bank.ErrNotOpen", err)
	}
	_, err = interlock.Dispatch(ctx, app, deposit(interlock.NewID(), 5))
	if !errors.Is(err, bank.ErrNotOpen) {
		t.Errorf("deposit to no account: %v; want bank.ErrNotOpen", err)
	}
}
