package schema

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// ErrUpcast is wrapped by the errors of an upcaster: it failed or
// panicked on an event.
var ErrUpcast = errors.New("schema: upcast failed")

// Upcaster turns events of an old Go type into their next type, for the
// changes that schema resolution cannot express: a renamed event type, a
// field split in two, a changed meaning. Build one with [Upcast].
type Upcaster struct {
	name     string // the type name recorded with old events
	from, to reflect.Type
	fn       func(any) (any, error)
}

// Upcast returns the upcaster of events of type Old into type New by fn.
// Old is the event as it was recorded (keep its Go type, e.g. in a
// package of legacy events, with the schema it was written with: Avro
// matches records by full name, so a type renamed or moved needs an
// AvroSchema method that keeps the recorded name); New is
// the next version, which may itself be upcast further. Old events are
// recognized by the type name recorded with them (the interlock-type
// header): by default Old's Go type name, as Interlock records it; see
// [Upcaster.RecordedAs].
func Upcast[Old, New any](fn func(Old) (New, error)) Upcaster {
	from := reflect.TypeFor[Old]()
	return Upcaster{
		name: from.Name(),
		from: from,
		to:   reflect.TypeFor[New](),
		fn:   func(v any) (any, error) { return fn(v.(Old)) },
	}
}

// RecordedAs returns u recognizing old events by the recorded type name
// name instead of Old's Go type name: the name the event type had when
// those events were written (e.g. "MoneyDeposited" for an Old type now
// called MoneyDepositedV1, whose AvroSchema method keeps the record name
// MoneyDeposited: see [Upcast]).
func (u Upcaster) RecordedAs(name string) Upcaster {
	u.name = name
	return u
}

// Old returns the type u upcasts from.
func (u Upcaster) Old() reflect.Type { return u.from }

// Decoder decodes record values: a Serde, or any value holding one (such
// as the runtime's producer.Serde).
type Decoder interface {
	// Decode is Serde.Decode.
	Decode(b []byte) (any, error)
}

// Upcasters is a validated set of upcasters that decodes recorded events
// into the current event types: the command processor, restores and
// projections use one Upcasters, so all of them read old events the same
// way. Safe for concurrent use.
type Upcasters struct {
	byType map[reflect.Type]Upcaster
	byName map[string][]reflect.Type // old types recorded under a name, in registration order
	serdes map[reflect.Type]Serde    // of the old types
}

// NewUpcasters validates ups and builds the Serdes of their old types with
// codec (the application's codec: with a registry, an old type reads every
// writer schema that resolves into it). It fails for an old type that is
// not a struct or that codec cannot encode, an upcaster from a type to
// itself, two upcasters from one type, and chains that loop.
func NewUpcasters(codec Codec, ups ...Upcaster) (*Upcasters, error) {
	u := &Upcasters{byType: map[reflect.Type]Upcaster{}, byName: map[string][]reflect.Type{}, serdes: map[reflect.Type]Serde{}}
	var errs []error
	for _, up := range ups {
		switch {
		case up.fn == nil:
			errs = append(errs, errors.New("schema: an Upcaster not made by Upcast"))
			continue
		case up.from.Kind() != reflect.Struct || up.to.Kind() != reflect.Struct:
			errs = append(errs, fmt.Errorf("schema: upcaster from %v to %v: events are structs", up.from, up.to))
			continue
		case up.from == up.to:
			errs = append(errs, fmt.Errorf("schema: upcaster from %v to itself", up.from))
			continue
		case up.name == "":
			errs = append(errs, fmt.Errorf("schema: upcaster from %v: no recorded type name", up.from))
			continue
		}
		if prev, dup := u.byType[up.from]; dup {
			errs = append(errs, fmt.Errorf("schema: two upcasters from %v: to %v and to %v", up.from, prev.to, up.to))
			continue
		}
		s, err := codec.For(up.from)
		if err != nil {
			errs = append(errs, fmt.Errorf("schema: upcaster from %v: %w", up.from, err))
			continue
		}
		u.byType[up.from] = up
		u.byName[up.name] = append(u.byName[up.name], up.from)
		u.serdes[up.from] = s
	}
	for from := range u.byType {
		// Report each loop once: from the member with the least name.
		chain := []reflect.Type{from}
		for t := u.byType[from].to; ; t = u.byType[t].to {
			if slices.Contains(chain, t) {
				if t == from && !slices.ContainsFunc(chain, func(x reflect.Type) bool { return x.String() < from.String() }) {
					names := make([]string, 0, len(chain)+1)
					for _, x := range append(chain, t) {
						names = append(names, x.String())
					}
					errs = append(errs, fmt.Errorf("schema: upcasters loop: %s", strings.Join(names, " → ")))
				}
				break
			}
			chain = append(chain, t)
			if _, ok := u.byType[t]; !ok {
				break
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return u, nil
}

// Readers returns the Serdes of the old types, by type: what
// CheckCoverage checks against what was recorded.
func (u *Upcasters) Readers() map[reflect.Type]Serde { return maps.Clone(u.serdes) }

// Target returns the type that events of type t end up as: t when no
// upcaster starts from it. The builder checks that it is a current event
// type.
func (u *Upcasters) Target(t reflect.Type) reflect.Type {
	for {
		up, ok := u.byType[t]
		if !ok {
			return t
		}
		t = up.to
	}
}

// Old returns the old types whose events are recorded under the type name
// name, in the order their upcasters were given.
func (u *Upcasters) Old(name string) []reflect.Type {
	return append([]reflect.Type(nil), u.byName[name]...)
}

// Apply upcasts v (a value or a pointer to one) through the chain that
// starts at its type, and returns the last value, not a pointer; v itself
// when no upcaster starts from its type. Errors wrap ErrUpcast.
func (u *Upcasters) Apply(v any) (out any, err error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		if _, ok := u.byType[rv.Type().Elem()]; ok {
			v = rv.Elem().Interface()
		}
	}
	for {
		up, ok := u.byType[reflect.TypeOf(v)]
		if !ok {
			return v, nil
		}
		next, err := up.call(v)
		if err != nil {
			return nil, err
		}
		v = next
	}
}

func (up Upcaster) call(v any) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%w: %v to %v: panic: %v", ErrUpcast, up.from, up.to, r)
		}
	}()
	out, err = up.fn(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v to %v: %w", ErrUpcast, up.from, up.to, err)
	}
	return out, nil
}

// Decode decodes b, a record value recorded with the type name name, into
// the current type of its event, and returns a pointer to it as
// Serde.Decode does. It tries current, the Serde of the current event
// type called name (nil if none is), first; when current does not know
// b's schema or cannot resolve it (ErrUnknownSchema, ErrIncompatible), it
// tries the old types recorded under name in order, and upcasts what the
// first that reads b decodes. Errors are those of current (or of the
// first old type when there is no current type) and those of upcasting.
// With the JSON codec, which has no schemas, old types are tried only for
// names that have no current type (renamed event types).
func (u *Upcasters) Decode(name string, b []byte, current Decoder) (any, error) {
	var err error
	if current != nil {
		var v any
		if v, err = current.Decode(b); err == nil {
			return u.pointer(v)
		}
		if !errors.Is(err, ErrUnknownSchema) && !errors.Is(err, ErrIncompatible) {
			return nil, err
		}
	}
	for _, t := range u.byName[name] {
		v, oerr := u.serdes[t].Decode(b)
		if oerr == nil {
			return u.pointer(v)
		}
		if !errors.Is(oerr, ErrDecode) { // the registry: retry later
			return nil, oerr
		}
		if err == nil {
			err = oerr
		}
	}
	if err == nil {
		return nil, fmt.Errorf("%w: no event type and no upcaster for the recorded type %q", ErrDecode, name)
	}
	return nil, err
}

// pointer upcasts the decoded *T v and returns a pointer to the result.
func (u *Upcasters) pointer(v any) (any, error) {
	if _, ok := u.byType[reflect.TypeOf(v).Elem()]; !ok {
		return v, nil
	}
	out, err := u.Apply(v)
	if err != nil {
		return nil, err
	}
	p := reflect.New(reflect.TypeOf(out))
	p.Elem().Set(reflect.ValueOf(out))
	return p.Interface(), nil
}
