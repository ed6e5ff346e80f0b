package schema

import (
	"bytes"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

func ptr[T any](v T) *T { return &v }

// roundTrips lists a value of every supported mapping; avro and json are
// what decoding gives back when it is not the value itself.
func roundTrips() []struct {
	name       string
	v          any
	avro, json any
} {
	at := time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.FixedZone("CET", 3600))
	before1970 := time.Date(1969, 7, 20, 20, 17, 40, 999999999, time.UTC)
	id := ulid.MustParse("01HQ3Z8W6T7M9X2Y4B5C6D7E8F")
	return []struct {
		name       string
		v          any
		avro, json any
	}{
		{name: "bool", v: Bools{V: true}},
		{name: "ints min", v: Ints{math.MinInt8, math.MinInt16, math.MinInt32, math.MinInt64, math.MinInt}},
		{name: "ints max", v: Ints{math.MaxInt8, math.MaxInt16, math.MaxInt32, math.MaxInt64, math.MaxInt}},
		{name: "ints zero", v: Ints{}},
		{name: "floats", v: Floats{F: math.MaxFloat32, D: -math.SmallestNonzeroFloat64}},
		{name: "floats inf", v: Floats{F: float32(math.Inf(1)), D: math.Inf(-1)}, json: skip},
		{name: "strings", v: Strings{S: "héllo, 世界 \x00", C: "EUR"}},
		{name: "bytes", v: Bytes{B: []byte{0, 1, 2, 255}, N: nil}, avro: Bytes{B: []byte{0, 1, 2, 255}, N: []byte{}}},
		{name: "fixed", v: Fixeds{H: Hash{1, 2, 3, 31: 9}, A: [4]byte{1, 2, 3, 4}, A2: [4]byte{5}}},
		{
			name: "times",
			v:    Times{At: at, D: 1500*time.Millisecond + 1234*time.Nanosecond, Opt: &before1970},
			avro: Times{At: at.Truncate(time.Microsecond).UTC(), D: 1500*time.Millisecond + 1*time.Microsecond, Opt: ptr(before1970.Truncate(time.Microsecond))},
			json: skip, // compared in TestJSONTimes: the zone comes back as a fixed offset
		},
		{name: "zero time", v: Times{}},
		{name: "negative duration", v: Times{D: -time.Hour}},
		{name: "ulid", v: ULIDs{ID: id, Opt: &id}},
		{name: "text marshaler", v: Texts{U: "abc"}},
		{name: "pointers set", v: Ptrs{P: &Point{1, -2}, S: ptr("s"), Sl: &[]int64{1}, Map: &map[string]string{"k": "v"}}},
		{name: "pointers nil", v: Ptrs{}},
		{
			name: "slices",
			v:    Slices{Pts: []Point{{1, 2}, {3, 4}}, Ptrs: []*Point{{5, 6}, nil}, Empty: []string{}, Deep: [][]int32{{1}, {}, {2, 3}}},
			avro: Slices{Pts: []Point{{1, 2}, {3, 4}}, Ptrs: []*Point{{5, 6}, nil}, Nil: []string{}, Empty: []string{}, Deep: [][]int32{{1}, {}, {2, 3}}},
		},
		{
			name: "maps",
			v:    Maps{M: map[string]int64{"a": 1, "": -1}, Pts: map[string]Point{"p": {7, 8}}, Named: map[Currency]string{"EUR": "€"}},
			avro: Maps{M: map[string]int64{"a": 1, "": -1}, Pts: map[string]Point{"p": {7, 8}}, Nil: map[string]bool{}, Named: map[Currency]string{"EUR": "€"}},
		},
		{name: "nested and reused", v: Nested{Name: "n", From: Point{1, 2}, To: Point{3, 4}, Inner: struct {
			A string
			B *Point
		}{"a", &Point{5, 6}}}},
		{
			name: "recursive",
			v:    Node{Value: 1, Next: &Node{Value: 2, Children: []Node{}}, Children: []Node{{Value: 3, Children: []Node{}}}},
			json: Node{Value: 1, Next: &Node{Value: 2, Children: []Node{}}, Children: []Node{{Value: 3, Children: []Node{}}}},
		},
		{name: "embedded", v: Embeds{Meta: Meta{Actor: "ann", At: time.Date(2020, 1, 1, 0, 0, 0, 1000, time.UTC)}, Amount: 7}},
		{name: "embedded hidden", v: Embeds{Amount: 7, Hidden: "x", skip: 3}, avro: Embeds{Amount: 7}, json: Embeds{Amount: 7}},
		{
			name: "times in containers",
			v:    Clock{L: []time.Time{time.Unix(1, 1000).UTC()}, M: map[string]time.Duration{"d": time.Minute}, P: []*time.Duration{nil, ptr(time.Second)}},
		},
		{name: "pointer-shaped struct", v: Solo{P: &Point{1, 2}}},
		{name: "pointer-shaped struct nil", v: Solo{}},
		{name: "map-shaped struct", v: SoloMap{M: map[string]int64{"a": 1}}},
		{name: "generic", v: Generic{P: Pair[string, Point]{"a", Point{1, 2}}}},
	}
}

// skip marks a case that a codec does not check here.
var skip = struct{ skip bool }{true}

func TestRoundTrip(t *testing.T) {
	for _, codec := range []Codec{Avro(), JSON()} {
		for _, tc := range roundTrips() {
			t.Run(codec.Name()+"/"+tc.name, func(t *testing.T) {
				want := tc.v
				switch w := map[string]any{"avro": tc.avro, "json": tc.json}[codec.Name()]; {
				case w == skip:
					t.Skip()
				case w != nil:
					want = w
				}
				s, err := codec.For(reflect.TypeOf(tc.v))
				if err != nil {
					t.Fatal(err)
				}
				pv := reflect.New(reflect.TypeOf(tc.v))
				pv.Elem().Set(reflect.ValueOf(tc.v))
				for _, v := range []any{tc.v, pv.Interface()} {
					b, err := s.Encode(v)
					if err != nil {
						t.Fatal(err)
					}
					got, err := s.Decode(b)
					if err != nil {
						t.Fatalf("decode %x: %v", b, err)
					}
					if g := reflect.ValueOf(got).Elem().Interface(); !reflect.DeepEqual(g, want) {
						t.Errorf("round trip of %T:\n got %+v\nwant %+v", v, g, want)
					}
				}
			})
		}
	}
}

func TestAvroEncodesThroughMarshalText(t *testing.T) {
	s, err := Avro().For(reflect.TypeFor[ULIDs]())
	if err != nil {
		t.Fatal(err)
	}
	id := ulid.Make()
	b, err := s.Encode(ULIDs{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(id.String())) {
		t.Errorf("frame %q does not hold the ULID's text %s", b, id)
	}
	if want := `{"name":"ID","type":"string"}`; !bytes.Contains([]byte(s.Schema()), []byte(want)) {
		t.Errorf("schema %s does not hold %s", s.Schema(), want)
	}

	s, err = Avro().For(reflect.TypeFor[Texts]())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Encode(Texts{U: "abc"}); !bytes.Contains(b, []byte("ABC")) {
		t.Errorf("frame %q was not written by MarshalText", b)
	}
}

func TestJSONTimes(t *testing.T) {
	s, err := JSON().For(reflect.TypeFor[Times]())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.FixedZone("CET", 3600))
	v := Times{At: at, D: 1234 * time.Nanosecond, Opt: &at}
	b, err := s.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	got := p.(*Times)
	if !got.At.Equal(at) || got.D != v.D || !got.Opt.Equal(at) {
		t.Errorf("got %+v, want %+v", got, v)
	}
}

// hamba/avro decodes short []byte into a slab shared with later strings:
// an append to a decoded []byte must not change them.
func TestAvroDecodedBytesAreClipped(t *testing.T) {
	type Blob struct {
		B []byte
		S string
		M map[string][]byte
		L [][]byte
	}
	s, err := Avro().For(reflect.TypeFor[Blob]())
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Encode(Blob{B: []byte("ab"), S: "cd", M: map[string][]byte{"k": []byte("ef")}, L: [][]byte{[]byte("gh")}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	got := p.(*Blob)
	for _, x := range [][]byte{got.B, got.M["k"], got.L[0]} {
		if cap(x) != len(x) {
			t.Errorf("cap(%q) = %d, want %d", x, cap(x), len(x))
		}
	}
	_ = append(got.B, "XX"...)
	if got.S != "cd" {
		t.Errorf("S = %q after an append to B, want %q", got.S, "cd")
	}
}

func TestAvroEncodeWrongValue(t *testing.T) {
	s, err := Avro().For(reflect.TypeFor[Point]())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{nil, Ints{}, (*Point)(nil), 3} {
		if _, err := s.Encode(v); err == nil {
			t.Errorf("Encode(%#v) succeeded", v)
		}
	}
}

func TestAvroRecursionLimit(t *testing.T) {
	s, err := Avro().For(reflect.TypeFor[Node]())
	if err != nil {
		t.Fatal(err)
	}
	deep := func(n int) *Node {
		var head *Node
		for range n {
			head = &Node{Next: head}
		}
		return head
	}
	if _, err := s.Encode(deep(maxDepth - 1)); err != nil {
		t.Errorf("%d deep: %v", maxDepth-1, err)
	}
	if _, err := s.Encode(deep(maxDepth + 1)); err == nil {
		t.Errorf("%d deep: encoded a value Decode would refuse", maxDepth+1)
	}
}
