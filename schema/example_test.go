package schema_test

import (
	"fmt"
	"reflect"

	"github.com/interlock-go/interlock/schema"
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
