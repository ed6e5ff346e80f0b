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
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/schema"
)

type evoAccount struct{ Cents int64 }

// FundsDeposited is version 2's deposit event, which old MoneyDeposited
// events are upcast into (at package level, for the projection; its name is
// its record's and its subject's).
type FundsDeposited struct {
	Cents int64   `avro:"cents"`
	Memo  *string `avro:"memo"`
}
type evoBalance struct{ Cents int64 }

type depositFn func(ctx context.Context, app *interlock.App, id ulid.ULID, amount int) (int64, error)

func evoV1() (aggregate.Type, depositFn, []schema.Upcaster) {
	type Deposit struct {
		interlock.CommandOf[evoBalance]
		Amount int32 `avro:"amount"`
	}
	type MoneyDeposited struct {
		Amount int32  `avro:"amount"`
		Teller string `avro:"teller"`
	}
	t := aggregate.Define[evoAccount]("account",
		aggregate.HandleResult(func(a *aggregate.Root[evoAccount], c Deposit) (evoBalance, error) {
			a.Emit(MoneyDeposited{Amount: c.Amount, Teller: "t"})
			return evoBalance{a.State().Cents}, nil
		}),
		aggregate.Apply(func(s *evoAccount, e MoneyDeposited) { s.Cents += int64(e.Amount) * 100 }))
	return t, func(ctx context.Context, app *interlock.App, id ulid.ULID, amount int) (int64, error) {
		res, err := interlock.Dispatch(ctx, app, Deposit{CommandOf: interlock.ToResult[evoBalance](id), Amount: int32(amount)})
		return res.Value.Cents, err
	}, nil
}

func evoV2() (aggregate.Type, depositFn, []schema.Upcaster) {
	type Deposit struct {
		interlock.CommandOf[evoBalance]
		Amount int64 `avro:"amount"` // promoted
	}
	type MoneyDeposited struct { // as recorded, teller dropped, amount promoted
		Amount int64 `avro:"amount"`
	}
	t := aggregate.Define[evoAccount]("account",
		aggregate.HandleResult(func(a *aggregate.Root[evoAccount], c Deposit) (evoBalance, error) {
			a.Emit(FundsDeposited{Cents: c.Amount * 100})
			return evoBalance{a.State().Cents}, nil
		}),
		aggregate.Apply(func(s *evoAccount, e FundsDeposited) { s.Cents += e.Cents }))
	return t, func(ctx context.Context, app *interlock.App, id ulid.ULID, amount int) (int64, error) {
			res, err := interlock.Dispatch(ctx, app, Deposit{CommandOf: interlock.ToResult[evoBalance](id), Amount: int64(amount)})
			return res.Value.Cents, err
		}, []schema.Upcaster{schema.Upcast(func(e MoneyDeposited) (FundsDeposited, error) {
			return FundsDeposited{Cents: e.Amount * 100}, nil
		})}
}

func evoV3() (aggregate.Type, depositFn, []schema.Upcaster) {
	type Deposit struct {
		interlock.CommandOf[evoBalance]
		Amount int64 `avro:"amount"`
	}
	type FundsDeposited struct {
		Cents    int64   `avro:"cents"`
		Memo     *string `avro:"memo"`
		Currency string  `avro:"currency"` // no default: refused
	}
	t := aggregate.Define[evoAccount]("account",
		aggregate.HandleResult(func(a *aggregate.Root[evoAccount], c Deposit) (evoBalance, error) {
			a.Emit(FundsDeposited{Cents: c.Amount * 100})
			return evoBalance{a.State().Cents}, nil
		}),
		aggregate.Apply(func(s *evoAccount, e FundsDeposited) { s.Cents += e.Cents }))
	return t, nil, nil
}

// TestSchemaEvolution (issue 7): version 1 writes events; version 2
// removes a field, promotes an int to a long, adds a field with a default
// and renames the event type with an upcaster: it restores the state from
// the old events, and a projection reads them through the same upcaster;
// version 3 adds a field without a default and is refused at start, the
// error naming the type, the field and the rule. The built-in registry
// keeps the schemas across the restarts.
func TestSchemaEvolution(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	var mu sync.Mutex
	projected := map[string]int64{}
	build := func(v func() (aggregate.Type, depositFn, []schema.Upcaster), withProjection bool) (*interlock.App, depositFn, error) {
		typ, dep, ups := v()
		b := interlock.NewBuilder(
			interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
			interlock.WithLogger(testLogger()), interlock.WithSessionTimeout(10*time.Second), interlock.WithTransactionTimeout(5*time.Second),
			interlock.WithUpcasters(ups...),
		).RegisterAggregate(typ)
		if withProjection {
			p := projections.New("cents", projections.Effects())
			projections.On(p, func(ctx context.Context, _ *struct{}, e projections.Event[FundsDeposited]) error {
				mu.Lock()
				projected[e.AggregateID.String()] += e.Data.Cents
				mu.Unlock()
				return nil
			})
			b.RegisterProjection(p)
		}
		app, err := b.Build()
		if err != nil {
			return nil, nil, err
		}
		return app, dep, app.Start(ctx)
	}
	id := interlock.NewID()
	app1, dep1, err := build(evoV1, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{10000, 20000} {
		if got, err := dep1(ctx, app1, id, 100); err != nil || got != want {
			t.Fatalf("v1 deposit %d: %d, %v", i, got, err)
		}
	}
	if err := app1.Close(ctx); err != nil {
		t.Fatal(err)
	}

	app2, dep2, err := build(evoV2, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dep2(ctx, app2, id, 5)
	if err != nil || got != 20500 {
		t.Fatalf("v2 deposit: %d, %v (want the old events upcast: 20500)", got, err)
	}
	if err := app2.Projection("cents").WaitFor(ctx, lastPositions(t, brokers, name+".account.events")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if projected[id.String()] != 20500 {
		t.Errorf("the projection read %d cents, want 20500 (two old events upcast, one new)", projected[id.String()])
	}
	mu.Unlock()
	if err := app2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	app3, _, err := build(evoV3, false)
	var ie *schema.IncompatibleError
	if !errors.As(err, &ie) {
		t.Fatalf("v3: err = %v, want an IncompatibleError", err)
	}
	for _, want := range []string{"FundsDeposited", "currency", "default"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("v3 refused with %q, which does not name %q", err, want)
		}
	}
	_ = app3.Close(ctx)
	// The registry can be checked without starting: what CI runs.
	typ, _, _ := evoV3()
	app4, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithLogger(testLogger())).
		RegisterAggregate(typ).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app4.CheckSchemas(ctx); !errors.As(err, &ie) {
		t.Fatalf("CheckSchemas of v3: %v", err)
	}
	typ, _, _ = evoV2()
	app5, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithLogger(testLogger())).
		RegisterAggregate(typ).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app5.CheckSchemas(ctx); err != nil {
		t.Fatalf("CheckSchemas of v2, the registered version: %v", err)
	}
}
