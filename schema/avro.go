package schema

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/modern-go/reflect2"
)

// magic is the first byte of the Confluent wire format.
const magic = 0

// headerLen is the length of the frame header: magic byte, schema ID.
const headerLen = 5

// AvroOpt configures the Avro codec.
type AvroOpt interface{ apply(*avroConfig) }

type avroConfig struct {
	namespace *string
	ids       func(fullName, schema string) (uint32, error)
	registry  *registryConfig
}

type avroOptFunc func(*avroConfig)

func (f avroOptFunc) apply(c *avroConfig) { f(c) }

// AvroNamespace sets the namespace of every record and fixed type derived
// from a Go type ("" for none). By default each type's namespace is derived
// from its Go package path: the path split at every "/" and ".", each part
// made a valid Avro name ("github.com/acme/bank-core" becomes
// "github.com.acme.bank_core"). Schemas given by an AvroSchema method are
// used as they are.
func AvroNamespace(ns string) AvroOpt {
	return avroOptFunc(func(c *avroConfig) { c.namespace = &ns })
}

// AvroIDs makes f supply the schema ID of each type instead of the default,
// a fingerprint of the schema. f is called once per type by Codec.For with
// the full name of the record and the writer schema (Serde.Schema); a
// schema registry client plugs in here. Its error is returned by For.
func AvroIDs(f func(fullName, schema string) (uint32, error)) AvroOpt {
	return avroOptFunc(func(c *avroConfig) { c.ids = f })
}

// AvroRegistry makes reg the home of the codec's schemas. [Register],
// called once per type and topic before the first record is written,
// checks the type's schema against its subject (see [CompatibilityLevel],
// [Subjects]), registers it and makes the Serde write the registry's ID;
// [Check] does the same without registering. Until then a Serde writes
// the default ID (a fingerprint of the schema, as with no registry).
//
// Decode reads records written with any schema reg knows: it looks the
// writer schema up by the ID in the frame, once per ID and type, and
// resolves it against the Go type (Avro schema resolution: fields added
// with defaults, removed fields, promotions such as int to long).
func AvroRegistry(reg Registry, opts ...RegistryOpt) AvroOpt {
	rc := &registryConfig{reg: reg, subject: TopicRecordName, timeout: 10 * time.Second}
	for _, o := range opts {
		o.applyRegistry(rc)
	}
	return avroOptFunc(func(c *avroConfig) { c.registry = rc })
}

// Avro returns the Avro codec, the default: payloads are Avro binary in the
// Confluent wire format (magic byte 0, 4-byte big-endian schema ID, body),
// with schemas derived from the Go types (see the package documentation)
// unless a type has an AvroSchema() string method. Values are encoded and
// decoded by github.com/hamba/avro/v2, which stays behind this package.
func Avro(opts ...AvroOpt) Codec {
	var cfg avroConfig
	for _, o := range opts {
		o.apply(&cfg)
	}
	return newAvro(cfg)
}

// WithRegistry returns a new codec like c whose schemas live in reg, as
// if c had been made with AvroRegistry(reg, opts...): for an application
// that takes its codec and its registry as separate options. A codec with
// no schemas (JSON) is returned as it is.
func WithRegistry(c Codec, reg Registry, opts ...RegistryOpt) Codec {
	ac, ok := c.(*avroCodec)
	if !ok {
		return c
	}
	cfg := ac.cfg
	AvroRegistry(reg, opts...).apply(&cfg)
	return newAvro(cfg)
}

func newAvro(cfg avroConfig) *avroCodec {
	c := &avroCodec{
		cfg:    cfg,
		serdes: map[reflect.Type]*avroSerde{},
		ids:    map[uint32]string{},
	}
	c.api = avro.Config{
		TagKey: "avro",
		// Java's default encoding: block counts without byte sizes.
		DisableBlockSizeHeader: true,
		// Lengths are bounded by the frame: validate checks them against
		// the body before hamba/avro allocates anything.
		MaxByteSliceSize: -1,
	}.Freeze()
	c.writers.New = func() any { return avro.NewWriter(nil, 512, avro.WithWriterConfig(c.api)) }
	c.readers.New = func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(c.api)) }
	return c
}

type avroCodec struct {
	cfg     avroConfig
	api     avro.API
	writers sync.Pool // *avro.Writer
	readers sync.Pool // *avro.Reader

	mu     sync.Mutex
	serdes map[reflect.Type]*avroSerde
	ids    map[uint32]string // canonical schema of each ID handed out
}

// Name returns "avro".
func (c *avroCodec) Name() string { return "avro" }

// avroSchemer is implemented by types that bring their own Avro schema.
type avroSchemer interface{ AvroSchema() string }

// For returns the Serde of struct type t; a second call for the same type
// returns the same Serde.
func (c *avroCodec) For(t reflect.Type) (Serde, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.serdes[t]; ok {
		return s, nil
	}
	s, err := c.build(t)
	if err != nil {
		return nil, err
	}
	c.serdes[t] = s
	c.ids[s.fp] = s.schema.String()
	return s, nil
}

func (c *avroCodec) build(t reflect.Type) (*avroSerde, error) {
	if t == nil || t.Kind() != reflect.Struct {
		return nil, unsupported(fmt.Sprint(t), "not a struct type")
	}
	if ns := c.cfg.namespace; ns != nil && !validNamespace(*ns) {
		return nil, unsupported(t.String(), fmt.Sprintf("AvroNamespace(%q) is not a valid Avro namespace", *ns))
	}
	text, explicit, err := schemaText(t, c.cfg.namespace)
	if err != nil {
		return nil, err
	}
	sch, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		if explicit {
			return nil, unsupported(t.String(), "AvroSchema(): "+err.Error())
		}
		return nil, unsupported(t.String(), "derived schema does not parse: "+err.Error()) // a bug of this package
	}
	full, err := json.Marshal(sch)
	if err != nil {
		return nil, unsupported(t.String(), err.Error())
	}
	s := &avroSerde{
		codec:  c,
		t:      t,
		pt:     reflect.PointerTo(t),
		schema: sch,
		text:   string(full),
		enc:    c.api.EncoderOf(sch, reflect2.Type2(t)),
		penc:   c.api.EncoderOf(sch, reflect2.Type2(reflect.PointerTo(t))),
		dec:    c.api.DecoderOf(sch, reflect2.Type2(reflect.PointerTo(t))),
		clip:   clipper(t),
	}
	s.check, s.checkOnEncode = compileCheck(sch)

	s.name = t.String()
	if n, ok := sch.(avro.NamedSchema); ok {
		s.name = n.FullName()
	}
	if c.cfg.ids != nil {
		if s.fp, err = c.cfg.ids(s.name, s.text); err != nil {
			return nil, fmt.Errorf("schema: ID of %s: %w", s.name, err)
		}
	} else if s.fp, err = fingerprintID(sch); err != nil {
		return nil, unsupported(t.String(), err.Error())
	}
	if prev, dup := c.ids[s.fp]; dup && prev != sch.String() {
		return nil, fmt.Errorf("schema: %v: schema ID %d is already used by the different schema %s", t, s.fp, prev)
	}
	s.frame.Store(newFrame(s.fp, false))

	if err := s.trial(explicit); err != nil {
		return nil, unsupported(t.String(), "schema does not fit the type: "+err.Error())
	}
	return s, nil
}

// trial encodes and decodes the zero value, because hamba/avro reports a
// Go type that does not fit the schema only when it meets a value. A
// derived schema fits every value. An explicit one may reject the zero
// value for what it is (e.g. "" is not a symbol of an enum): then only
// hamba/avro's messages for a misfit type count.
func (s *avroSerde) trial(explicit bool) error {
	b, err := s.Encode(reflect.Zero(s.t).Interface())
	if err == nil {
		_, err = s.Decode(b)
	}
	if err != nil && explicit {
		if msg := err.Error(); !strings.Contains(msg, " is unsupported for ") && !strings.Contains(msg, " is missing required field ") {
			return nil
		}
	}
	return err
}

// schemaText returns t's AvroSchema() or the schema derived from t.
func schemaText(t reflect.Type, namespace *string) (text string, explicit bool, err error) {
	if a, ok := reflect.New(t).Interface().(avroSchemer); ok {
		defer func() {
			if r := recover(); r != nil {
				err = unsupported(t.String(), fmt.Sprintf("AvroSchema() panicked: %v", r))
			}
		}()
		return a.AvroSchema(), true, nil
	}
	text, err = deriveAvro(t, namespace)
	return text, false, err
}

// fingerprintID folds the CRC-64-AVRO (Rabin) fingerprint of the canonical
// schema into a positive int32, never 0: a stable ID with no storage.
func fingerprintID(s avro.Schema) (uint32, error) {
	fp, err := s.FingerprintUsing(avro.CRC64Avro)
	if err != nil {
		return 0, err
	}
	x := binary.BigEndian.Uint64(fp)
	id := uint32(x^x>>32) & 0x7fffffff
	if id == 0 {
		id = 1
	}
	return id, nil
}

// FingerprintID returns the default schema ID of an Avro schema text: the
// CRC-64-AVRO (Rabin) fingerprint of its canonical form folded into 31
// bits, never 0 (the ID the codec writes with no registry).
func FingerprintID(schema string) (uint32, error) {
	s, err := parseSchema(schema)
	if err != nil {
		return 0, fmt.Errorf("schema: %w", err)
	}
	return fingerprintID(s)
}

// frame is the ID a Serde writes and its frame header.
type frame struct {
	id         uint32
	registered bool // the ID comes from Register
	header     [headerLen]byte
}

func newFrame(id uint32, registered bool) *frame {
	f := &frame{id: id, registered: registered}
	f.header[0] = magic
	binary.BigEndian.PutUint32(f.header[1:], id)
	return f
}

type avroSerde struct {
	codec         *avroCodec
	t, pt         reflect.Type
	schema        avro.Schema
	text          string
	name          string // the record's full name
	fp            uint32 // the default ID: fingerprint, or from AvroIDs
	frame         atomic.Pointer[frame]
	readers       sync.Map // writer schema ID → *writerDecoder
	nreaders      atomic.Int32
	enc, penc     avro.ValEncoder // of a T and of a *T held in an interface
	dec           avro.ValDecoder // into a *T
	check         *vnode
	checkOnEncode bool                  // the schema has limits that Decode enforces
	clip          func(v reflect.Value) // nil when T holds no []byte
}

func (s *avroSerde) Schema() string { return s.text }

func (s *avroSerde) ID() uint32 { return s.frame.Load().id }

// Encode writes the header and then the body into one pooled buffer and
// returns a copy of it: one allocation for the frame, whatever the type.
func (s *avroSerde) Encode(v any) (b []byte, err error) {
	var enc avro.ValEncoder
	switch reflect.TypeOf(v) {
	case s.t:
		enc = s.enc
	case s.pt:
		enc = s.penc
	default:
		return nil, fmt.Errorf("schema: cannot encode a %T as %v", v, s.t)
	}
	w := s.codec.writers.Get().(*avro.Writer)
	w.Reset(nil)
	w.Error = nil
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("schema: cannot encode %v: %v", s.t, r)
			return // w may be in any state: drop it
		}
		if cap(w.Buffer()) <= 64<<10 {
			s.codec.writers.Put(w)
		}
	}()
	_, _ = w.Write(s.frame.Load().header[:])
	enc.Encode(reflect2.PtrOf(v), w)
	if w.Error != nil {
		return nil, fmt.Errorf("schema: cannot encode %v: %w", s.t, w.Error)
	}
	if s.checkOnEncode {
		if err := s.check.validate(w.Buffer()[headerLen:]); err != nil {
			return nil, fmt.Errorf("schema: cannot encode %v: it could not be decoded: %w", s.t, err)
		}
	}
	return append([]byte(nil), w.Buffer()...), nil
}

// Decode checks the frame and the body before hamba/avro reads it, so that
// no input can make it panic or allocate more than the input's size.
func (s *avroSerde) Decode(b []byte) (v any, err error) {
	return s.decode(context.Background(), b)
}

func (s *avroSerde) decode(ctx context.Context, b []byte) (v any, err error) {
	if len(b) < headerLen {
		return nil, s.decodeErr(fmt.Errorf("frame of %d bytes is shorter than its %d-byte header", len(b), headerLen))
	}
	if b[0] != magic {
		return nil, s.decodeErr(fmt.Errorf("magic byte is 0x%02x, want 0x%02x (not Avro in the Confluent wire format)", b[0], magic))
	}
	check, dec := s.check, s.dec
	if id := binary.BigEndian.Uint32(b[1:headerLen]); id != s.frame.Load().id {
		wd, err := s.writer(ctx, id)
		if err != nil {
			return nil, err
		}
		check, dec = wd.check, wd.dec
	}
	body := b[headerLen:]
	if err := check.validate(body); err != nil {
		return nil, s.decodeErr(err)
	}
	p := reflect.New(s.t)
	r := s.codec.readers.Get().(*avro.Reader)
	r.Reset(body)
	r.Error = nil
	defer func() {
		if rec := recover(); rec != nil {
			v, err = nil, s.decodeErr(fmt.Errorf("%v", rec))
			return
		}
		r.Reset(nil)
		s.codec.readers.Put(r)
	}()
	dec.Decode(p.UnsafePointer(), r)
	if r.Error != nil {
		return nil, s.decodeErr(r.Error)
	}
	if s.clip != nil {
		s.clip(p.Elem())
	}
	return p.Interface(), nil
}

func (s *avroSerde) decodeErr(err error) error {
	return fmt.Errorf("%w %v: %w", ErrDecode, s.t, err)
}
