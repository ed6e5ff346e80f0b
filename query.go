package interlock

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"time"

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
	projection, family string
	version            int
	projections.QueryHandler
}

// activeVersion is the version of a projection family that answers
// queries, and when the newer ones were last checked.
type activeVersion struct {
	version  int
	checked  time.Time
	checking bool
}

// answerer returns, of the versions of a projection that answer a query,
// the one that answers now: the oldest, until a newer one has caught up
// (checked in the background at most every 5 s); once a version answers,
// older ones never do again.
func (a *App) answerer(hs []query) query {
	if len(hs) == 1 {
		return hs[0]
	}
	family := hs[0].family
	a.mu.Lock()
	act, ok := a.active[family]
	if !ok {
		act.version = slices.MinFunc(hs, func(x, y query) int { return cmp.Compare(x.version, y.version) }).version
	}
	if !act.checking && time.Since(act.checked) >= 5*time.Second {
		act.checking, act.checked = true, time.Now()
		go a.checkVersions(family, hs, act.version)
	}
	if a.active == nil {
		a.active = map[string]activeVersion{}
	}
	a.active[family] = act
	a.mu.Unlock()
	for _, h := range hs {
		if h.version == act.version {
			return h
		}
	}
	return hs[0]
}

// checkVersions makes the newest version of family newer than current
// that has caught up the one that answers.
func (a *App) checkVersions(family string, hs []query, current int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	best := current
	for _, h := range hs {
		if h.version <= best {
			continue
		}
		if pr := a.Projection(h.projection); pr != nil {
			if st, err := pr.Status(ctx); err == nil && st.CaughtUp {
				a.log.Info("interlock: a new projection version caught up; it answers queries from now on", "projection", h.projection)
				best = h.version
			}
		}
	}
	a.mu.Lock()
	act := a.active[family]
	act.version, act.checking = max(act.version, best), false
	a.active[family] = act
	a.mu.Unlock()
}

// Ask answers q with the projection that registered its type, through the
// query middleware. When q was built with After, Ask first waits until the
// projection has applied those events (by this instance or any other),
// until ctx ends.
func Ask[Q projections.Qry[R], R any](ctx context.Context, app *App, q Q) (R, error) {
	v, err := AskValue(ctx, app, q)
	r, _ := v.(R)
	return r, err
}

// AskValue is Ask for a query whose type is known only at run time, such
// as one decoded by a gateway: q is a query value (not a pointer) of a
// registered type.
func AskValue(ctx context.Context, app *App, q any) (any, error) {
	hs, ok := app.queries[reflect.TypeOf(q)]
	if !ok {
		return nil, fmt.Errorf("%w %T: register the projection that answers it", ErrUnknownQuery, q)
	}
	h := app.answerer(hs)
	if after := projections.Positions(q); len(after) > 0 {
		pr := app.Projection(h.projection)
		if pr == nil {
			return nil, ErrNotStarted
		}
		if err := pr.WaitFor(ctx, after); err != nil {
			return nil, err
		}
	}
	out, err := app.queryChain(func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
		v, err := h.Answer(ctx, m.Command)
		return middleware.Outcome{Result: v}, err
	})(ctx, &middleware.Message{Side: middleware.Query, Type: h.Name, Aggregate: h.projection, Command: q, Metadata: middleware.Metadata{}})
	return out.Result, err
}

// MessageTypes returns the command types the application's aggregates
// handle and the query types its projections answer, by type name: what
// a gateway decodes requests into.
func (a *App) MessageTypes() (commands, queries map[string]reflect.Type) {
	commands, queries = map[string]reflect.Type{}, map[string]reflect.Type{}
	for _, g := range a.aggs {
		for _, c := range g.Route.Type.Commands() {
			commands[c.Name] = c.Type
		}
	}
	for t, hs := range a.queries {
		queries[hs[0].Name] = t
	}
	return commands, queries
}
