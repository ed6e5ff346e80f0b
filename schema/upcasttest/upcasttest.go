// Package upcasttest checks upcasters against recorded old events: the
// bytes an earlier version of the code wrote, kept in testdata, must still
// become the expected current events.
package upcasttest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/interlock-go/interlock/schema"
)

// Case is one recorded old event and the current event it must become.
type Case struct {
	// Name is the type name recorded with the event (its interlock-type
	// header).
	Name string
	// Record is the record value as it was written.
	Record []byte
	// Want is the current event (a value, not a pointer).
	Want any
}

// Check decodes each case's record as the application does (Upcasters.Decode,
// with the Serde of Want's type from codec as the current type when Want's
// type is named Name) and reports on t every case that fails or does not
// decode into Want (reflect.DeepEqual).
func Check(t testing.TB, ups *schema.Upcasters, codec schema.Codec, cases ...Case) {
	t.Helper()
	for i, c := range cases {
		wt := reflect.TypeOf(c.Want)
		if wt == nil {
			t.Errorf("case %d (%s): no Want", i, c.Name)
			continue
		}
		var current schema.Serde
		if wt.Name() == c.Name {
			s, err := codec.For(wt)
			if err != nil {
				t.Errorf("case %d (%s): %v", i, c.Name, err)
				continue
			}
			current = s
		}
		got, err := ups.Decode(c.Name, c.Record, current)
		if err != nil {
			t.Errorf("case %d (%s): %v", i, c.Name, err)
			continue
		}
		if v := reflect.ValueOf(got).Elem().Interface(); !reflect.DeepEqual(v, c.Want) {
			t.Errorf("case %d (%s): got %T %+v, want %T %+v", i, c.Name, v, v, c.Want, c.Want)
		}
	}
}

// Recorded returns the record kept in the file at path. When the file does
// not exist it records old there first, encoded with codec: run the test
// once while old is the current shape of its event (a codec without a
// registry, so that the frame's ID is the schema's fingerprint), commit the
// file, and from then on the test reads the bytes of that version whatever
// the code has become.
func Recorded(t testing.TB, path string, codec schema.Codec, old any) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err == nil {
		return b
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	s, err := codec.For(reflect.TypeOf(old))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = s.Encode(old); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s: commit it", path)
	return b
}
