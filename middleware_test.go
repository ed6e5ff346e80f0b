package interlock_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/middleware"
)

// recorder is a middleware that notes, per side, each command type it
// sees and the metadata it carries.
type recorder struct {
	name string
	mu   *sync.Mutex
	log  *[]string
}

func (r recorder) mw(next middleware.Handler) middleware.Handler {
	return func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
		r.mu.Lock()
		*r.log = append(*r.log, m.Side.String()+":"+r.name+":"+m.Type+":"+m.Metadata.Get("tenant"))
		r.mu.Unlock()
		return next(ctx, m)
	}
}

// TestMiddleware: dispatch and handle chains run in registration order,
// metadata set on the dispatcher side reaches the handler side and every
// event, a handle-side check rejects a command before its handler, and a
// reserved metadata key is refused.
func TestMiddleware(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	var mu sync.Mutex
	var log []string
	tenant := func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
			if c, ok := m.Command.(bank.OpenAccount); ok && c.Owner == "mallory" {
				m.Metadata.Set("interlock-type", "forged")
			}
			m.Metadata.Set("tenant", "acme")
			return next(ctx, m)
		}
	}
	fraud := middleware.For(func(ctx context.Context, c bank.WithdrawMoney, m *middleware.Message, next middleware.Handler) (middleware.Outcome, error) {
		if c.Amount > 1000 {
			return middleware.Outcome{}, aggregate.Reject(errors.New("fraud check: amount over 1000"))
		}
		return next(ctx, m)
	})
	app := startWith(t, interlock.NewBuilder(
		interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3), interlock.WithLogger(testLogger()),
	).RegisterAggregate(bank.Accounts()).
		Use(recorder{"outer", &mu, &log}.mw).
		UseDispatch(tenant).
		UseHandle(fraud, recorder{"inner", &mu, &log}.mw))
	ctx := ctxT(t)

	id := open(t, ctx, app)
	if _, err := interlock.Dispatch(ctx, app, deposit(id, 5000)); err != nil {
		t.Fatal(err)
	}
	_, err := interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 2000})
	if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), "fraud check") {
		t.Fatalf("withdrawal over the limit: err %v, want the fraud check's rejection", err)
	}
	res, err := interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 700})
	if err != nil || res.Value.Balance != 4300 || res.Version != 3 {
		t.Fatalf("withdrawal: %+v, %v", res, err)
	}
	_, err = interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(interlock.NewID()), Owner: "mallory"})
	if err == nil || !strings.Contains(err.Error(), `"interlock-type" is reserved`) {
		t.Fatalf("reserved metadata key: err %v", err)
	}

	want := []string{
		"dispatch:outer:OpenAccount:", "handle:outer:OpenAccount:acme", "handle:inner:OpenAccount:acme",
		"dispatch:outer:DepositMoney:", "handle:outer:DepositMoney:acme", "handle:inner:DepositMoney:acme",
		"dispatch:outer:WithdrawMoney:", "handle:outer:WithdrawMoney:acme", // the fraud check stops it
		"dispatch:outer:WithdrawMoney:", "handle:outer:WithdrawMoney:acme", "handle:inner:WithdrawMoney:acme",
		"dispatch:outer:OpenAccount:", // refused before it is sent
	}
	mu.Lock()
	got := slices.Clone(log)
	mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("chain ran as\n%v\nwant\n%v", got, want)
	}
	evs := eventsOf(t, brokers, name+".bank-account.events", id)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3 (the rejected withdrawal wrote none)", len(evs))
	}
	for _, e := range evs {
		if got := header(e, "tenant"); got != "acme" {
			t.Errorf("event %s: tenant %q, want the command's metadata", header(e, "interlock-type"), got)
		}
	}
}

// TestRetryConflictsMiddleware: a command with a stale expected version
// gets ErrConcurrency; with the retry middleware it succeeds after reload.
func TestRetryConflictsMiddleware(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	reloads := 0
	app := startWith(t, interlock.NewBuilder(
		interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3), interlock.WithLogger(testLogger()),
	).RegisterAggregate(bank.Accounts()).UseDispatch(
		middleware.RetryConflicts(middleware.Backoff{}, func(_ context.Context, c bank.WithdrawMoney, conflict *aggregate.ConcurrencyError) (bank.WithdrawMoney, error) {
			reloads++
			c.CommandOf = c.CommandOf.Expect(conflict.Actual)
			return c, nil
		})))
	ctx := ctxT(t)
	id := open(t, ctx, app)
	if _, err := interlock.Dispatch(ctx, app, deposit(id, 100)); err != nil {
		t.Fatal(err)
	}
	// Deposits do not opt in: the conflict reaches the caller.
	stale := deposit(id, 1)
	stale.CommandOf = stale.CommandOf.Expect(1)
	_, err := interlock.Dispatch(ctx, app, stale)
	var rej *interlock.RejectedError
	if !errors.Is(err, interlock.ErrConcurrency) || !errors.As(err, &rej) || rej.Conflict.Actual != 2 {
		t.Fatalf("stale deposit: err %v, want ErrConcurrency at version 2", err)
	}
	// Withdrawals do: read at version 1, the account is at 2 now.
	res, err := interlock.Dispatch(ctx, app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](id).Expect(1), Amount: 30})
	if err != nil {
		t.Fatalf("withdrawal with retry: %v", err)
	}
	if reloads != 1 || res.Version != 3 || res.Value.Balance != 70 {
		t.Fatalf("after %d reloads: %+v", reloads, res)
	}
}
