package bank

import (
	"context"
	"errors"
	"fmt"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/middleware"
)

// DepositLimit is the largest deposit, in cents, that the fraud check
// lets through: 10 000.00.
const DepositLimit = 1_000_000

// ErrOverLimit rejects a deposit the fraud check does not let through.
var ErrOverLimit = errors.New("fraud check: deposit over the limit")

// FraudCheck returns a middleware that rejects deposits of more than limit
// cents. Every other command passes through unchanged.
func FraudCheck(limit int64) middleware.Middleware {
	return middleware.For(func(ctx context.Context, c DepositMoney, m *middleware.Message, next middleware.Handler) (middleware.Outcome, error) {
		if c.Amount > limit {
			return middleware.Outcome{}, aggregate.Reject(fmt.Errorf("%w: %d > %d", ErrOverLimit, c.Amount, limit))
		}
		return next(ctx, m)
	})
}
