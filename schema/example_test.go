package schema_test

import (
	"context"
	"fmt"
	"reflect"

	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/registrytest"
)

type AccountOpened struct {
	Owner   string `avro:"owner"`
	Deposit int64  `avro:"deposit"`
	Memo    *string
}

func Example() {
	codec := schema.Avro(schema.AvroNamespace("bank"))
	serde, err := codec.For(reflect.TypeFor[AccountOpened]())
	if err != nil {
		panic(err)
	}
	fmt.Println(serde.Schema())

	b, err := serde.Encode(AccountOpened{Owner: "Ann", Deposit: 100})
	if err != nil {
		panic(err)
	}
	fmt.Printf("magic %d, schema ID %d, body % x\n", b[0], serde.ID(), b[5:])

	v, err := serde.Decode(b)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", *v.(*AccountOpened))
	// Output:
	// {"name":"bank.AccountOpened","type":"record","fields":[{"name":"owner","type":"string"},{"name":"deposit","type":"long"},{"name":"Memo","type":["null","string"],"default":null}]}
	// magic 0, schema ID 196522625, body 06 41 6e 6e c8 01 00
	// {Owner:Ann Deposit:100 Memo:<nil>}
}

func ExampleRegister() {
	ctx := context.Background()
	// In production: httpregistry.New(...) or kafkaregistry.New(...).
	reg := registrytest.NewMemory()
	codec := schema.Avro(schema.AvroNamespace("bank"), schema.AvroRegistry(reg))

	// At start, each event type is registered under its topic.
	serde, err := codec.For(reflect.TypeFor[AccountOpened]())
	if err != nil {
		panic(err)
	}
	id, err := schema.Register(ctx, serde, "bank.account.events")
	fmt.Println("registered with ID", id, err)

	// The next version of the code adds a field without a default: it
	// could not read the events written so far.
	type AccountOpened struct {
		Owner   string `avro:"owner"`
		Deposit int64  `avro:"deposit"`
		Memo    *string
		Branch  string `avro:"branch"`
	}
	next, err := schema.Avro(schema.AvroNamespace("bank"), schema.AvroRegistry(reg)).For(reflect.TypeFor[AccountOpened]())
	if err != nil {
		panic(err)
	}
	fmt.Println(schema.Check(ctx, next, "bank.account.events"))
	// Output:
	// registered with ID 1 <nil>
	// schema: schema_test.AccountOpened breaks BACKWARD_TRANSITIVE compatibility with version 1 of subject "bank.account.events-bank.AccountOpened": bank.AccountOpened.branch: field added without a default: old data has no value for it (give it a default, e.g. make it a pointer)
}

func ExampleUpcast() {
	// Funds were once deposited as MoneyDeposited{Amount: "12.34 EUR"};
	// the event is now FundsDeposited{Cents, Currency}.
	type MoneyDeposited struct {
		Amount string `avro:"amount"`
	}
	type FundsDeposited struct {
		Cents    int64  `avro:"cents"`
		Currency string `avro:"currency"`
	}
	codec := schema.Avro()
	ups, err := schema.NewUpcasters(codec,
		schema.Upcast(func(e MoneyDeposited) (FundsDeposited, error) {
			var units, cents int64
			var cur string
			if _, err := fmt.Sscanf(e.Amount, "%d.%d %s", &units, &cents, &cur); err != nil {
				return FundsDeposited{}, err
			}
			return FundsDeposited{Cents: units*100 + cents, Currency: cur}, nil
		}),
	)
	if err != nil {
		panic(err)
	}

	// A record written years ago, under the type name MoneyDeposited.
	old, _ := codec.For(reflect.TypeFor[MoneyDeposited]())
	rec, _ := old.Encode(MoneyDeposited{Amount: "12.34 EUR"})

	// Read as the application reads it: there is no current type called
	// MoneyDeposited, so the old type reads it and is upcast.
	v, err := ups.Decode("MoneyDeposited", rec, nil)
	fmt.Printf("%+v %v\n", *v.(*FundsDeposited), err)
	// Output: {Cents:1234 Currency:EUR} <nil>
}
