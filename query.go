package interlock

import (
	"context"
	"fmt"
	"reflect"

	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/projections"
)

// QueryOf is embedded in a query type whose answer is an R. Register the
// projection that answers it with projections.Answer.
type QueryOf[R any] = projections.QueryOf[R]

// After returns the embedded part of a query that is answered only once
// the events at positions (Result.Positions of a Dispatch) are applied by
// the projection: read your writes.
func After[R any](positions []Position) QueryOf[R] { return projections.After[R](positions) }

type query struct {
	projection string
	projections.QueryHandler
}

// Ask answers q with the projection that registered its type, through the
// query middleware. When q was built with After, Ask first waits until the
// projection has applied those events (by this instance or any other),
// until ctx ends.
func Ask[Q projections.Qry[R], R any](ctx context.Context, app *App, q Q) (R, error) {
	var zero R
	h, ok := app.queries[reflect.TypeFor[Q]()]
	if !ok {
		return zero, fmt.Errorf("%w %T: register the projection that answers it", ErrUnknownQuery, q)
	}
	if after := projections.Positions(q); len(after) > 0 {
		pr := app.Projection(h.projection)
		if pr == nil {
			return zero, ErrNotStarted
		}
		if err := pr.WaitFor(ctx, after); err != nil {
			return zero, err
		}
	}
	out, err := app.queryChain(func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
		v, err := h.Answer(ctx, m.Command)
		return middleware.Outcome{Result: v}, err
	})(ctx, &middleware.Message{Side: middleware.Query, Type: h.Name, Aggregate: h.projection, Command: q, Metadata: middleware.Metadata{}})
	if err != nil {
		return zero, err
	}
	r, _ := out.Result.(R)
	return r, nil
}
