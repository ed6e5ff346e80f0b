package schema

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
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

// mapRegistry is a Registry of fixed schemas, for tests inside the package
// (registrytest imports it).
type mapRegistry map[uint32]string

func (m mapRegistry) Register(context.Context, string, string) (uint32, error) {
	return 0, errors.New("read-only")
}

func (m mapRegistry) SchemaByID(_ context.Context, id uint32) (string, error) {
	if s, ok := m[id]; ok {
		return s, nil
	}
	return "", ErrUnknownSchema
}

func (m mapRegistry) Versions(context.Context, string) ([]Version, error) { return nil, nil }

// fuzzWriter is the old schema of fuzzNew: int and float where it has
// long and double, fields it dropped, none of the field it added.
const fuzzWriter = `{"type":"record","name":"fuzzNew","fields":[
	{"name":"Amount","type":"int"},
	{"name":"Gone","type":{"type":"array","items":{"type":"map","values":"bytes"}}},
	{"name":"F","type":"float"},
	{"name":"Flags","type":{"type":"array","items":"boolean"}},
	{"name":"Items","type":{"type":"array","items":{"type":"record","name":"fuzzItem","fields":[
		{"name":"N","type":"int"},{"name":"X","type":"boolean"},{"name":"S","type":"string"}]}}},
	{"name":"Opt","type":["null","string"],"default":null}
]}`

// fuzzOld writes fuzzWriter's records.
type fuzzOld struct {
	Amount int32
	Gone   []map[string][]byte
	F      float32
	Flags  []bool
	Items  []struct {
		N int32
		X bool
		S string
	}
	Opt *string
}

func (fuzzOld) AvroSchema() string { return fuzzWriter }

// fuzzNew is the current type.
type fuzzNew struct {
	Amount int64
	F      float64
	Flags  []bool
	Items  []fuzzItem
	Opt    *string
	Added  *int64
}

type fuzzItem struct {
	N int64
	S string
}

// FuzzAvroDecodeResolved decodes records of old writer schemas, found in
// a registry, into the current type: resolution must never panic, and
// what decodes must encode and decode again.
func FuzzAvroDecodeResolved(f *testing.F) {
	reg := mapRegistry{
		7: fuzzWriter,
		8: `{"type":"record","name":"Other","fields":[{"name":"x","type":"string"}]}`,
		9: `{"type":"record","name":"fuzzNew","fields":[{"name":"Amount","type":"long"},{"name":"Next","type":["null","fuzzNew"]}]}`,
	}
	s, err := Avro(AvroNamespace(""), AvroRegistry(reg)).For(reflect.TypeFor[fuzzNew]())
	if err != nil {
		f.Fatal(err)
	}
	old, err := Avro().For(reflect.TypeFor[fuzzOld]())
	if err != nil {
		f.Fatal(err)
	}
	full := fuzzOld{Amount: -3, Gone: []map[string][]byte{{"k": {1}}}, F: 2, Flags: []bool{true}, Opt: ptr("x")}
	full.Items = append(full.Items, struct {
		N int32
		X bool
		S string
	}{N: 5, X: true, S: "s"})
	for _, v := range []fuzzOld{{}, full} {
		b, err := old.Encode(v)
		if err != nil {
			f.Fatal(err)
		}
		b[1], b[2], b[3], b[4] = 0, 0, 0, 7
		if _, err := s.Decode(b); err != nil {
			f.Fatalf("seed %+v: %v", v, err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{0, 0, 0, 0, 8, 2, 'a'})
	f.Add([]byte{0, 0, 0, 0, 9, 2, 0})
	f.Add([]byte{0, 0, 0, 0, 10})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := s.Decode(b)
		if err != nil {
			if !errors.Is(err, ErrDecode) || v != nil {
				t.Fatalf("Decode = %v, %v", v, err)
			}
			return
		}
		again, err := s.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Decode(again); err != nil {
			t.Fatal(err)
		}
	})
}

// schemaGen writes a record schema chosen by fuzz bytes.
type schemaGen struct {
	b     []byte
	i     int
	names int
	depth int
	sb    strings.Builder
}

func (g *schemaGen) next() byte {
	if g.i >= len(g.b) {
		return 0
	}
	c := g.b[g.i]
	g.i++
	return c
}

func genSchema(b []byte) string {
	g := &schemaGen{b: b}
	g.record("Root")
	return g.sb.String()
}

func (g *schemaGen) record(name string) {
	g.sb.WriteString(`{"type":"record","name":"` + name + `","fields":[`)
	n := int(g.next() % 4)
	for i := range n {
		if i > 0 {
			g.sb.WriteByte(',')
		}
		g.sb.WriteString(`{"name":"` + string(rune('a'+i)) + `","type":`)
		if c := g.next(); c%3 == 0 { // optional, default null
			g.sb.WriteString(`["null",`)
			g.typ(false)
			g.sb.WriteString(`],"default":null}`)
			continue
		}
		g.typ(true)
		g.sb.WriteByte('}')
	}
	g.sb.WriteString(`]}`)
}

func (g *schemaGen) typ(unionOK bool) {
	g.depth++
	defer func() { g.depth-- }()
	c := g.next() % 13
	if g.depth > 3 {
		c %= 6
	}
	switch c {
	case 0, 1, 2, 3, 4, 5:
		g.sb.WriteString(`"` + []string{"int", "long", "float", "double", "string", "bytes"}[c] + `"`)
	case 6:
		g.sb.WriteString(`{"type":"array","items":`)
		g.typ(true)
		g.sb.WriteString(`}`)
	case 7:
		g.sb.WriteString(`{"type":"map","values":`)
		g.typ(true)
		g.sb.WriteString(`}`)
	case 8:
		if !unionOK {
			g.sb.WriteString(`"string"`)
			return
		}
		g.sb.WriteString(`["int",`)
		g.typ(false)
		g.sb.WriteString(`]`)
	case 9:
		g.names++
		syms := []string{}
		bits := g.next()
		for i, s := range []string{"A", "B", "C"} {
			if bits&(1<<i) != 0 {
				syms = append(syms, `"`+s+`"`)
			}
		}
		if len(syms) == 0 {
			syms = []string{`"A"`}
		}
		g.sb.WriteString(`{"type":"enum","name":"E` + strconv.Itoa(g.names) + `","symbols":[` + strings.Join(syms, ",") + `]}`)
	case 10:
		g.names++
		g.sb.WriteString(`{"type":"fixed","name":"F` + strconv.Itoa(g.names) + `","size":` + strconv.Itoa(1+int(g.next()%3)) + `}`)
	case 11:
		g.names++
		g.record("R" + strconv.Itoa(g.names))
	case 12: // a reference back to the root: recursion
		if unionOK {
			g.sb.WriteString(`["null","Root"]`)
		} else {
			g.sb.WriteString(`"Root"`)
		}
	}
}

// FuzzCompatible checks Compatible on generated pairs of schemas: it never
// panics, its explanation agrees with hamba/avro's verdict, and what it
// lets through under BACKWARD can be resolved for decoding.
func FuzzCompatible(f *testing.F) {
	f.Add([]byte{2, 1, 1, 1, 4}, []byte{3, 1, 1, 1, 4, 0, 4})
	f.Add([]byte{1, 1, 6, 0}, []byte{1, 1, 6, 1})
	f.Add([]byte{1, 1, 9, 3}, []byte{1, 1, 9, 7})
	f.Add([]byte{1, 1, 11, 1, 1, 12}, []byte{1, 1, 11, 1, 1, 12})
	f.Add([]byte{1, 0, 4}, []byte{1, 0, 8, 4})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		oldText, newText := genSchema(a), genSchema(b)
		oldS, err1 := parseSchema(oldText)
		newS, err2 := parseSchema(newText)
		if err1 != nil || err2 != nil {
			return // e.g. a union of two unnamed types of one kind
		}
		for _, level := range []Compatibility{Backward, Forward, Full} {
			err := Compatible(level, newText, []Version{{Version: 1, ID: 1, Schema: oldText}})
			var ie *IncompatibleError
			if err != nil && (!errors.As(err, &ie) || ie.Rule == "" || ie.Path == "") {
				t.Fatalf("%v: %s then %s: %v", level, oldText, newText, err)
			}
		}
		for _, pair := range [][2]avro.Schema{{newS, oldS}, {oldS, newS}} {
			r, w := pair[0], pair[1]
			verdict := avro.NewSchemaCompatibility().Compatible(r, w)
			e := explainer{newIsReader: true, seen: map[[2]string]bool{}}
			if _, rule := e.explain(r, w, "Root"); (verdict == nil) != (rule == "") {
				t.Fatalf("reader %s, writer %s: hamba says %v, the explanation %q", r, w, verdict, rule)
			}
		}
		if Compatible(Backward, newText, []Version{{Version: 1, ID: 1, Schema: oldText}}) == nil && !recursive(newS) && !recursive(oldS) {
			if _, err := avro.NewSchemaCompatibility().Resolve(newS, oldS); err != nil {
				t.Fatalf("compatible but not resolvable: %s then %s: %v", oldText, newText, err)
			}
		}
	})
}
