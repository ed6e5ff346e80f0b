package interlock_test

import (
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/schema"
)

func defaultCodec() schema.Codec { return schema.Avro() }

func reflectTypeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

// decodeAs decodes an Avro record value as an E.
func decodeAs[E any](t *testing.T, r *kgo.Record) E {
	t.Helper()
	serde, err := defaultCodec().For(reflect.TypeFor[E]())
	if err != nil {
		t.Fatal(err)
	}
	v, err := serde.Decode(r.Value)
	if err != nil {
		t.Fatal(err)
	}
	return *v.(*E)
}
