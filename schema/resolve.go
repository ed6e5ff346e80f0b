package schema

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/modern-go/reflect2"
)

// maxWriters bounds the writer schemas a Serde remembers, so that records
// with made-up IDs cannot grow its cache without end; beyond it, failures
// are not remembered (a registry is asked again).
const maxWriters = 1024

// writerDecoder reads the records written with one writer schema.
type writerDecoder struct {
	check *vnode
	dec   avro.ValDecoder
	err   error // the ID cannot be read as the Serde's type (wraps ErrDecode)
}

// unknownIDError is a frame's schema ID that neither the Serde nor its
// registry knows.
type unknownIDError struct {
	id, own uint32
	cause   error // the registry's answer, if one was asked
}

func (e *unknownIDError) Error() string {
	msg := fmt.Sprintf("unknown schema ID %d (this type's schema has ID %d)", e.id, e.own)
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

func (e *unknownIDError) Unwrap() error { return ErrUnknownSchema }

// writerError is a writer schema that cannot be resolved against the
// Serde's type.
type writerError struct{ msg string }

func (e *writerError) Error() string { return e.msg }

func (e *writerError) Unwrap() error { return ErrIncompatible }

// writer returns the decoder of records written with schema id, which is
// not the Serde's own: the writer schema, looked up in the registry and
// resolved against the Serde's type. Results are cached per ID, except a
// failure to reach the registry, which is returned without ErrDecode.
func (s *avroSerde) writer(ctx context.Context, id uint32) (*writerDecoder, error) {
	if v, ok := s.readers.Load(id); ok {
		wd := v.(*writerDecoder)
		return wd, wd.err
	}
	own := s.frame.Load().id
	rc := s.codec.cfg.registry
	if rc == nil {
		return nil, s.decodeErr(&unknownIDError{id: id, own: own})
	}
	ctx, cancel := context.WithTimeout(ctx, rc.timeout)
	defer cancel()
	text, err := rc.reg.SchemaByID(ctx, id)
	var wd *writerDecoder
	switch {
	case err != nil && errors.Is(err, ErrUnknownSchema) && id == s.fp:
		// Written before the registry was used, with this very schema.
		wd = &writerDecoder{check: s.check, dec: s.dec}
	case err != nil && errors.Is(err, ErrUnknownSchema):
		wd = &writerDecoder{err: s.decodeErr(&unknownIDError{id: id, own: own, cause: err})}
	case err != nil:
		return nil, fmt.Errorf("%w: cannot decode %v: looking up writer schema %d: %w", ErrRegistryUnavailable, s.t, id, err)
	default:
		wd = s.resolve(id, text)
	}
	wd = s.remember(id, wd)
	return wd, wd.err
}

// remember caches wd as the decoder of writer schema id, unless the cache
// is full of failures, and returns the cached one.
func (s *avroSerde) remember(id uint32, wd *writerDecoder) *writerDecoder {
	if s.nreaders.Add(1) <= maxWriters || wd.err == nil {
		v, _ := s.readers.LoadOrStore(id, wd)
		return v.(*writerDecoder)
	}
	return wd
}

// DecodeContext is s.Decode(b), except that when s must ask its registry
// for b's writer schema, ctx bounds the request (as well as the codec's
// LookupTimeout): a caller that is shutting down does not wait for it.
func DecodeContext(ctx context.Context, s Decoder, b []byte) (any, error) {
	if a, ok := s.(*avroSerde); ok {
		return a.decode(ctx, b)
	}
	return s.Decode(b)
}

// Prepare makes sure that the writer schema of the record value b is
// known to s, asking the registry (within ctx) when it is not, so that
// decoding b needs no request. It returns an error matching
// ErrRegistryUnavailable when the registry does not answer, and nil
// otherwise, also for a value s cannot decode: Decode says why. A caller
// that must not wait on the registry at a worse moment (inside a Kafka
// transaction, say) prepares its records first.
func Prepare(ctx context.Context, s Decoder, b []byte) error {
	a, ok := s.(*avroSerde)
	if !ok || len(b) < headerLen || b[0] != magic {
		return nil
	}
	if id := binary.BigEndian.Uint32(b[1:headerLen]); id != a.frame.Load().id {
		if _, err := a.writer(ctx, id); errors.Is(err, ErrRegistryUnavailable) {
			return err
		}
	}
	return nil
}

// resolve compiles the decoder of records written with writer schema text
// into the Serde's type.
func (s *avroSerde) resolve(id uint32, text string) (wd *writerDecoder) {
	if text == s.text {
		return &writerDecoder{check: s.check, dec: s.dec}
	}
	ws, err := parseSchema(text)
	if err != nil {
		return &writerDecoder{err: s.decodeErr(fmt.Errorf("writer schema %d does not parse: %w", id, err))}
	}
	if ws.String() == s.schema.String() { // the same canonical form: the same bytes
		return &writerDecoder{check: s.check, dec: s.dec}
	}
	if recursive(ws) || recursive(s.schema) {
		// hamba/avro's Resolve never returns on them (a stack overflow,
		// which no recover catches).
		return &writerDecoder{err: s.decodeErr(&writerError{fmt.Sprintf("writer schema %d (%s) cannot be read as %v: %s", id, fullName(ws), s.t, ruleRecursive)})}
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(s.schema, ws)
	if err != nil {
		path, rule := incompatibility(s.schema, ws, true, s.name)
		if rule == "" {
			rule = err.Error()
		}
		return &writerDecoder{err: s.decodeErr(&writerError{fmt.Sprintf("writer schema %d (%s) cannot be read as %v: %s: %s", id, fullName(ws), s.t, path, rule)})}
	}
	defer func() {
		if r := recover(); r != nil {
			wd = &writerDecoder{err: s.decodeErr(fmt.Errorf("writer schema %d: %v", id, r))}
		}
	}()
	check, _ := compileCheck(ws)
	return &writerDecoder{check: check, dec: s.codec.api.DecoderOf(resolved, reflect2.Type2(s.pt))}
}

// Register checks the schema of s against the versions registered under
// its subject for topic, at the codec's compatibility level (see
// [AvroRegistry]), registers it, and makes s write the ID the registry
// gave it from then on. The schema of a Serde from a codec without a
// registry (JSON, Avro without AvroRegistry) is not registered: Register
// returns its ID. An incompatible schema is an *IncompatibleError.
//
// Call it for each message type and the topic its records go to before
// the first record is written, e.g. when the application starts.
func Register(ctx context.Context, s Serde, topic string) (uint32, error) {
	a, ok := s.(*avroSerde)
	if !ok || a.codec.cfg.registry == nil {
		return s.ID(), nil
	}
	return a.register(ctx, topic, true)
}

// Check does what Register does without registering anything or changing
// s: it returns nil when s's schema is registered under its subject for
// topic already or could be, an *IncompatibleError when it breaks the
// codec's compatibility level, or the registry's error. For CI pipelines
// (interlock schema check).
func Check(ctx context.Context, s Serde, topic string) error {
	a, ok := s.(*avroSerde)
	if !ok || a.codec.cfg.registry == nil {
		return nil
	}
	_, err := a.register(ctx, topic, false)
	return err
}

// CheckCoverage checks that the events recorded in topic under the record
// names of the old types can still be read: for each such name, every
// version registered under its subject must be read by one of its
// readers, the old types and the current types (current) of that name.
// An upcaster's old type edited so that it no longer reads what was
// written fails here, at start, rather than in the restore of every
// aggregate it touches. Record names no old type has are not checked
// (the registry's compatibility level covers them). The error wraps
// ErrIncompatible and names the subject, the version, the readers and,
// for the first of them, the field and the rule; a registry's error is
// returned as it is.
func CheckCoverage(ctx context.Context, topic string, current, old []Serde) error {
	byName := map[string][]*avroSerde{}
	var names []string
	for _, s := range old {
		if a, ok := s.(*avroSerde); ok && a.codec.cfg.registry != nil {
			if _, seen := byName[a.name]; !seen {
				names = append(names, a.name)
			}
			byName[a.name] = append(byName[a.name], a)
		}
	}
	for _, s := range current {
		if a, ok := s.(*avroSerde); ok && byName[a.name] != nil {
			byName[a.name] = append(byName[a.name], a)
		}
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		readers := byName[name]
		rc := readers[0].codec.cfg.registry
		subject := rc.subject(topic, name)
		versions, err := rc.reg.Versions(ctx, subject)
		if err != nil {
			errs = append(errs, fmt.Errorf("schema: versions of subject %q: %w", subject, err))
			continue
		}
		for _, v := range versions {
			ws, err := parseSchema(v.Schema)
			if err != nil {
				errs = append(errs, fmt.Errorf("schema: version %d of subject %q: %w", v.Version, subject, err))
				continue
			}
			if slices.ContainsFunc(readers, func(a *avroSerde) bool { return a.reads(ws) }) {
				continue
			}
			types := make([]string, len(readers))
			for i, a := range readers {
				types[i] = a.t.String()
			}
			path, rule := incompatibility(readers[0].schema, ws, true, name)
			errs = append(errs, fmt.Errorf("%w: version %d of subject %q can be read by none of %s: %s: %s",
				ErrIncompatible, v.Version, subject, strings.Join(types, ", "), path, rule))
		}
	}
	return errors.Join(errs...)
}

// reads reports whether s can decode records written with schema w.
func (s *avroSerde) reads(w avro.Schema) bool {
	if w.String() == s.schema.String() {
		return true
	}
	if recursive(w) || recursive(s.schema) {
		return false // hamba/avro's resolution never returns on them
	}
	return compatible(s.schema, w)
}

func (s *avroSerde) register(ctx context.Context, topic string, write bool) (uint32, error) {
	rc := s.codec.cfg.registry
	subject := rc.subject(topic, s.name)
	versions, err := rc.reg.Versions(ctx, subject)
	if err != nil {
		return 0, fmt.Errorf("schema: %v: versions of subject %q: %w", s.t, subject, err)
	}
	var id uint32
	for _, v := range versions {
		if v.Schema == s.text {
			id = v.ID
		}
	}
	if id == 0 {
		if err := Compatible(rc.level, s.text, versions); err != nil {
			var ie *IncompatibleError
			if errors.As(err, &ie) {
				ie.Type, ie.Subject = s.t.String(), subject
				return 0, ie
			}
			return 0, fmt.Errorf("schema: %v: subject %q: %w", s.t, subject, err)
		}
		if !write {
			return 0, nil
		}
		if id, err = rc.reg.Register(ctx, subject, s.text); err != nil {
			return 0, fmt.Errorf("schema: %v: registering under subject %q: %w", s.t, subject, err)
		}
	}
	if !write {
		return id, nil
	}
	if err := s.setID(id, subject); err != nil {
		return 0, err
	}
	// The decoders of the older versions, from the texts at hand: old
	// events need no request to the registry.
	for _, v := range versions {
		if _, ok := s.readers.Load(v.ID); !ok && v.ID != id {
			s.remember(v.ID, s.resolve(v.ID, v.Schema))
		}
	}
	return id, nil
}

// setID makes s write id, given by the registry for subject.
func (s *avroSerde) setID(id uint32, subject string) error {
	c := s.codec
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := s.frame.Load(); f.registered && f.id != id {
		return fmt.Errorf("schema: %v: subject %q gave ID %d, another subject gave ID %d to the same schema", s.t, subject, id, f.id)
	}
	if prev, dup := c.ids[id]; dup && prev != s.schema.String() {
		return fmt.Errorf("schema: %v: the registry gave ID %d, which this codec uses for the different schema %s", s.t, id, prev)
	}
	c.ids[id] = s.schema.String()
	s.frame.Store(newFrame(id, true))
	return nil
}
