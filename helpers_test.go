package interlock_test

import (
	"reflect"

	"github.com/interlock-go/interlock/schema"
)

func defaultCodec() schema.Codec { return schema.Avro() }

func reflectTypeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }
