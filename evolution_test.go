package interlock_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/schema"
)

type evoAccount struct{ Cents int64 }

// FundsDeposited is version 3's deposit event: version 2's with a memo
// added (default null). Old MoneyDeposited events are upcast into it. At
// package level, for the projection; local types of the same name (in
// evoV2, evoV4) have the same record name and subject.
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

// evoV2 removes a field, promotes an int to a long and renames the event
// type with an upcaster.
func evoV2() (aggregate.Type, depositFn, []schema.Upcaster) {
	type Deposit struct {
		interlock.CommandOf[evoBalance]
		Amount int64 `avro:"amount"` // promoted
	}
	type MoneyDeposited struct { // as recorded, teller dropped, amount promoted
		Amount int64 `avro:"amount"`
	}
	type FundsDeposited struct {
		Cents int64 `avro:"cents"`
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

// evoV3 adds a field with a default (FundsDeposited.Memo) and upcasts
// version 1's events into the new shape.
func evoV3() (aggregate.Type, depositFn, []schema.Upcaster) {
	type Deposit struct {
		interlock.CommandOf[evoBalance]
		Amount int64 `avro:"amount"`
	}
	type MoneyDeposited struct {
		Amount int64 `avro:"amount"`
	}
	t := aggregate.Define[evoAccount]("account",
		aggregate.HandleResult(func(a *aggregate.Root[evoAccount], c Deposit) (evoBalance, error) {
			memo := "v3"
			a.Emit(FundsDeposited{Cents: c.Amount * 100, Memo: &memo})
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

// evoV4 adds a field without a default: refused.
func evoV4() (aggregate.Type, depositFn, []schema.Upcaster) {
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

// evoV5 removes a field from version 3's event: backward compatible, not
// forward (version 3's code cannot read its events).
func evoV5() (aggregate.Type, depositFn, []schema.Upcaster) {
	type Deposit struct {
		interlock.CommandOf[evoBalance]
		Amount int64 `avro:"amount"`
	}
	type FundsDeposited struct {
		Memo *string `avro:"memo"`
	}
	t := aggregate.Define[evoAccount]("account",
		aggregate.HandleResult(func(a *aggregate.Root[evoAccount], c Deposit) (evoBalance, error) {
			a.Emit(FundsDeposited{})
			return evoBalance{a.State().Cents}, nil
		}),
		aggregate.Apply(func(*evoAccount, FundsDeposited) {}))
	return t, nil, nil
}

// TestSchemaEvolution (issue 7), on the built-in registry, which keeps the
// schemas across the restarts: version 1 writes events; version 2 removes
// a field, promotes an int to a long and renames the event type with an
// upcaster, restores the state from version 1's events and writes events
// of the new type; version 3 adds a field with a default to that type and
// restores from both versions' events, and its projection and its
// LoadAggregate read them alike (the new field null in old events);
// version 4 adds a field without a default and is refused at start, the
// error naming the type, the field and the rule, and so does CheckSchemas.
// The compatibility level is the configured one: at FORWARD, version 4 is
// accepted and version 5, which removes a field, refused.
func TestSchemaEvolution(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	type projected struct {
		cents int64
		memo  string // "" for null
	}
	var mu sync.Mutex
	var seen []projected
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
				defer mu.Unlock()
				pr := projected{cents: e.Data.Cents}
				if e.Data.Memo != nil {
					pr.memo = *e.Data.Memo
				}
				seen = append(seen, pr)
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

	app2, dep2, err := build(evoV2, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dep2(ctx, app2, id, 5)
	if err != nil || got != 20500 {
		t.Fatalf("v2 deposit: %d, %v (want the old events upcast: 20500)", got, err)
	}
	if err := app2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	app3, dep3, err := build(evoV3, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err = dep3(ctx, app3, id, 7)
	if err != nil || got != 21200 {
		t.Fatalf("v3 deposit: %d, %v (want v1's events upcast and v2's resolved: 21200)", got, err)
	}
	if err := app3.Projection("cents").WaitFor(ctx, lastPositions(t, brokers, name+".account.events")); err != nil {
		t.Fatal(err)
	}
	want := []projected{{10000, ""}, {10000, ""}, {500, ""}, {700, "v3"}}
	mu.Lock()
	if len(seen) != len(want) {
		t.Errorf("the projection read %+v, want %+v", seen, want)
	}
	for i := range min(len(seen), len(want)) {
		if seen[i] != want[i] {
			t.Errorf("the projection's event %d: %+v, want %+v (v1's upcast, v2's with the memo's default, v3's)", i+1, seen[i], want[i])
		}
	}
	mu.Unlock()
	// Folding the log outside the processor reads old events alike.
	inst, err := app3.LoadAggregate(ctx, "account", id)
	if err != nil || inst.Version != 4 || *inst.State.(*evoAccount) != (evoAccount{Cents: 21200}) {
		t.Fatalf("LoadAggregate: %+v, %v; want 21200 cents at version 4", inst, err)
	}
	if err := app3.Close(ctx); err != nil {
		t.Fatal(err)
	}

	app4, _, err := build(evoV4, false)
	var ie *schema.IncompatibleError
	if !errors.As(err, &ie) {
		t.Fatalf("v4: err = %v, want an IncompatibleError", err)
	}
	for _, want := range []string{"FundsDeposited", "currency", "default", "BACKWARD_TRANSITIVE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("v4 refused with %q, which does not name %q", err, want)
		}
	}
	_ = app4.Close(ctx)
	// The registry can be checked without starting: what CI runs.
	check := func(v func() (aggregate.Type, depositFn, []schema.Upcaster), opts ...interlock.Option) error {
		typ, _, ups := v()
		app, err := interlock.NewBuilder(append([]interlock.Option{interlock.WithBrokers(brokers...), interlock.WithName(name),
			interlock.WithLogger(testLogger()), interlock.WithUpcasters(ups...)}, opts...)...).RegisterAggregate(typ).Build()
		if err != nil {
			t.Fatal(err)
		}
		return app.CheckSchemas(ctx)
	}
	if err := check(evoV4); !errors.As(err, &ie) || !strings.HasSuffix(ie.Path, ".currency") {
		t.Fatalf("CheckSchemas of v4: %v", err)
	}
	if err := check(evoV3); err != nil {
		t.Fatalf("CheckSchemas of v3, the registered version: %v", err)
	}
	if err := check(evoV4, interlock.WithCompatibility(schema.Forward)); err != nil {
		t.Fatalf("CheckSchemas of v4 at FORWARD (v3 reads v4's events, ignoring the currency): %v", err)
	}
	if err := check(evoV5); err != nil {
		t.Fatalf("CheckSchemas of v5, which removes a field (backward compatible): %v", err)
	}
	if err := check(evoV5, interlock.WithCompatibility(schema.Forward)); !errors.As(err, &ie) || ie.Level != schema.Forward || !strings.HasSuffix(ie.Path, ".cents") {
		t.Fatalf("CheckSchemas of v5 at FORWARD (v3's code cannot read v5's events: no cents): %v", err)
	}
}

// bookedAsRecorded is Booked as its events were written, renamed in Go:
// its AvroSchema keeps the record name they were written with.
type bookedAsRecorded struct {
	Amount int64 `avro:"amount"`
}

func (bookedAsRecorded) AvroSchema() string {
	return `{"type":"record","name":"github.com.interlock_go.interlock_test.Booked","fields":[{"name":"amount","type":"long"}]}`
}

// TestUpcasterOldTypeRenamed: an upcaster's old type renamed in Go
// (RecordedAs) reads the old events only if it keeps their record name,
// as docs/concepts/schemas.md says: without, the restore fails their
// aggregate with a message naming the rename; with an AvroSchema method
// of the recorded schema, the state is rebuilt.
func TestUpcasterOldTypeRenamed(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	type Book struct {
		interlock.CommandOf[evoBalance]
		Amount int64 `avro:"amount"`
	}
	type Booked struct {
		Amount int64 `avro:"amount"`
	}
	type Posted struct {
		Cents int64 `avro:"cents"`
	}
	type BookedV1 struct {
		Amount int64 `avro:"amount"`
	}
	start := func(emit func(int64) any, apply aggregate.Option[evoAccount], ups ...schema.Upcaster) *interlock.App {
		typ := aggregate.Define[evoAccount]("ledger",
			aggregate.HandleResult(func(a *aggregate.Root[evoAccount], c Book) (evoBalance, error) {
				a.Emit(emit(c.Amount))
				return evoBalance{a.State().Cents}, nil
			}), apply)
		app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
			interlock.WithLogger(testLogger()), interlock.WithSessionTimeout(10*time.Second), interlock.WithTransactionTimeout(5*time.Second),
			interlock.WithUpcasters(ups...)).RegisterAggregate(typ).Build()
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return app
	}
	book := func(app *interlock.App, id ulid.ULID, amount int64) (int64, error) {
		res, err := interlock.Dispatch(ctx, app, Book{CommandOf: interlock.ToResult[evoBalance](id), Amount: amount})
		return res.Value.Cents, err
	}
	id := interlock.NewID()
	v1 := start(func(a int64) any { return Booked{Amount: a} }, aggregate.Apply(func(s *evoAccount, e Booked) { s.Cents += e.Amount * 100 }))
	if _, err := book(v1, id, 3); err != nil {
		t.Fatal(err)
	}
	if err := v1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	posted := func(a int64) any { return Posted{Cents: a * 100} }
	applyPosted := aggregate.Apply(func(s *evoAccount, e Posted) { s.Cents += e.Cents })

	renamed := start(posted, applyPosted, schema.Upcast(func(e BookedV1) (Posted, error) { return Posted{Cents: e.Amount * 100}, nil }).RecordedAs("Booked"))
	_, err := book(renamed, id, 1)
	if !errors.Is(err, interlock.ErrFailed) || !strings.Contains(err.Error(), "renamed from github.com.interlock_go.interlock_test.Booked to github.com.interlock_go.interlock_test.BookedV1") {
		t.Fatalf("an old type renamed without its record name: %v", err)
	}
	if err := renamed.Close(ctx); err != nil {
		t.Fatal(err)
	}

	kept := start(posted, applyPosted, schema.Upcast(func(e bookedAsRecorded) (Posted, error) { return Posted{Cents: e.Amount * 100}, nil }).RecordedAs("Booked"))
	defer kept.Close(ctx)
	if got, err := book(kept, id, 1); err != nil || got != 400 {
		t.Fatalf("an old type renamed with its recorded schema: %d, %v; want 400 cents", got, err)
	}
}

// bookedEdited is Booked as its events were written, but edited since: a
// field added without a default, which their records do not have.
type bookedEdited struct {
	Amount int64  `avro:"amount"`
	Memo   string `avro:"memo"`
}

func (bookedEdited) AvroSchema() string {
	return `{"type":"record","name":"github.com.interlock_go.interlock_test.Booked","fields":[{"name":"amount","type":"long"},{"name":"memo","type":"string"}]}`
}

// TestUpcasterCoverage: at start, what was recorded under the record name
// of an upcaster's old type must be readable by one of that name's
// readers. The old type kept under the recorded name beside a current
// type of the same name (a shape change, at level NONE, as
// docs/concepts/schemas.md describes) starts, and the state is rebuilt
// from both shapes; an old type edited so that nothing reads the recorded
// version refuses to start, and CheckSchemas says so, naming the version
// and the field.
func TestUpcasterCoverage(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	type Book struct {
		interlock.CommandOf[evoBalance]
		Amount int64 `avro:"amount"`
	}
	type Booked struct {
		Amount int64 `avro:"amount"`
	}
	builder := func(emit func(int64) any, apply aggregate.Option[evoAccount], ups ...schema.Upcaster) *interlock.Builder {
		typ := aggregate.Define[evoAccount]("ledger",
			aggregate.HandleResult(func(a *aggregate.Root[evoAccount], c Book) (evoBalance, error) {
				a.Emit(emit(c.Amount))
				return evoBalance{a.State().Cents}, nil
			}), apply)
		return interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
			interlock.WithLogger(testLogger()), interlock.WithSessionTimeout(10*time.Second), interlock.WithTransactionTimeout(5*time.Second),
			interlock.WithCompatibility(schema.None), interlock.WithUpcasters(ups...)).RegisterAggregate(typ)
	}
	book := func(app *interlock.App, id ulid.ULID, amount int64) (int64, error) {
		res, err := interlock.Dispatch(ctx, app, Book{CommandOf: interlock.ToResult[evoBalance](id), Amount: amount})
		return res.Value.Cents, err
	}
	id := interlock.NewID()
	v1 := startWith(t, builder(func(a int64) any { return Booked{Amount: a} }, aggregate.Apply(func(s *evoAccount, e Booked) { s.Cents += e.Amount * 100 })))
	if _, err := book(v1, id, 3); err != nil {
		t.Fatal(err)
	}
	if err := v1.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The same record name, a new shape: Booked in cents now.
	type BookedCents struct {
		Cents int64 `avro:"cents"`
	}
	v2, err := func() (*interlock.App, error) {
		type Booked BookedCents
		app, err := builder(func(a int64) any { return Booked{Cents: a * 100} }, aggregate.Apply(func(s *evoAccount, e Booked) { s.Cents += e.Cents }),
			schema.Upcast(func(e bookedAsRecorded) (Booked, error) { return Booked{Cents: e.Amount * 100}, nil }).RecordedAs("Booked")).Build()
		if err != nil {
			return nil, err
		}
		return app, app.Start(ctx)
	}()
	if err != nil {
		t.Fatalf("the old type kept beside a current type of its record name: %v", err)
	}
	if got, err := book(v2, id, 1); err != nil || got != 400 {
		t.Fatalf("after the shape change: %d, %v; want 400 cents", got, err)
	}
	if err := v2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// An old type edited so that nothing of that name reads version 1.
	type Posted struct {
		Cents int64 `avro:"cents"`
	}
	posted := func(a int64) any { return Posted{Cents: a * 100} }
	edited, err := builder(posted, aggregate.Apply(func(s *evoAccount, e Posted) { s.Cents += e.Cents }),
		schema.Upcast(func(e bookedEdited) (Posted, error) { return Posted{}, nil }).RecordedAs("Booked")).Build()
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, schema.ErrIncompatible) || !strings.Contains(err.Error(), `version 1 of subject "`) ||
			!strings.Contains(err.Error(), "can be read by none of interlock_test.bookedEdited") || !strings.Contains(err.Error(), "Booked.memo") {
			t.Errorf("%s with an edited old type: %v", what, err)
		}
	}
	check("CheckSchemas", edited.CheckSchemas(ctx))
	err = edited.Start(ctx)
	if err == nil {
		edited.Close(ctx)
	}
	check("Start", err)
}

// TestWithoutSchemaRegistry: records carry the schemas' fingerprints as
// IDs, no registry topic is made, and there is nothing to check.
func TestWithoutSchemaRegistry(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name, interlock.WithoutSchemaRegistry())
	id := open(t, ctx, app)
	if _, err := interlock.Dispatch(ctx, app, deposit(id, 5)); err != nil {
		t.Fatal(err)
	}
	evs := eventsOf(t, brokers, name+".bank-account.events", id)
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	want := schemaID(t, schema.Avro(), reflectTypeOf[bank.MoneyDeposited]())
	if got := binary.BigEndian.Uint32(evs[1].Value[1:5]); got != want {
		t.Errorf("schema ID %d, want the fingerprint %d", got, want)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, name+"._schemas")
	if err != nil || topics.Has(name+"._schemas") {
		t.Errorf("the registry topic: %v, %v; want none", topics.Names(), err)
	}
	if err := app.CheckSchemas(ctx); err != nil {
		t.Errorf("CheckSchemas: %v, want nothing to check", err)
	}
}
