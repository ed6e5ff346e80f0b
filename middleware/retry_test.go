package middleware_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/middleware"
)

// account is a fake processor: it applies a deposit when the expected
// version matches and rejects it with a conflict otherwise.
type account struct {
	version int64
	tries   int
}

func (a *account) handle(_ context.Context, m *middleware.Message) (middleware.Outcome, error) {
	a.tries++
	env := m.Envelope()
	if env.ExpectedVersion != nil && *env.ExpectedVersion != a.version {
		c := &aggregate.ConcurrencyError{Expected: *env.ExpectedVersion, Actual: a.version}
		return middleware.Outcome{}, &aggregate.RejectedError{Reason: c.Error(), Conflict: c}
	}
	a.version++
	return middleware.Outcome{Version: a.version}, nil
}

func expecting(v int64, amount int) deposit {
	return deposit{Command: aggregate.To(ulid.Make()).Expect(v), Amount: amount}
}

func TestRetryConflicts(t *testing.T) {
	fast := middleware.Backoff{Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond}
	ctx := context.Background()

	t.Run("reload", func(t *testing.T) {
		a := &account{version: 5}
		var reloads []int64
		h := middleware.RetryConflicts(fast, func(_ context.Context, c deposit, conflict *aggregate.ConcurrencyError) (deposit, error) {
			reloads = append(reloads, conflict.Actual)
			c.Command = c.Command.Expect(conflict.Actual)
			c.Amount = 99 // decided again on fresh state
			return c, nil
		})(a.handle)
		m := msg(expecting(2, 1))
		out, err := h(ctx, m)
		if err != nil || out.Version != 6 {
			t.Fatalf("outcome %+v, %v", out, err)
		}
		if a.tries != 2 || len(reloads) != 1 || reloads[0] != 5 {
			t.Fatalf("tries %d, reloads %v", a.tries, reloads)
		}
		if got := m.Command.(deposit); got.Amount != 99 {
			t.Fatalf("the reloaded command was not the one sent: %+v", got)
		}
	})
	t.Run("nil reload rebases", func(t *testing.T) {
		a := &account{version: 1}
		out, err := middleware.RetryConflicts[deposit](fast, nil)(a.handle)(ctx, msg(expecting(0, 1)))
		if err != nil || out.Version != 2 {
			t.Fatalf("outcome %+v, %v", out, err)
		}
	})
	t.Run("gives up after the limit", func(t *testing.T) {
		a := &account{version: 1}
		h := middleware.RetryConflicts(fast, func(_ context.Context, c deposit, _ *aggregate.ConcurrencyError) (deposit, error) {
			return c, nil // decides the same again: conflicts forever
		})(a.handle)
		_, err := h(ctx, msg(expecting(0, 1)))
		if !errors.Is(err, aggregate.ErrConcurrency) {
			t.Fatalf("err %v, want the conflict", err)
		}
		if a.tries != 4 {
			t.Fatalf("%d tries, want 1 + 3 retries", a.tries)
		}
	})
	t.Run("reload error stops", func(t *testing.T) {
		a := &account{version: 1}
		boom := errors.New("read model down")
		h := middleware.RetryConflicts(fast, func(context.Context, deposit, *aggregate.ConcurrencyError) (deposit, error) {
			return deposit{}, boom
		})(a.handle)
		if _, err := h(ctx, msg(expecting(0, 1))); !errors.Is(err, boom) || a.tries != 1 {
			t.Fatalf("err %v after %d tries", err, a.tries)
		}
	})
	t.Run("other types, other errors, other sides pass", func(t *testing.T) {
		a := &account{version: 1}
		retry := middleware.RetryConflicts[deposit](fast, nil)
		w := withdraw{Command: aggregate.To(ulid.Make()).Expect(0)}
		if _, err := retry(a.handle)(ctx, msg(w)); !errors.Is(err, aggregate.ErrConcurrency) || a.tries != 1 {
			t.Fatalf("withdraw: %v after %d tries", err, a.tries)
		}
		m := msg(expecting(0, 1))
		m.Side = middleware.Handle
		if _, err := retry(a.handle)(ctx, m); !errors.Is(err, aggregate.ErrConcurrency) || a.tries != 2 {
			t.Fatalf("handle side: %v after %d tries", err, a.tries)
		}
		rejected := errors.New("no")
		calls := 0
		_, err := retry(func(context.Context, *middleware.Message) (middleware.Outcome, error) {
			calls++
			return middleware.Outcome{}, aggregate.Reject(rejected)
		})(ctx, msg(expecting(0, 1)))
		if !errors.Is(err, rejected) || calls != 1 {
			t.Fatalf("plain rejection retried: %v, %d calls", err, calls)
		}
	})
	t.Run("ctx ends the wait", func(t *testing.T) {
		a := &account{version: 1}
		slow := middleware.Backoff{Attempts: 5, Initial: time.Hour, Max: time.Hour}
		ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err := middleware.RetryConflicts[deposit](slow, nil)(a.handle)(ctx, msg(expecting(0, 1)))
		if !errors.Is(err, aggregate.ErrConcurrency) || a.tries != 1 {
			t.Fatalf("err %v after %d tries", err, a.tries)
		}
	})
}
