package interlock_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/projections"
)

type meter struct{ Total int64 }

type Add struct {
	interlock.Command
	By int64 `avro:"by"`
}

type Added struct {
	By int64 `avro:"by"`
}

// meters is an aggregate whose applier panics on Added{By: 7} when
// cursed: a version of the code that cannot fold an event already in the
// log.
func meters(cursed bool) *aggregate.Definition[meter] {
	return aggregate.Define[meter]("meter",
		aggregate.Handle(func(a *aggregate.Root[meter], c Add) error {
			a.Emit(Added{By: c.By})
			return nil
		}),
		aggregate.Apply(func(s *meter, e Added) {
			if cursed && e.By == 7 {
				panic("cannot fold seven")
			}
			s.Total += e.By
		}),
	)
}

// TestUserPanicsNeverCrash: a panic in user code the runtime calls (a
// handler, a handle-side middleware, an applier while a partition is
// restored, a projection's handler) fails what it was doing with a clear
// error and no stack for the caller; the process, its partitions and its
// projections go on (invariant 7).
func TestUserPanicsNeverCrash(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	opts := []interlock.Option{interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1), interlock.WithLogger(testLogger())}

	// A first version of the code writes a 7 and a 1.
	first := launch(t, interlock.NewBuilder(opts...).RegisterAggregate(meters(false)))
	seven, one := interlock.NewID(), interlock.NewID()
	for id, by := range map[ulid.ULID]int64{seven: 7, one: 1} {
		if _, err := interlock.Dispatch(ctx, first, Add{Command: interlock.To(id), By: by}); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The next version cannot fold the 7, panics in a middleware for
	// Add{By: 13}, and has a projection that panics on the 7.
	var mu sync.Mutex
	projected := map[int64]bool{}
	totals := projections.New("totals", projections.Effects(), projections.WithRetries(1, 10*time.Millisecond))
	projections.On(totals, func(_ context.Context, _ *struct{}, e projections.Event[Added]) error {
		if e.Data.By == 7 {
			panic("projection cannot take seven")
		}
		mu.Lock()
		defer mu.Unlock()
		projected[e.Data.By] = true
		return nil
	})
	app := startWith(t, interlock.NewBuilder(opts...).
		RegisterAggregate(meters(true)).
		RegisterProjection(totals).
		UseHandle(middleware.For(func(ctx context.Context, c Add, m *middleware.Message, next middleware.Handler) (middleware.Outcome, error) {
			if c.By == 13 {
				panic("middleware cannot take thirteen")
			}
			return next(ctx, m)
		})))

	noStack := func(what string, err error, want string) {
		t.Helper()
		if !errors.Is(err, interlock.ErrFailed) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want ErrFailed saying %q", what, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "goroutine ") || strings.Contains(err.Error(), ".go:")) {
			t.Errorf("%s: the caller's error carries a stack trace: %v", what, err)
		}
	}
	_, err := interlock.Dispatch(ctx, app, Add{Command: interlock.To(seven), By: 1})
	noStack("an aggregate whose replay panics", err, "cannot fold seven")
	_, err = interlock.Dispatch(ctx, app, Add{Command: interlock.To(one), By: 13})
	noStack("a panicking middleware", err, "middleware cannot take thirteen")
	_, err = interlock.Dispatch(ctx, app, Add{Command: interlock.To(interlock.NewID()), By: 7})
	noStack("a handler whose applier panics", err, "cannot fold seven")

	// The partition goes on.
	res, err := interlock.Dispatch(ctx, app, Add{Command: interlock.To(one), By: 2})
	if err != nil || res.Version != 2 {
		t.Fatalf("after the panics: %+v, %v; want version 2", res, err)
	}
	// So does the projection: the 7 is parked, the others applied.
	if err := app.Projection("totals").WaitFor(ctx, res.Positions); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if !projected[1] || !projected[2] {
		t.Errorf("projected %v; want the 1 and the 2", projected)
	}
	mu.Unlock()
	parked, err := app.Projection("totals").Parked(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].Key != seven.String() || !strings.Contains(parked[0].Error, "projection cannot take seven") {
		t.Errorf("parked %+v; want the 7, parked for its panic", parked)
	}
}
