package interlock_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/projections"
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

// ownerOf and accountsSeen are queries of the owners projection of
// TestQueryMiddleware.
type ownerOf struct {
	interlock.QueryOf[string]
	ID ulid.ULID
}

type accountsSeen struct{ interlock.QueryOf[int] }

// TestQueryMiddleware: the query chain runs around Ask in registration
// order, For[Q] intercepts one query type only (here refusing one ID and
// rewriting another), Logging records each answer, and middleware
// registered with Use (the command sides) never sees a query.
func TestQueryMiddleware(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	var owners sync.Map
	view := projections.New("owners", projections.Effects())
	projections.On(view, func(_ context.Context, _ *struct{}, e projections.Event[bank.AccountOpened]) error {
		owners.Store(e.AggregateID, e.Data.Owner)
		return nil
	})
	projections.Answer(view, func(_ context.Context, q ownerOf) (string, error) {
		v, ok := owners.Load(q.ID)
		if !ok {
			return "", bank.ErrNoAccount
		}
		return v.(string), nil
	})
	projections.Answer(view, func(context.Context, accountsSeen) (int, error) {
		n := 0
		owners.Range(func(any, any) bool { n++; return true })
		return n, nil
	})
	hidden, alias, known := interlock.NewID(), interlock.NewID(), interlock.NewID()
	var mu sync.Mutex
	var log []string
	forOwner := 0
	guard := middleware.For(func(ctx context.Context, q ownerOf, m *middleware.Message, next middleware.Handler) (middleware.Outcome, error) {
		mu.Lock()
		forOwner++
		mu.Unlock()
		switch q.ID {
		case hidden:
			return middleware.Outcome{}, aggregate.Reject(errors.New("not yours to see"))
		case alias:
			q.ID = known
			m.Command = q
		}
		return next(ctx, m)
	})
	logs := &logbuf.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	app := startWith(t, interlock.NewBuilder(
		interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1), interlock.WithLogger(testLogger()),
	).RegisterAggregate(bank.Accounts()).RegisterProjection(view).
		Use(recorder{"commands", &mu, &log}.mw).
		UseQuery(recorder{"outer", &mu, &log}.mw, guard, middleware.Logging(logger), recorder{"inner", &mu, &log}.mw))
	ctx := ctxT(t)

	res, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(known), Owner: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	log = log[:0] // the command's own entries
	mu.Unlock()
	owner, err := interlock.Ask(ctx, app, ownerOf{QueryOf: interlock.After[string](res.Positions), ID: known})
	if err != nil || owner != "ada" {
		t.Fatalf("owner: %q, %v", owner, err)
	}
	if owner, err := interlock.Ask(ctx, app, ownerOf{ID: alias}); err != nil || owner != "ada" {
		t.Fatalf("owner through the rewritten query: %q, %v; want the rewritten ID's", owner, err)
	}
	_, err = interlock.Ask(ctx, app, ownerOf{ID: hidden})
	if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), "not yours to see") {
		t.Fatalf("hidden owner: %v, want the middleware's rejection", err)
	}
	if n, err := interlock.Ask(ctx, app, accountsSeen{}); err != nil || n != 1 {
		t.Fatalf("accounts seen: %d, %v", n, err)
	}

	want := []string{
		"query:outer:ownerOf:", "query:inner:ownerOf:",
		"query:outer:ownerOf:", "query:inner:ownerOf:",
		"query:outer:ownerOf:", // refused by the guard
		"query:outer:accountsSeen:", "query:inner:accountsSeen:",
	}
	mu.Lock()
	got, calls := slices.Clone(log), forOwner
	mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("chain ran as\n%v\nwant\n%v", got, want)
	}
	if calls != 3 {
		t.Errorf("For[ownerOf] ran %d times, want 3 (not for accountsSeen)", calls)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	var outcomes []string
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log record %q: %v", l, err)
		}
		if rec["side"] != "query" || rec["aggregate"] != "owners" {
			t.Errorf("log record %v: want side query, aggregate (projection) owners", rec)
		}
		outcomes = append(outcomes, fmt.Sprint(rec["type"], " ", rec["outcome"]))
	}
	// The refused query never reached Logging (inside the guard).
	if want := []string{"ownerOf answered", "ownerOf answered", "accountsSeen answered"}; !slices.Equal(outcomes, want) {
		t.Errorf("logged %v, want %v", outcomes, want)
	}
}
