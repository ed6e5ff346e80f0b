package schema

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// FuzzEvent has a field of most mappings, and recursion.
type FuzzEvent struct {
	MoneyDeposited
	Flags  []bool
	Tags   map[string]*int32
	Raw    []byte
	Hash   Hash
	Took   time.Duration
	F      float32
	Nested *FuzzEvent
	Kids   []FuzzEvent
}

func FuzzAvroDecode(f *testing.F) {
	s, err := Avro().For(reflect.TypeFor[FuzzEvent]())
	if err != nil {
		f.Fatal(err)
	}
	ev := FuzzEvent{MoneyDeposited: benchEvent(), Flags: []bool{true}, Tags: map[string]*int32{"a": ptr(int32(1)), "b": nil}, Raw: []byte{1}}
	ev.Nested = &FuzzEvent{Kids: []FuzzEvent{{F: 1}}}
	for _, v := range []FuzzEvent{{}, ev} {
		b, err := s.Encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Make most inputs reach the body.
		if len(b) >= 5 && b[0] == 0 {
			b = append([]byte{0, byte(s.ID() >> 24), byte(s.ID() >> 16), byte(s.ID() >> 8), byte(s.ID())}, b[5:]...)
		}
		v, err := s.Decode(b)
		if err != nil {
			if !errors.Is(err, ErrDecode) || v != nil {
				t.Fatalf("Decode = %v, %v", v, err)
			}
			return
		}
		// What decodes, encodes back to the same bytes.
		again, err := s.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Decode(again); err != nil {
			t.Fatal(err)
		}
	})
}
