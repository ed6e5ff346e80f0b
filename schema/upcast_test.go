package schema_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/registrytest"
)

// The history of one event: MoneyDeposited had its amount as text ("12.34
// EUR"), then split it into cents and currency, then was renamed
// FundsDeposited. Only FundsDeposited is a current type.

type MoneyDepositedV1 struct {
	Amount string `avro:"amount"`
}

func (MoneyDepositedV1) AvroSchema() string {
	return `{"type":"record","name":"bank.MoneyDeposited","fields":[{"name":"amount","type":"string"}]}`
}

type MoneyDepositedV2 struct {
	Cents    int64  `avro:"cents"`
	Currency string `avro:"currency"`
}

func (MoneyDepositedV2) AvroSchema() string {
	return `{"type":"record","name":"bank.MoneyDeposited","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}`
}

type FundsDeposited struct {
	Cents    int64  `avro:"cents"`
	Currency string `avro:"currency"`
}

func split(e MoneyDepositedV1) (MoneyDepositedV2, error) {
	num, cur, ok := strings.Cut(e.Amount, " ")
	whole, frac, _ := strings.Cut(num, ".")
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt(frac+"00"[len(frac):], 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return MoneyDepositedV2{}, fmt.Errorf("amount %q is not like 12.34 EUR", e.Amount)
	}
	return MoneyDepositedV2{Cents: w*100 + f, Currency: cur}, nil
}

func rename(e MoneyDepositedV2) (FundsDeposited, error) { return FundsDeposited(e), nil }

func history(codec schema.Codec) (*schema.Upcasters, error) {
	return schema.NewUpcasters(codec,
		schema.Upcast(split).RecordedAs("MoneyDeposited"),
		schema.Upcast(rename).RecordedAs("MoneyDeposited"),
	)
}

func TestUpcastDecode(t *testing.T) {
	ctx := context.Background()
	for _, withRegistry := range []bool{false, true} {
		t.Run(fmt.Sprint("registry=", withRegistry), func(t *testing.T) {
			// past writes the records of earlier deployments; codec is the
			// application's now.
			past, codec := schema.Avro(), schema.Avro()
			if withRegistry {
				reg := registrytest.NewMemory()
				past = schema.Avro(schema.AvroRegistry(reg, schema.CompatibilityLevel(schema.None)))
				codec = schema.Avro(schema.AvroRegistry(reg))
			}
			encode := func(c schema.Codec, v any) []byte {
				s, err := c.For(reflect.TypeOf(v))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := schema.Register(ctx, s, "bank.events"); err != nil {
					t.Fatal(err)
				}
				b, err := s.Encode(v)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			recV1 := encode(past, MoneyDepositedV1{Amount: "12.34 EUR"})
			recV2 := encode(past, MoneyDepositedV2{Cents: 99, Currency: "CHF"})
			recCur := encode(codec, FundsDeposited{Cents: 5, Currency: "USD"})

			ups, err := history(codec)
			if err != nil {
				t.Fatal(err)
			}
			current, err := codec.For(reflect.TypeFor[FundsDeposited]())
			if err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				name    string
				rec     []byte
				current schema.Serde
				want    FundsDeposited
			}{
				{"MoneyDeposited", recV1, nil, FundsDeposited{Cents: 1234, Currency: "EUR"}},
				{"MoneyDeposited", recV2, nil, FundsDeposited{Cents: 99, Currency: "CHF"}},
				{"FundsDeposited", recCur, current, FundsDeposited{Cents: 5, Currency: "USD"}},
			}
			for _, tc := range tests {
				got, err := ups.Decode(tc.name, tc.rec, tc.current)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if p, ok := got.(*FundsDeposited); !ok || *p != tc.want {
					t.Errorf("%s: got %#v, want %+v", tc.name, got, tc.want)
				}
			}
			// A record no type reads.
			if _, err := ups.Decode("MoneyDeposited", []byte{0, 0, 0, 0, 1, 2}, nil); !errors.Is(err, schema.ErrDecode) {
				t.Errorf("unknown schema: err = %v", err)
			}
			if _, err := ups.Decode("Nothing", recCur, nil); !errors.Is(err, schema.ErrDecode) || !strings.Contains(err.Error(), `"Nothing"`) {
				t.Errorf("unknown name: err = %v", err)
			}
			// An upcaster that fails on a record.
			bad := encode(past, MoneyDepositedV1{Amount: "lots"})
			if _, err := ups.Decode("MoneyDeposited", bad, nil); !errors.Is(err, schema.ErrUpcast) || !strings.Contains(err.Error(), `amount "lots" is not like 12.34 EUR`) {
				t.Errorf("failing upcaster: err = %v", err)
			}
		})
	}
}

// The old shape under the current name: the current type cannot resolve
// the old writer schema, so the old type reads it and is upcast.
func TestUpcastSameNameNewShape(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.NewMemory()
	codec := schema.Avro(schema.AvroRegistry(reg, schema.CompatibilityLevel(schema.None)))
	old, err := codec.For(reflect.TypeFor[MoneyDepositedV1]())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Register(ctx, old, "bank.events"); err != nil {
		t.Fatal(err)
	}
	rec, err := old.Encode(MoneyDepositedV1{Amount: "1.5 EUR"})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := codec.For(reflect.TypeFor[MoneyDepositedV2]())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cur.Decode(rec); !errors.Is(err, schema.ErrIncompatible) {
		t.Fatalf("the current type reading the old shape: err = %v, want ErrIncompatible", err)
	}
	ups, err := schema.NewUpcasters(codec, schema.Upcast(split).RecordedAs("MoneyDeposited"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ups.Decode("MoneyDeposited", rec, cur)
	if err != nil || *got.(*MoneyDepositedV2) != (MoneyDepositedV2{Cents: 150, Currency: "EUR"}) {
		t.Errorf("got %+v, %v", got, err)
	}
}

type (
	A struct{ X int64 }
	B struct{ X int64 }
	C struct{ X int64 }
	U struct{ C chan int }
)

func TestNewUpcastersErrors(t *testing.T) {
	ab := schema.Upcast(func(a A) (B, error) { return B(a), nil })
	ba := schema.Upcast(func(b B) (A, error) { return A(b), nil })
	bc := schema.Upcast(func(b B) (C, error) { return C(b), nil })
	tests := []struct {
		name string
		ups  []schema.Upcaster
		want string
	}{
		{"loop", []schema.Upcaster{ab, ba}, "upcasters loop: schema_test.A → schema_test.B → schema_test.A"},
		{"twice", []schema.Upcaster{ba, bc}, "two upcasters from schema_test.B: to schema_test.A and to schema_test.C"},
		{"self", []schema.Upcaster{schema.Upcast(func(a A) (A, error) { return a, nil })}, "upcaster from schema_test.A to itself"},
		{"not a struct", []schema.Upcaster{schema.Upcast(func(s string) (A, error) { return A{}, nil })}, "events are structs"},
		{"unsupported", []schema.Upcaster{schema.Upcast(func(U) (A, error) { return A{}, nil })}, "chan int cannot be encoded"},
		{"zero", []schema.Upcaster{{}}, "not made by Upcast"},
		{"no name", []schema.Upcaster{ab.RecordedAs("")}, "no recorded type name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := schema.NewUpcasters(schema.Avro(), tc.ups...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestUpcastApply(t *testing.T) {
	ups, err := schema.NewUpcasters(schema.Avro(),
		schema.Upcast(func(a A) (B, error) { return B{a.X + 1}, nil }),
		schema.Upcast(func(b B) (C, error) {
			if b.X < 0 {
				return C{}, errors.New("negative")
			}
			if b.X == 0 {
				panic("zero")
			}
			return C{b.X * 10}, nil
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in   any
		want any
		err  string
	}{
		{A{1}, C{20}, ""},
		{&A{1}, C{20}, ""},
		{B{3}, C{30}, ""},
		{C{4}, C{4}, ""},
		{"other", "other", ""},
		{A{-5}, nil, "schema: upcast failed: schema_test.B to schema_test.C: negative"},
		{A{-1}, nil, "schema: upcast failed: schema_test.B to schema_test.C: panic: zero"},
	}
	for _, tc := range tests {
		got, err := ups.Apply(tc.in)
		if tc.err != "" {
			if !errors.Is(err, schema.ErrUpcast) || err.Error() != tc.err {
				t.Errorf("Apply(%v): err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Apply(%v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if got := ups.Target(reflect.TypeFor[A]()); got != reflect.TypeFor[C]() {
		t.Errorf("Target(A) = %v", got)
	}
	if got := ups.Old("A"); len(got) != 1 || got[0] != reflect.TypeFor[A]() {
		t.Errorf("Old(A) = %v", got)
	}
}

// With the JSON codec, which reads any document into any type, upcasters
// apply to renamed types: the recorded name has no current type.
func TestUpcastJSON(t *testing.T) {
	codec := schema.JSON()
	ups, err := history(codec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ups.Decode("MoneyDeposited", []byte(`{"Amount":"0.5 CHF"}`), nil)
	if err != nil || *got.(*FundsDeposited) != (FundsDeposited{Cents: 50, Currency: "CHF"}) {
		t.Errorf("got %+v, %v", got, err)
	}
	cur, _ := codec.For(reflect.TypeFor[FundsDeposited]())
	got, err = ups.Decode("FundsDeposited", []byte(`{"Cents":7,"Currency":"EUR"}`), cur)
	if err != nil || *got.(*FundsDeposited) != (FundsDeposited{Cents: 7, Currency: "EUR"}) {
		t.Errorf("got %+v, %v", got, err)
	}
}
