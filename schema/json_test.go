package schema

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestJSONUnsupported(t *testing.T) {
	type (
		Chan    struct{ Bar chan int }
		Func    struct{ F []func() }
		Complex struct{ C *complex64 }
		Iface   struct{ I any }
		MapKey  struct{ M map[[2]int]string }
		Deep    struct {
			In struct{ M map[string]chan int }
		}
		Skipped struct {
			C chan int `json:"-"`
			f func()
			N uint64
			K map[int]string
		}
	)
	tests := []struct {
		t    reflect.Type
		want string // "" for no error
	}{
		{reflect.TypeFor[Chan](), "schema: schema.Chan.Bar: chan int cannot be encoded"},
		{reflect.TypeFor[Func](), "schema.Func.F: func() cannot be encoded"},
		{reflect.TypeFor[Complex](), "schema.Complex.C: complex64 cannot be encoded"},
		{reflect.TypeFor[Iface](), "schema.Iface.I: interface {} cannot be encoded"},
		{reflect.TypeFor[MapKey](), "schema.MapKey.M: map[[2]int]string cannot be encoded: map keys must be"},
		{reflect.TypeFor[Deep](), "schema.Deep.In.M: chan int cannot be encoded"},
		{reflect.TypeFor[*Point](), "not a struct type"},
		{reflect.TypeFor[Skipped](), ""},
		{reflect.TypeFor[DepositMoney](), ""},
	}
	for _, tc := range tests {
		t.Run(tc.t.String(), func(t *testing.T) {
			s, err := JSON().For(tc.t)
			if tc.want == "" {
				if err != nil || s.Schema() != "" || s.ID() != 0 {
					t.Errorf("For = %v, %v", s, err)
				}
				return
			}
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrUnsupported with %q", err, tc.want)
			}
		})
	}
}

func TestJSONDecodeErrors(t *testing.T) {
	s, err := JSON().For(reflect.TypeFor[Deposited]())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"", "{", `{"amount":"x"}`, `{} {}`, "\x00\x00\x00\x00\x01\x02"} {
		v, err := s.Decode([]byte(b))
		if v != nil || !errors.Is(err, ErrDecode) || !strings.HasPrefix(err.Error(), "schema: cannot decode schema.Deposited: ") {
			t.Errorf("Decode(%q) = %v, %v", b, v, err)
		}
	}
	for _, v := range []any{Point{}, (*Deposited)(nil), nil} {
		if _, err := s.Encode(v); err == nil {
			t.Errorf("encoded %#v as a Deposited", v)
		}
	}
}
