package middleware_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/middleware"
)

// A fraud check of the user's own: withdrawals over a limit are rejected
// before they reach the aggregate; other commands pass.
func ExampleFor() {
	fraud := middleware.For(func(ctx context.Context, c withdraw, m *middleware.Message, next middleware.Handler) (middleware.Outcome, error) {
		if c.Amount > 10_000 {
			return middleware.Outcome{}, aggregate.Reject(errors.New("fraud check: amount over 10 000"))
		}
		return next(ctx, m)
	})
	handler := fraud(func(context.Context, *middleware.Message) (middleware.Outcome, error) {
		return middleware.Outcome{Version: 1}, nil
	})
	for _, cmd := range []any{withdraw{Amount: 50}, withdraw{Amount: 20_000}, deposit{Amount: 20_000}} {
		_, err := handler(context.Background(), &middleware.Message{Command: cmd, Metadata: middleware.Metadata{}})
		fmt.Printf("%T %v\n", cmd, err)
	}
	// Output:
	// middleware_test.withdraw <nil>
	// middleware_test.withdraw command rejected: fraud check: amount over 10 000
	// middleware_test.deposit <nil>
}

// Retry a withdrawal that lost an expected-version race: read the account
// again (here: trust the version the conflict reports), decide again, and
// resend.
func ExampleRetryConflicts() {
	reload := func(ctx context.Context, c withdraw, conflict *aggregate.ConcurrencyError) (withdraw, error) {
		c.Command = c.Command.Expect(conflict.Actual)
		return c, nil
	}
	a := &account{version: 4} // a fake processor
	handler := middleware.RetryConflicts(middleware.Backoff{Attempts: 3}, reload)(a.handle)
	cmd := withdraw{Command: aggregate.To(ulid.Make()).Expect(2), Amount: 10}
	out, err := handler(context.Background(), &middleware.Message{Side: middleware.Dispatch, Command: cmd, Metadata: middleware.Metadata{}})
	fmt.Println(out.Version, err, a.tries)
	// Output: 5 <nil> 2
}
