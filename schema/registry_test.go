package schema_test

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/registrytest"
)

const topic = "bank.account.events"

// Three versions of one event, as three deployments of the code would
// have it: each function's local type is named Deposited, so all three are
// the record bank.Deposited.

func depositedV1() reflect.Type {
	type Deposited struct {
		Amount int32  `avro:"amount"` // an int, promoted to a long in v2
		Teller string `avro:"teller"` // removed in v2
	}
	return reflect.TypeFor[Deposited]()
}

type memo struct{ Text string }

func depositedV2() reflect.Type {
	type Deposited struct {
		Amount int64   `avro:"amount"`
		Memo   *string `avro:"memo"` // added, default null
		Tags   []memo  `avro:"tags"` // added without a default: incompatible
	}
	return reflect.TypeFor[Deposited]()
}

func depositedV2Compatible() reflect.Type {
	type Deposited struct {
		Amount int64   `avro:"amount"`
		Memo   *string `avro:"memo"`
	}
	return reflect.TypeFor[Deposited]()
}

func serde(t *testing.T, reg schema.Registry, typ reflect.Type, opts ...schema.RegistryOpt) schema.Serde {
	t.Helper()
	s, err := schema.Avro(schema.AvroNamespace("bank"), schema.AvroRegistry(reg, opts...)).For(typ)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.NewMemory()
	v1 := serde(t, reg, depositedV1())
	fp := v1.ID()
	if want, _ := schema.FingerprintID(v1.Schema()); fp != want {
		t.Fatalf("unregistered ID %d, want the fingerprint %d", fp, want)
	}
	id1, err := schema.Register(ctx, v1, topic)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != 1 || v1.ID() != 1 {
		t.Fatalf("registered ID %d, Serde ID %d; want the registry's 1", id1, v1.ID())
	}
	b, err := v1.Encode(reflect.New(depositedV1()).Elem().Interface())
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint32(b[1:5]); got != 1 {
		t.Errorf("frame carries ID %d, want 1", got)
	}
	vs, _ := reg.Versions(ctx, "bank.account.events-bank.Deposited")
	if len(vs) != 1 || vs[0].Schema != v1.Schema() {
		t.Errorf("versions under the topic-record subject: %+v", vs)
	}
	// Again: same ID, no new version.
	if id, err := schema.Register(ctx, v1, topic); err != nil || id != 1 {
		t.Errorf("registering again: %d, %v", id, err)
	}

	// New code with a field without a default: refused, nothing registered.
	bad := serde(t, reg, depositedV2())
	for name, err := range map[string]error{
		"Check":    schema.Check(ctx, bad, topic),
		"Register": func() error { _, err := schema.Register(ctx, bad, topic); return err }(),
	} {
		var ie *schema.IncompatibleError
		if !errors.As(err, &ie) {
			t.Fatalf("%s: err = %v, want an *IncompatibleError", name, err)
		}
		want := `schema: schema_test.Deposited breaks BACKWARD_TRANSITIVE compatibility with version 1 of subject "bank.account.events-bank.Deposited": bank.Deposited.tags: field added without a default`
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: err =\n %s\nwant\n %s", name, err, want)
		}
	}
	if vs, _ := reg.Versions(ctx, "bank.account.events-bank.Deposited"); len(vs) != 1 {
		t.Errorf("an incompatible schema was registered: %+v", vs)
	}
	if bad.ID() == 1 {
		t.Error("the refused Serde took a registered ID")
	}
	// Under NONE it goes through.
	if _, err := schema.Register(ctx, serde(t, reg, depositedV2(), schema.CompatibilityLevel(schema.None)), topic); err != nil {
		t.Errorf("NONE: %v", err)
	}

	// A compatible change: Check registers nothing, Register does.
	v2 := serde(t, reg, depositedV2Compatible())
	if err := schema.Check(ctx, v2, "other.topic"); err != nil {
		t.Fatal(err)
	}
	if vs, _ := reg.Versions(ctx, "other.topic-bank.Deposited"); len(vs) != 0 {
		t.Errorf("Check registered %+v", vs)
	}
	if _, err := schema.Register(ctx, v2, topic); err != nil {
		t.Fatal(err)
	}

	// Codecs without a registry register nothing.
	for _, c := range []schema.Codec{schema.JSON(), schema.Avro()} {
		s, err := c.For(depositedV1())
		if err != nil {
			t.Fatal(err)
		}
		if id, err := schema.Register(ctx, s, topic); err != nil || id != s.ID() {
			t.Errorf("%s: Register = %d, %v", c.Name(), id, err)
		}
		if err := schema.Check(ctx, s, topic); err != nil {
			t.Errorf("%s: Check = %v", c.Name(), err)
		}
	}
}

type failing struct{ schema.Registry }

var errDown = errors.New("registry down")

func (failing) SchemaByID(context.Context, uint32) (string, error) { return "", errDown }
func (failing) Versions(context.Context, string) ([]schema.Version, error) {
	return nil, errDown
}

func TestRegistryDown(t *testing.T) {
	ctx := context.Background()
	s := serde(t, failing{}, depositedV1())
	if _, err := schema.Register(ctx, s, topic); !errors.Is(err, errDown) {
		t.Errorf("Register: err = %v", err)
	}
	// A record of an ID the Serde does not know, while the registry is
	// down: an infrastructure failure, not bad input.
	b := []byte{0, 0, 0, 0, 9, 0}
	if _, err := s.Decode(b); !errors.Is(err, errDown) || !errors.Is(err, schema.ErrRegistryUnavailable) || errors.Is(err, schema.ErrDecode) {
		t.Errorf("Decode: err = %v, want the registry's error, ErrRegistryUnavailable and no ErrDecode", err)
	}
	if err := schema.Prepare(ctx, s, b); !errors.Is(err, schema.ErrRegistryUnavailable) {
		t.Errorf("Prepare: err = %v, want ErrRegistryUnavailable", err)
	}
	// Not the registry's business: bad input, and the Serde's own schema.
	own, err := s.Encode(reflect.New(depositedV1()).Elem().Interface())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range [][]byte{nil, {1, 2}, own} {
		if err := schema.Prepare(ctx, s, v); err != nil {
			t.Errorf("Prepare(%x) = %v, want nil", v, err)
		}
	}
}

// Old events: written by v1, read by the code of v2.
func TestDecodeOldEvents(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.NewMemory()
	v1 := serde(t, reg, depositedV1())
	if _, err := schema.Register(ctx, v1, topic); err != nil {
		t.Fatal(err)
	}
	old := reflect.New(depositedV1()).Elem()
	old.Field(0).SetInt(-70000)
	old.Field(1).SetString("ann")
	b, err := v1.Encode(old.Interface())
	if err != nil {
		t.Fatal(err)
	}

	v2 := serde(t, reg, depositedV2Compatible())
	if _, err := schema.Register(ctx, v2, topic); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := v2.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		v := reflect.ValueOf(got).Elem()
		if v.Field(0).Int() != -70000 || !v.Field(1).IsNil() {
			t.Fatalf("decoded %+v, want amount -70000 and no memo", v)
		}
	}
	if n := reg.Lookups(); n != 0 {
		t.Errorf("%d lookups of the writer schema, want none (Register read the versions)", n)
	}
	// Its own records still decode, with no lookup.
	m := "hi"
	cur := reflect.New(depositedV2Compatible()).Elem()
	cur.Field(0).SetInt(1 << 40)
	cur.Field(1).Set(reflect.ValueOf(&m))
	b2, err := v2.Encode(cur.Interface())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v2.Decode(b2); err != nil || !reflect.DeepEqual(reflect.ValueOf(got).Elem().Interface(), cur.Interface()) {
		t.Errorf("got %v, %v", got, err)
	}

	// New events cannot be read by old code here: v1's int cannot hold a
	// long. A clear error, not bad data.
	got, err := serde(t, reg, depositedV1()).Decode(b2)
	want := "schema: cannot decode schema_test.Deposited: writer schema 2 (bank.Deposited) cannot be read as schema_test.Deposited: bank.Deposited.amount: type changed from long to int"
	if !errors.Is(err, schema.ErrDecode) || !errors.Is(err, schema.ErrIncompatible) || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("v1 reading v2: %v, %v; want %s", got, err, want)
	}
	if n := reg.Lookups(); n != 1 {
		t.Errorf("%d lookups, want 1", n)
	}
	// Not registered, v2's code looks v1's schema up, once.
	fresh := serde(t, reg, depositedV2Compatible())
	for range 3 {
		if _, err := fresh.Decode(b); err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.Lookups(); n != 2 {
		t.Errorf("%d lookups, want 2 (cached per ID)", n)
	}
}

func TestDecodeBadInputWithRegistry(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.NewMemory()
	v1 := serde(t, reg, depositedV1())
	if _, err := schema.Register(ctx, v1, topic); err != nil {
		t.Fatal(err)
	}
	old := reflect.New(depositedV1()).Elem()
	old.Field(1).SetString("a long teller name")
	good, err := v1.Encode(old.Interface())
	if err != nil {
		t.Fatal(err)
	}
	v2 := serde(t, reg, depositedV2Compatible())
	if _, err := schema.Register(ctx, v2, topic); err != nil {
		t.Fatal(err)
	}
	unknown := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(unknown[1:5], 77)

	tests := []struct {
		name string
		b    []byte
		is   error
		want string
	}{
		{"garbage", []byte("garbage!"), schema.ErrDecode, "magic byte is 0x67"},
		{"unknown ID", unknown, schema.ErrUnknownSchema, "unknown schema ID 77 (this type's schema has ID 2)"},
		{"truncated", good[:len(good)-3], schema.ErrDecode, "truncated body"},
		{"trailing", append(append([]byte(nil), good...), 1), schema.ErrDecode, "1 bytes after the end of the value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := v2.Decode(tc.b)
			if v != nil || !errors.Is(err, schema.ErrDecode) || !errors.Is(err, tc.is) {
				t.Fatalf("Decode = %v, %v; want ErrDecode and %v", v, err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "schema: cannot decode schema_test.Deposited: ") {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
	// Every prefix of an old record is an error, never a panic.
	for n := range len(good) {
		if _, err := v2.Decode(good[:n]); !errors.Is(err, schema.ErrDecode) {
			t.Errorf("prefix of %d bytes: err = %v", n, err)
		}
	}
}

// blocking is a registry that answers no lookup.
type blocking struct{ schema.Registry }

func (blocking) SchemaByID(ctx context.Context, _ uint32) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

func TestDecodeContext(t *testing.T) {
	frame := []byte{0, 0, 0, 0, 9, 0}
	tests := []struct {
		name    string
		opts    []schema.RegistryOpt
		timeout time.Duration // of the caller's ctx
	}{
		{"caller's ctx", nil, 20 * time.Millisecond},
		{"LookupTimeout", []schema.RegistryOpt{schema.LookupTimeout(20 * time.Millisecond)}, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := serde(t, blocking{}, depositedV1(), tc.opts...)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			start := time.Now()
			_, err := schema.DecodeContext(ctx, s, frame)
			if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, schema.ErrDecode) {
				t.Errorf("err = %v, want the deadline and no ErrDecode", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	// Other Serdes decode as they do.
	js, _ := schema.JSON().For(depositedV1())
	if _, err := schema.DecodeContext(context.Background(), js, []byte(`{"Amount":1}`)); err != nil {
		t.Error(err)
	}
}

func TestDeferredRegistry(t *testing.T) {
	ctx := context.Background()
	var late schema.DeferredRegistry
	s := serde(t, &late, depositedV1()) // built before the registry exists
	if _, err := schema.Register(ctx, s, topic); !errors.Is(err, schema.ErrNoRegistry) {
		t.Errorf("Register before Set: err = %v", err)
	}
	if _, err := s.Decode([]byte{0, 0, 0, 0, 9, 0}); !errors.Is(err, schema.ErrNoRegistry) || errors.Is(err, schema.ErrDecode) {
		t.Errorf("Decode before Set: err = %v, want ErrNoRegistry and no ErrDecode", err)
	}
	reg := registrytest.NewMemory()
	late.Set(reg)
	if id, err := schema.Register(ctx, s, topic); err != nil || id != 1 {
		t.Errorf("Register after Set: %d, %v", id, err)
	}
	if vs, err := late.Versions(ctx, "bank.account.events-bank.Deposited"); err != nil || len(vs) != 1 {
		t.Errorf("versions: %+v, %v", vs, err)
	}
	if text, err := late.SchemaByID(ctx, 1); err != nil || text != s.Schema() {
		t.Errorf("schema 1: %q, %v", text, err)
	}
}

func TestWithRegistry(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.NewMemory()
	user := schema.Avro(schema.AvroNamespace("bank"))
	c := schema.WithRegistry(user, reg, schema.Subjects(func(topic, name string) string { return "s-" + name }))
	s, err := c.For(depositedV1())
	if err != nil {
		t.Fatal(err)
	}
	if id, err := schema.Register(ctx, s, topic); err != nil || id != 1 {
		t.Fatalf("Register: %d, %v", id, err)
	}
	// The user's options are kept (namespace), the registry's added.
	if vs, _ := reg.Versions(ctx, "s-bank.Deposited"); len(vs) != 1 {
		t.Errorf("versions: %+v", vs)
	}
	// The user's codec is unchanged.
	us, _ := user.For(depositedV1())
	if id, _ := schema.Register(ctx, us, topic); id == 1 || us.ID() != id {
		t.Errorf("the codec given was changed: ID %d", id)
	}
	if j := schema.JSON(); schema.WithRegistry(j, reg) != j {
		t.Error("JSON changed")
	}
}

// TestCheckCoverage: every version registered under an old type's record
// name must be read by one of that name's readers (the old types and the
// current type); names no old type has are not looked at.
func TestCheckCoverage(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.NewMemory()
	v1, v2 := serde(t, reg, depositedV1()), serde(t, reg, depositedV2Compatible())
	for _, s := range []schema.Serde{v1, v2} {
		if _, err := schema.Register(ctx, s, topic); err != nil {
			t.Fatal(err)
		}
	}
	if err := schema.CheckCoverage(ctx, topic, []schema.Serde{v2}, []schema.Serde{v1}); err != nil {
		t.Errorf("v1 kept beside v2, which reads both: %v", err)
	}
	// v1 alone cannot read v2's long amount.
	err := schema.CheckCoverage(ctx, topic, nil, []schema.Serde{v1})
	if !errors.Is(err, schema.ErrIncompatible) || !strings.Contains(err.Error(), `version 2 of subject "bank.account.events-bank.Deposited" can be read by none of schema_test.Deposited: bank.Deposited.amount`) {
		t.Errorf("v1 alone: %v", err)
	}
	if err := schema.CheckCoverage(ctx, topic, []schema.Serde{v1}, nil); err != nil {
		t.Errorf("no old type: %v", err)
	}
	if err := schema.CheckCoverage(ctx, topic, nil, []schema.Serde{serde(t, failing{}, depositedV1())}); !errors.Is(err, errDown) {
		t.Errorf("registry down: %v", err)
	}
}
