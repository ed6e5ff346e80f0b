package middleware_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/middleware"
)

type deposit struct {
	aggregate.Command
	Amount int
}

type withdraw struct {
	aggregate.Command
	Amount int
}

func msg(cmd any) *middleware.Message {
	return &middleware.Message{Side: middleware.Dispatch, Type: "deposit", Aggregate: "account", Command: cmd, Metadata: middleware.Metadata{}}
}

// trace returns a middleware that appends name on the way in and on the
// way out.
func trace(log *[]string, name string) middleware.Middleware {
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
			*log = append(*log, name+">")
			out, err := next(ctx, m)
			*log = append(*log, "<"+name)
			return out, err
		}
	}
}

func TestChainFirstIsOutermost(t *testing.T) {
	var log []string
	h := middleware.Chain(trace(&log, "a"), nil, trace(&log, "b"), trace(&log, "c"))(
		func(context.Context, *middleware.Message) (middleware.Outcome, error) {
			log = append(log, "handler")
			return middleware.Outcome{Version: 7}, nil
		})
	out, err := h(context.Background(), msg(deposit{}))
	if err != nil || out.Version != 7 {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	want := []string{"a>", "b>", "c>", "handler", "<c", "<b", "<a"}
	if !slices.Equal(log, want) {
		t.Fatalf("order %v, want %v", log, want)
	}
}

func TestForRunsOnlyForItsType(t *testing.T) {
	var seen []int
	fraud := middleware.For(func(ctx context.Context, c withdraw, m *middleware.Message, next middleware.Handler) (middleware.Outcome, error) {
		seen = append(seen, c.Amount)
		if c.Amount > 1000 {
			return middleware.Outcome{}, aggregate.Reject(errors.New("suspicious amount"))
		}
		c.Amount *= 2 // a middleware may replace the command
		m.Command = c
		return next(ctx, m)
	})
	var handled []any
	h := fraud(func(_ context.Context, m *middleware.Message) (middleware.Outcome, error) {
		handled = append(handled, m.Command)
		return middleware.Outcome{}, nil
	})
	ctx := context.Background()
	if _, err := h(ctx, msg(deposit{Amount: 5000})); err != nil {
		t.Fatalf("deposit: %v", err)
	}
	if _, err := h(ctx, msg(withdraw{Amount: 10})); err != nil {
		t.Fatalf("small withdrawal: %v", err)
	}
	_, err := h(ctx, msg(withdraw{Amount: 5000}))
	if !errors.Is(err, aggregate.ErrRejected) {
		t.Fatalf("large withdrawal: err %v, want a rejection", err)
	}
	if !slices.Equal(seen, []int{10, 5000}) {
		t.Errorf("middleware saw %v, want only the withdrawals", seen)
	}
	want := []any{deposit{Amount: 5000}, withdraw{Amount: 20}}
	if !slices.Equal(handled, want) {
		t.Errorf("handled %v, want %v", handled, want)
	}
}

func TestEnvelope(t *testing.T) {
	id := ulid.Make()
	c := deposit{Command: aggregate.To(id).Expect(3)}
	env := msg(c).Envelope()
	if env.AggregateID != id || env.ExpectedVersion == nil || *env.ExpectedVersion != 3 {
		t.Fatalf("envelope %+v", env)
	}
	md := middleware.Metadata{}
	md.Set("traceparent", "00-x")
	if md.Get("traceparent") != "00-x" || md.Get("nope") != "" || len(md.Keys()) != 1 {
		t.Fatalf("metadata %v", md)
	}
	cp := md.Clone()
	cp.Set("k", "v")
	if len(md) != 1 {
		t.Fatal("Clone shares the map")
	}
}
