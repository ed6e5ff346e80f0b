package bank_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	bank "github.com/interlock-go/interlock/docs/tutorial/04-middleware"
	"github.com/interlock-go/interlock/metrics"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/tracing"
)

func TestFraudCheck(t *testing.T) {
	cases := []struct {
		cmd    any
		passes bool
	}{
		{bank.DepositMoney{Amount: 100}, true},
		{bank.DepositMoney{Amount: 100_00}, true}, // the limit itself passes
		{bank.DepositMoney{Amount: 100_01}, false},
		{bank.WithdrawMoney{Amount: 1_000_000_00}, true}, // not a deposit: not checked
	}
	for _, c := range cases {
		called := false
		next := func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
			called = true
			return middleware.Outcome{Version: 2}, nil
		}
		handler := bank.FraudCheck(100_00)(next)
		_, err := handler(context.Background(), &middleware.Message{Command: c.cmd, Metadata: middleware.Metadata{}})
		if c.passes && (err != nil || !called) {
			t.Errorf("%+v: %v (handler called: %t), want it passed to the handler", c.cmd, err, called)
		}
		if !c.passes && (!errors.Is(err, aggregate.ErrRejected) || !errors.Is(err, bank.ErrOverLimit) || called) {
			t.Errorf("%+v: %v (handler called: %t), want a rejection before the handler", c.cmd, err, called)
		}
	}
}

func TestMiddlewareOnKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	registry := prometheus.NewRegistry()
	m, err := metrics.New(registry)
	if err != nil {
		t.Fatal(err)
	}

	app := start(t, interlock.NewBuilder(append(testOptions(t), interlock.WithObserver(m))...).
		RegisterAggregate(bank.Accounts()).
		Use(middleware.Logging(logger), tracing.Middleware(), m.Middleware()).
		UseHandle(bank.FraudCheck(bank.DepositLimit)).
		UseDispatch(middleware.RetryConflicts[bank.WithdrawMoney](middleware.Backoff{Attempts: 3}, nil)))
	m.Watch(app)

	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: aggregate.To(id), Owner: "Ada", Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}

	// Over the limit: rejected by the fraud check, nothing written.
	_, err = interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 5_000_000})
	if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), "fraud check") {
		t.Fatalf("a deposit of 50 000.00: %v, want a rejection by the fraud check", err)
	}
	res, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 500_00})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 {
		t.Errorf("the accepted deposit took the account to version %d, want 2: the rejected one wrote nothing", res.Version)
	}

	// A withdrawal decided at version 1: RetryConflicts sends it again
	// with the version the conflict reported, and it goes through.
	res, err = interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: aggregate.ToResult[bank.Balance](id).Expect(1), Amount: 100_00})
	if err != nil {
		t.Fatalf("a stale withdrawal: %v, want it retried and applied", err)
	}
	if res.Value.Balance != 400_00 || res.Version != 3 {
		t.Errorf("after the withdrawal: balance %d at version %d, want 40000 at 3", res.Value.Balance, res.Version)
	}

	// Logging wrote one record per command and side; the processor's
	// record of the fraud check's rejection says why.
	if !logs.has(func(r map[string]any) bool {
		return r["side"] == "handle" && r["type"] == "DepositMoney" && r["outcome"] == "rejected" &&
			strings.Contains(r["reason"].(string), "fraud check")
	}) {
		t.Errorf("no log record of the rejected deposit:\n%s", logs)
	}

	// The metrics count it.
	if n := counter(t, registry, "interlock_commands_total", map[string]string{"side": "handle", "type": "DepositMoney", "outcome": "rejected"}); n != 1 {
		t.Errorf("interlock_commands_total of rejected deposits: %v, want 1", n)
	}
}

// syncBuffer collects JSON log records from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
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

// has reports whether a record matches.
func (b *syncBuffer) has(match func(map[string]any) bool) bool {
	for _, line := range strings.Split(b.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && match(r) {
			return true
		}
	}
	return false
}

// counter returns the value of the counter name with these labels.
func counter(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
