package schema

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// JSON returns the JSON codec: payloads are encoding/json documents with no
// framing and no schema (Schema is "", ID is 0). It is meant for debugging
// and for consumers that cannot read Avro; fields follow the json tags.
func JSON() Codec { return jsonCodec{} }

type jsonCodec struct{}

// Name returns "json".
func (jsonCodec) Name() string { return "json" }

// For returns the Serde of struct type t, after checking that every field
// encoding/json would encode can also be decoded back into its Go type.
func (jsonCodec) For(t reflect.Type) (Serde, error) {
	if t == nil || t.Kind() != reflect.Struct {
		return nil, unsupported(fmt.Sprint(t), "not a struct type")
	}
	if err := jsonCheck(t, t.String(), map[reflect.Type]bool{}); err != nil {
		return nil, err
	}
	return &jsonSerde{t: t, pt: reflect.PointerTo(t)}, nil
}

var (
	jsonMarshaler   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

// jsonCheck rejects the types encoding/json cannot encode, and interfaces,
// which it encodes but cannot decode into their concrete type.
func jsonCheck(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	pt := reflect.PointerTo(t)
	if (t.Implements(jsonMarshaler) || pt.Implements(jsonMarshaler)) && pt.Implements(jsonUnmarshaler) ||
		(t.Implements(textMarshaler) || pt.Implements(textMarshaler)) && pt.Implements(textUnmarshaler) {
		return nil // the type encodes and decodes itself
	}
	switch t.Kind() {
	case reflect.Complex64, reflect.Complex128, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return unsupported(path, t.String()+" cannot be encoded")
	case reflect.Interface:
		return unsupported(path, t.String()+" cannot be encoded: an interface decodes as a map, not as its concrete type")
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return jsonCheck(t.Elem(), path, seen)
	case reflect.Map:
		switch k := t.Key(); {
		case k.Kind() == reflect.String,
			k.Kind() >= reflect.Int && k.Kind() <= reflect.Uintptr,
			reflect.PointerTo(k).Implements(textUnmarshaler) && (k.Implements(textMarshaler) || reflect.PointerTo(k).Implements(textMarshaler)):
		default:
			return unsupported(path, t.String()+" cannot be encoded: map keys must be strings, integers or encoding.TextMarshalers")
		}
		return jsonCheck(t.Elem(), path, seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Tag.Get("json") == "-" || !f.IsExported() && !f.Anonymous {
				continue
			}
			if err := jsonCheck(f.Type, path+"."+f.Name, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

type jsonSerde struct {
	t, pt reflect.Type
}

func (s *jsonSerde) Schema() string { return "" }

func (s *jsonSerde) ID() uint32 { return 0 }

func (s *jsonSerde) Encode(v any) ([]byte, error) {
	switch tv := reflect.TypeOf(v); {
	case tv == s.pt && reflect.ValueOf(v).IsNil():
		return nil, fmt.Errorf("schema: cannot encode a nil %T", v)
	case tv != s.t && tv != s.pt:
		return nil, fmt.Errorf("schema: cannot encode a %T as %v", v, s.t)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("schema: cannot encode %v: %w", s.t, err)
	}
	return b, nil
}

func (s *jsonSerde) Decode(b []byte) (any, error) {
	p := reflect.New(s.t)
	if err := json.Unmarshal(b, p.Interface()); err != nil {
		return nil, fmt.Errorf("%w %v: %w", ErrDecode, s.t, err)
	}
	return p.Interface(), nil
}
