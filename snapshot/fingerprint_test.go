package snapshot_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/snapshot"
)

type account struct {
	Owner   string            `json:"owner"`
	Balance int64             `json:"balance"`
	Tags    []string          `json:"tags"`
	Limits  map[string]*limit `json:"limits"`
	Opened  time.Time
	ID      ulid.ULID
	note    string // unexported: not in the encoding
}

type limit struct {
	Daily [2]float64
	Next  *limit // recursive
}

// Function-local types with one name and different shapes: the
// fingerprint must look inside named types, not only at their names.
func localV1() reflect.Type {
	type State struct{ Inner struct{ A int } }
	return reflect.TypeFor[State]()
}

func localV2() reflect.Type {
	type State struct{ Inner struct{ A int64 } }
	return reflect.TypeFor[State]()
}

type node struct {
	Kids []node
	Up   *node
	M    map[string]node
}

func TestFingerprintStable(t *testing.T) {
	typ := reflect.TypeFor[account]()
	a, b := snapshot.Fingerprint(typ, "avro"), snapshot.Fingerprint(typ, "avro")
	if a != b || a == 0 {
		t.Fatalf("two fingerprints of one type: %x, %x", a, b)
	}
	// A golden value: the fingerprint must not change between releases
	// unless every stored snapshot is meant to be dropped.
	const golden = 0x60a9e6d8fead133b
	if got := snapshot.Fingerprint(reflect.TypeFor[struct {
		A int `json:"a"`
		B []string
		C map[string]*float64
	}](), "json"); got != golden {
		t.Fatalf("fingerprint %#x, golden %#x: did the algorithm change? Then bump fingerprintVersion and the golden value", got, golden)
	}
	if snapshot.Fingerprint(reflect.TypeFor[node](), "json") != snapshot.Fingerprint(reflect.TypeFor[node](), "json") {
		t.Fatal("a recursive type has no stable fingerprint")
	}
}

func TestFingerprintChanges(t *testing.T) {
	base := reflect.TypeFor[struct {
		A int    `json:"a"`
		B string `json:"b"`
	}]()
	for _, tc := range []struct {
		name string
		typ  reflect.Type
	}{
		{"renamed field", reflect.TypeFor[struct {
			A int    `json:"a"`
			C string `json:"b"`
		}]()},
		{"changed field type", reflect.TypeFor[struct {
			A int64  `json:"a"`
			B string `json:"b"`
		}]()},
		{"added field", reflect.TypeFor[struct {
			A int    `json:"a"`
			B string `json:"b"`
			C bool
		}]()},
		{"removed field", reflect.TypeFor[struct {
			A int `json:"a"`
		}]()},
		{"changed tag", reflect.TypeFor[struct {
			A int    `json:"a"`
			B string `json:"bee"`
		}]()},
		{"reordered fields", reflect.TypeFor[struct {
			B string `json:"b"`
			A int    `json:"a"`
		}]()},
		{"pointer field", reflect.TypeFor[struct {
			A *int   `json:"a"`
			B string `json:"b"`
		}]()},
		{"named", reflect.TypeFor[named]()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if snapshot.Fingerprint(base, "avro") == snapshot.Fingerprint(tc.typ, "avro") {
				t.Fatalf("%v and %v have one fingerprint", base, tc.typ)
			}
		})
	}
	t.Run("codec", func(t *testing.T) {
		if snapshot.Fingerprint(base, "avro") == snapshot.Fingerprint(base, "json") {
			t.Fatal("two codecs, one fingerprint")
		}
	})
	t.Run("inside a named type", func(t *testing.T) {
		v1, v2 := localV1(), localV2()
		if v1.String() != v2.String() || v1.PkgPath() != v2.PkgPath() {
			t.Fatalf("the test needs two types of one name: %v, %v", v1, v2)
		}
		if snapshot.Fingerprint(v1, "avro") == snapshot.Fingerprint(v2, "avro") {
			t.Fatal("a field changed inside a named type, the fingerprint did not")
		}
	})
	t.Run("nested element", func(t *testing.T) {
		a := reflect.TypeFor[map[string][]struct{ X int }]()
		b := reflect.TypeFor[map[string][]struct{ X uint }]()
		if snapshot.Fingerprint(a, "avro") == snapshot.Fingerprint(b, "avro") {
			t.Fatal("an element type changed, the fingerprint did not")
		}
	})
}

type named struct {
	A int    `json:"a"`
	B string `json:"b"`
}

// TestFingerprintIgnores: what the codecs do not encode does not count.
func TestFingerprintIgnores(t *testing.T) {
	p := reflect.TypeFor[struct {
		A int
		b int //nolint:unused
	}]()
	q := reflect.TypeFor[struct{ A int }]()
	if snapshot.Fingerprint(p, "avro") != snapshot.Fingerprint(q, "avro") {
		t.Fatal("an unexported field changed the fingerprint")
	}
}
