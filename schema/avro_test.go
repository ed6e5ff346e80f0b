package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/oklog/ulid/v2"
)

type (
	BadUint     struct{ N uint }
	BadByte     struct{ B uint8 }
	BadChan     struct{ Bar chan int }
	BadDeepChan struct{ Bar []map[string]chan int }
	BadFunc     struct{ F func() }
	BadComplex  struct{ C complex128 }
	BadIface    struct{ I any }
	BadMapKey   struct{ M map[int]string }
	BadArray    struct{ A [3]int }
	BadPtrPtr   struct{ P **int }
	BadNested   struct{ Inner BadInner }
	BadInner    struct{ C []chan bool }
	Amount      int64
	BadEmbedInt struct{ Amount }
	BadEmbedPtr struct{ *Point }
	BadBigInt   struct{ N *big.Int }
	BadSameName struct {
		A int64 `avro:"x"`
		B int64 `avro:"x"`
	}
	BadTagName struct {
		A int64 `avro:"not-valid"`
	}
	BadEmptyTag struct {
		A int64 `avro:",omitempty"`
	}
	BadGoName struct{ Größe int64 }
	BadHidden struct {
		Secret `avro:"-"`
		Public
	}
	Secret      struct{ Note string }
	Public      struct{ Note string }
	OnlyMarshal string
)

func (OnlyMarshal) MarshalText() ([]byte, error) { return nil, nil }

type BadOnlyMarshal struct{ O OnlyMarshal }

func TestAvroUnsupported(t *testing.T) {
	tests := []struct {
		t    reflect.Type
		want string
	}{
		{reflect.TypeFor[BadUint](), "schema: schema.BadUint.N: uint cannot be encoded"},
		{reflect.TypeFor[BadByte](), "schema: schema.BadByte.B: uint8 cannot be encoded"},
		{reflect.TypeFor[BadChan](), "schema: schema.BadChan.Bar: chan int cannot be encoded"},
		{reflect.TypeFor[BadDeepChan](), "schema: schema.BadDeepChan.Bar: chan int cannot be encoded"},
		{reflect.TypeFor[BadFunc](), "schema.BadFunc.F: func() cannot be encoded"},
		{reflect.TypeFor[BadComplex](), "schema.BadComplex.C: complex128 cannot be encoded"},
		{reflect.TypeFor[BadIface](), "schema.BadIface.I: interface {} cannot be encoded"},
		{reflect.TypeFor[BadMapKey](), "schema.BadMapKey.M: map[int]string cannot be encoded: map keys must be strings"},
		{reflect.TypeFor[BadArray](), "schema.BadArray.A: [3]int cannot be encoded"},
		{reflect.TypeFor[BadPtrPtr](), "schema.BadPtrPtr.P: **int cannot be encoded"},
		{reflect.TypeFor[BadNested](), "schema.BadNested.Inner.C: chan bool cannot be encoded"},
		{reflect.TypeFor[BadEmbedInt](), "schema.BadEmbedInt.Amount: embedded schema.Amount cannot be encoded"},
		{reflect.TypeFor[BadEmbedPtr](), "schema.BadEmbedPtr.Point: embedded *schema.Point cannot be encoded when nil"},
		{reflect.TypeFor[BadBigInt](), "schema.BadBigInt.N: big.Int cannot be encoded: its MarshalText method has a pointer receiver"},
		{reflect.TypeFor[BadSameName](), `schema.BadSameName.B: Avro name "x" is also the name of A`},
		{reflect.TypeFor[BadTagName](), `schema.BadTagName.A: "not-valid" is not a valid Avro name`},
		{reflect.TypeFor[BadEmptyTag](), `schema.BadEmptyTag.A: "" is not a valid Avro name`},
		{reflect.TypeFor[BadGoName](), `schema.BadGoName.Größe: "Größe" is not a valid Avro name`},
		{reflect.TypeFor[BadHidden](), `schema.BadHidden.Public.Note: Avro name "Note" is taken by Secret.Note, which is not encoded`},
		{reflect.TypeFor[BadOnlyMarshal](), "schema.BadOnlyMarshal.O: schema.OnlyMarshal cannot be encoded: it implements encoding.TextMarshaler but not encoding.TextUnmarshaler"},
		{reflect.TypeFor[*Point](), "schema: *schema.Point: not a struct type"},
		{reflect.TypeFor[int](), "schema: int: not a struct type"},
	}
	for _, tc := range tests {
		t.Run(tc.t.String(), func(t *testing.T) {
			_, err := Avro().For(tc.t)
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestAvroNameClash(t *testing.T) {
	type Inner struct{ A string }
	type Outer struct {
		X Inner
		Y struct{ Inner Inner }
	}
	// Point from this package and a local Point in one namespace.
	type Point struct{ Z string }
	type Both struct {
		A Point
		B Nested
	}
	_, err := Avro().For(reflect.TypeFor[Both]())
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "both have the Avro name") {
		t.Errorf("err = %v, want a name clash", err)
	}
	if _, err := Avro().For(reflect.TypeFor[Outer]()); err != nil {
		t.Errorf("a type used twice: %v", err)
	}
}

type DepositMoney struct {
	aggregate.Command
	Amount int64 `avro:"amount" json:"amount"`
}

type Quote struct{ Price int64 }

type RequestQuote struct {
	aggregate.CommandOf[Quote]
	Symbol string
}

func TestAvroCommandEnvelopeIsNotEncoded(t *testing.T) {
	for _, codec := range []Codec{Avro(AvroNamespace("bank")), JSON()} {
		t.Run(codec.Name(), func(t *testing.T) {
			s, err := codec.For(reflect.TypeFor[DepositMoney]())
			if err != nil {
				t.Fatal(err)
			}
			if codec.Name() == "avro" {
				if want := `{"name":"bank.DepositMoney","type":"record","fields":[{"name":"amount","type":"long"}]}`; s.Schema() != want {
					t.Errorf("schema %s, want %s", s.Schema(), want)
				}
			}
			cmd := DepositMoney{Command: aggregate.To(ulid.Make()).Expect(3), Amount: 100}
			cmd.CorrelationID = "corr"
			b, err := s.Encode(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "corr") {
				t.Errorf("payload %q holds the envelope", b)
			}
			got, err := s.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if want := (DepositMoney{Amount: 100}); !reflect.DeepEqual(*got.(*DepositMoney), want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
			// The runtime restores the envelope from the headers.
			if !aggregate.SetEnvelope(got, cmd.Command) {
				t.Error("decoded value is not a command")
			}
		})
	}

	s, err := Avro(AvroNamespace("bank")).For(reflect.TypeFor[RequestQuote]())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"bank.RequestQuote","type":"record","fields":[{"name":"Symbol","type":"string"}]}`; s.Schema() != want {
		t.Errorf("schema %s, want %s", s.Schema(), want)
	}
}

type Deposited struct {
	Amount  int64   `avro:"amount"`
	Account string  `avro:"account"`
	Note    *string `avro:"note"`
}

func TestAvroSchemaText(t *testing.T) {
	s, err := Avro(AvroNamespace("bank.events")).For(reflect.TypeFor[Deposited]())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"bank.events.Deposited","type":"record","fields":[` +
		`{"name":"amount","type":"long"},{"name":"account","type":"string"},` +
		`{"name":"note","type":["null","string"],"default":null}]}`
	if s.Schema() != want {
		t.Errorf("schema\n %s\nwant\n %s", s.Schema(), want)
	}

	s, err = Avro().For(reflect.TypeFor[Deposited]())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"github.com.interlock_go.interlock.schema.Deposited",`; !strings.HasPrefix(s.Schema(), want) {
		t.Errorf("schema %s, want the namespace of the package path: %s", s.Schema(), want)
	}
}

func TestAvroNames(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Deposited", "Deposited"},
		{"Pair[int,string]", "Pair_int_string"},
		{"CommandOf[github.com/interlock-go/interlock/aggregate.None]", "CommandOf_aggregate_None"},
		{"Box[[]*example.com/x/y.Z,map[string]int]", "Box_y_Z_map_string_int"},
		{"9lives", "_9lives"},
	}
	for _, tc := range tests {
		if got := avroName(tc.in); got != tc.want {
			t.Errorf("avroName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	namespaces := []struct{ in, want string }{
		{"github.com/acme/bank-core/v2", "github.com.acme.bank_core.v2"},
		{"main", "main"},
		{"example.com/3d/x", "example.com._3d.x"},
	}
	for _, tc := range namespaces {
		if got := namespaceOf(tc.in); got != tc.want || !validNamespace(got) {
			t.Errorf("namespaceOf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, err := Avro(AvroNamespace("no-dashes")).For(reflect.TypeFor[Point]()); !errors.Is(err, ErrUnsupported) {
		t.Errorf("invalid namespace: err = %v", err)
	}
}

func TestAvroIDs(t *testing.T) {
	id := func(c Codec, t reflect.Type) uint32 {
		s, err := c.For(t)
		if err != nil {
			panic(err)
		}
		return s.ID()
	}
	a, b := Avro(), Avro()
	ids := map[uint32]reflect.Type{}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[Deposited](), reflect.TypeFor[Point](), reflect.TypeFor[Nested](),
		reflect.TypeFor[Node](), reflect.TypeFor[Ints](), reflect.TypeFor[Floats](),
	} {
		ia, ib := id(a, typ), id(b, typ)
		if ia != ib {
			t.Errorf("%v: IDs %d and %d in two codecs", typ, ia, ib)
		}
		if ia == 0 || ia > 1<<31-1 {
			t.Errorf("%v: ID %d is not a positive int32", typ, ia)
		}
		if prev, dup := ids[ia]; dup {
			t.Errorf("%v and %v share ID %d", prev, typ, ia)
		}
		ids[ia] = typ
	}
	// The schema, not the type, makes the ID: another namespace, another ID.
	if id(Avro(AvroNamespace("x")), reflect.TypeFor[Point]()) == id(a, reflect.TypeFor[Point]()) {
		t.Error("different schemas, same ID")
	}

	s, _ := a.For(reflect.TypeFor[Point]())
	b2, err := s.Encode(Point{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if b2[0] != 0 || binary.BigEndian.Uint32(b2[1:5]) != s.ID() {
		t.Errorf("frame %x does not start with 0x00 and ID %d", b2, s.ID())
	}
}

func TestAvroIDsOption(t *testing.T) {
	var gotName, gotSchema string
	c := Avro(AvroNamespace("geo"), AvroIDs(func(fullName, schema string) (uint32, error) {
		gotName, gotSchema = fullName, schema
		return 42, nil
	}))
	s, err := c.For(reflect.TypeFor[Point]())
	if err != nil {
		t.Fatal(err)
	}
	if s.ID() != 42 || gotName != "geo.Point" || gotSchema != s.Schema() {
		t.Errorf("ID %d, called with %q %q", s.ID(), gotName, gotSchema)
	}
	b, _ := s.Encode(Point{3, 4})
	if binary.BigEndian.Uint32(b[1:5]) != 42 {
		t.Errorf("frame %x does not carry ID 42", b)
	}
	if _, err := s.Decode(b); err != nil {
		t.Error(err)
	}

	boom := errors.New("registry down")
	c = Avro(AvroIDs(func(string, string) (uint32, error) { return 0, boom }))
	if _, err := c.For(reflect.TypeFor[Point]()); !errors.Is(err, boom) {
		t.Errorf("err = %v, want %v", err, boom)
	}

	c = Avro(AvroIDs(func(string, string) (uint32, error) { return 7, nil }))
	if _, err := c.For(reflect.TypeFor[Point]()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.For(reflect.TypeFor[Ints]()); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("two schemas with one ID: err = %v", err)
	}
}

// Explicit schemas.

type Renamed struct {
	Amount int64
	Memo   string
}

func (Renamed) AvroSchema() string {
	return `{"type": "record", "name": "Renamed", "namespace": "legacy", "doc": "kept as it was",
		"fields": [{"name": "Amount", "type": "long"}, {"name": "Memo", "type": "string", "default": ""}]}`
}

type BadSchema struct{ A int64 }

func (*BadSchema) AvroSchema() string { return `{"type": "record", "name": "B", "fields": [` }

type MisfitSchema struct{ A int64 }

func (MisfitSchema) AvroSchema() string {
	return `{"type":"record","name":"M","fields":[{"name":"Missing","type":"string"}]}`
}

type Level struct{ L string }

func (Level) AvroSchema() string {
	return `{"type":"record","name":"Level","fields":[{"name":"L","type":{"type":"enum","name":"LevelEnum","symbols":["LOW","HIGH"]}}]}`
}

type MistypedSchema struct{ A int64 }

func (MistypedSchema) AvroSchema() string {
	return `{"type":"record","name":"M","fields":[{"name":"A","type":"string"}]}`
}

func TestAvroSchemaMethod(t *testing.T) {
	s, err := Avro().For(reflect.TypeFor[Renamed]())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"legacy.Renamed","doc":"kept as it was","type":"record","fields":[{"name":"Amount","type":"long"},{"name":"Memo","type":"string","default":""}]}`
	if s.Schema() != want {
		t.Errorf("schema\n %s\nwant\n %s", s.Schema(), want)
	}
	b, err := s.Encode(Renamed{5, "m"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Decode(b)
	if err != nil || *got.(*Renamed) != (Renamed{5, "m"}) {
		t.Errorf("got %v, %v", got, err)
	}

	// The zero value is not a symbol of the enum: the type fits anyway.
	s, err = Avro().For(reflect.TypeFor[Level]())
	if err != nil {
		t.Fatal(err)
	}
	if b, err = s.Encode(Level{"HIGH"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Decode(b); err != nil || got.(*Level).L != "HIGH" {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := s.Encode(Level{"MEDIUM"}); err == nil {
		t.Error("encoded a value that is not a symbol")
	}

	for typ, want := range map[reflect.Type]string{
		reflect.TypeFor[BadSchema]():      "schema: schema.BadSchema: AvroSchema(): ",
		reflect.TypeFor[MisfitSchema]():   "schema: schema.MisfitSchema: schema does not fit the type",
		reflect.TypeFor[MistypedSchema](): "schema: schema.MistypedSchema: schema does not fit the type",
	} {
		_, err := Avro().For(typ)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err = %v, want %q", typ, err, want)
		}
	}
}

func TestAvroDecodeErrors(t *testing.T) {
	s, err := Avro().For(reflect.TypeFor[Deposited]())
	if err != nil {
		t.Fatal(err)
	}
	good, err := s.Encode(Deposited{Amount: 1, Account: "acc", Note: ptr("n")})
	if err != nil {
		t.Fatal(err)
	}
	frame := func(body ...byte) []byte {
		return append(append([]byte(nil), good[:5]...), body...)
	}
	wrongID := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(wrongID[1:], s.ID()+1)

	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "frame of 0 bytes is shorter than its 5-byte header"},
		{"short", good[:4], "frame of 4 bytes is shorter"},
		{"bad magic", append([]byte{1}, good[1:]...), "magic byte is 0x01, want 0x00"},
		{"json", []byte(`{"amount":1}`), "magic byte is 0x7b"},
		{"unknown ID", wrongID, fmt.Sprintf("unknown schema ID %d (this type's schema has ID %d)", s.ID()+1, s.ID())},
		{"truncated", good[:len(good)-1], "truncated body"},
		{"header only", good[:5], "truncated body"},
		{"trailing", append(append([]byte(nil), good...), 0), "1 bytes after the end of the value"},
		{"union branch", frame(2, 0, 5, 0), "union branch -3 out of range"},
		{"negative length", frame(2, 1), "negative length -1"},
		{"huge length", frame(2, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), "truncated body"},
		{"bad varint", frame(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "malformed long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := s.Decode(tc.b)
			if v != nil || !errors.Is(err, ErrDecode) {
				t.Fatalf("Decode = %v, %v; want an ErrDecode", v, err)
			}
			if want := "schema: cannot decode schema.Deposited: " + tc.want; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err = %q, want %q", err, want)
			}
		})
	}

	// Every prefix of a valid frame is an error, never a panic.
	for n := range len(good) {
		if _, err := s.Decode(good[:n]); !errors.Is(err, ErrDecode) {
			t.Errorf("prefix of %d bytes: err = %v", n, err)
		}
	}
}

func TestAvroDecodeLimits(t *testing.T) {
	type Many struct{ Items []Point }
	s, err := Avro().For(reflect.TypeFor[Many]())
	if err != nil {
		t.Fatal(err)
	}
	// A count of 2^40 items in a 10-byte frame must not allocate them.
	b := binary.AppendVarint(append([]byte{0}, binary.BigEndian.AppendUint32(nil, s.ID())...), 1<<40)
	if _, err := s.Decode(b); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "truncated body") {
		t.Errorf("err = %v", err)
	}

	type Empty struct{}
	type Nothings struct{ E []Empty }
	s, err = Avro().For(reflect.TypeFor[Nothings]())
	if err != nil {
		t.Fatal(err)
	}
	b = binary.AppendVarint(append([]byte{0}, binary.BigEndian.AppendUint32(nil, s.ID())...), 1<<40)
	b = append(b, 0)
	if _, err := s.Decode(b); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "items of no size") {
		t.Errorf("err = %v", err)
	}
	if _, err := s.Encode(Nothings{E: make([]Empty, maxEmptyItems+1)}); err == nil {
		t.Error("encoded a value Decode would refuse")
	}
	v, err := s.Encode(Nothings{E: make([]Empty, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Decode(v); err != nil || len(got.(*Nothings).E) != 3 {
		t.Errorf("got %v, %v", got, err)
	}
}

func TestAvroConcurrent(t *testing.T) {
	c := Avro()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			s, err := c.For(reflect.TypeFor[Nested]())
			if err != nil {
				t.Error(err)
				return
			}
			for i := range 200 {
				v := Nested{Name: fmt.Sprint(g, i), From: Point{int32(g), int32(i)}}
				v.Inner.B = &Point{1, 2}
				b, err := s.Encode(v)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := s.Decode(b)
				if err != nil || !reflect.DeepEqual(*got.(*Nested), v) {
					t.Errorf("got %+v, %v; want %+v", got, err, v)
					return
				}
			}
		})
	}
	wg.Wait()
}
