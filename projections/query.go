package projections

import (
	"context"
	"fmt"
	"reflect"

	"github.com/interlock-go/interlock/producer"
)

// QueryOf is embedded in a query type whose answer is an R, the way
// CommandOf is embedded in commands. A query is answered by the projection
// that registered it with Answer, through interlock.Ask.
type QueryOf[R any] struct {
	// After lists positions of events (Result.Positions of a Dispatch)
	// that the answering projection must have applied before the query
	// runs: read your writes. Ask waits for them until its ctx ends.
	After []producer.Position `json:"-" avro:"-"`
}

// Qry is the constraint satisfied by every type that embeds QueryOf[R].
type Qry[R any] interface {
	answerOf(R)
	positions() []producer.Position
}

func (QueryOf[R]) answerOf(R) {}

func (q QueryOf[R]) positions() []producer.Position { return q.After }

func (q *QueryOf[R]) setPositions(p []producer.Position) { q.After = p }

// SetAfter sets the After of the query ptr points to; it reports false
// when ptr is not a pointer to a query.
func SetAfter(ptr any, positions []producer.Position) bool {
	q, ok := ptr.(interface{ setPositions([]producer.Position) })
	if ok {
		q.setPositions(positions)
	}
	return ok
}

// After returns the embedded part of a query answered after the events at
// positions are applied.
func After[R any](positions []producer.Position) QueryOf[R] { return QueryOf[R]{After: positions} }

// Positions returns the positions a query must wait for (its After).
func Positions(q any) []producer.Position {
	if p, ok := q.(interface{ positions() []producer.Position }); ok {
		return p.positions()
	}
	return nil
}

// QueryHandler is a query type a projection answers.
type QueryHandler struct {
	// Type is the query's Go type; Name its type name.
	Type reflect.Type
	Name string
	// Answer answers a query of Type.
	Answer func(ctx context.Context, q any) (any, error)
}

// Answer registers fn as p's answer to queries of type Q.
func Answer[Q Qry[R], R, T any](p *Projection[T], fn func(ctx context.Context, q Q) (R, error)) {
	t := reflect.TypeFor[Q]()
	for _, h := range p.queries {
		if h.Type == t {
			p.errs = append(p.errs, fmt.Errorf("projection %q: query %v is answered twice", p.name, t))
			return
		}
	}
	p.queries = append(p.queries, QueryHandler{Type: t, Name: t.Name(), Answer: func(ctx context.Context, q any) (any, error) {
		qq, ok := q.(Q)
		if !ok {
			return nil, fmt.Errorf("projection %q: a middleware replaced the %v query with a %T", p.name, t, q)
		}
		return fn(ctx, qq)
	}})
}

// Queries lists the query types p answers.
func (p *Projection[T]) Queries() []QueryHandler { return p.queries }
