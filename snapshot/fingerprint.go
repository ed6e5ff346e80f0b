package snapshot

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/json"
	"hash"
	"reflect"
)

// fingerprintVersion is hashed first: changing how types are walked must
// change every fingerprint, or an old snapshot could pass for a new one.
const fingerprintVersion = "interlock/snapshot.Fingerprint/v1"

var (
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	binaryMarshalerType = reflect.TypeFor[encoding.BinaryMarshaler]()
	jsonMarshalerType   = reflect.TypeFor[json.Marshaler]()
)

// Fingerprint returns a 64-bit fingerprint of the shape of t and of the
// codec that encodes it: a snapshot whose fingerprint differs from the
// running code's was written for another state type or encoding and must
// be ignored.
//
// The shape is walked recursively: kinds, array lengths, element, key and
// field types, field names, struct tags and embedding; a named type counts
// by its package path and name as well as by its shape, and a type met
// again (a recursive type) by a back-reference. Unexported fields are left
// out, as the codecs leave them out of the encoding. A named type that
// encodes itself (encoding.TextMarshaler, encoding.BinaryMarshaler or
// json.Marshaler, e.g. time.Time or ulid.ULID) counts by its name only, so
// the internals of other modules' types do not change fingerprints.
//
// The result is the same in every process and every run, and changes
// whenever a field is added, removed, renamed, retyped or retagged.
func Fingerprint(t reflect.Type, codec string) uint64 {
	w := fingerprinter{h: sha256.New(), seen: map[reflect.Type]int{}}
	w.str(fingerprintVersion)
	w.str(codec)
	w.typ(t)
	return binary.BigEndian.Uint64(w.h.Sum(nil))
}

type fingerprinter struct {
	h    hash.Hash
	seen map[reflect.Type]int // named types, by order of first visit
	buf  [binary.MaxVarintLen64]byte
}

func (w *fingerprinter) uint(n uint64) {
	w.h.Write(binary.AppendUvarint(w.buf[:0], n))
}

// str writes s length-prefixed, so that no two sequences of strings hash
// the same input.
func (w *fingerprinter) str(s string) {
	w.uint(uint64(len(s)))
	w.h.Write([]byte(s))
}

func (w *fingerprinter) typ(t reflect.Type) {
	if t == nil {
		w.str("nil")
		return
	}
	if t.Name() != "" {
		if i, ok := w.seen[t]; ok {
			w.str("ref")
			w.uint(uint64(i))
			return
		}
		w.seen[t] = len(w.seen)
		w.str("named")
		w.str(t.PkgPath())
		w.str(t.Name())
		if encodesItself(t) {
			w.str("marshaler")
			return
		}
	}
	w.str(t.Kind().String())
	switch t.Kind() {
	case reflect.Array:
		w.uint(uint64(t.Len()))
		w.typ(t.Elem())
	case reflect.Slice, reflect.Pointer:
		w.typ(t.Elem())
	case reflect.Chan:
		w.uint(uint64(t.ChanDir()))
		w.typ(t.Elem())
	case reflect.Map:
		w.typ(t.Key())
		w.typ(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			w.str("field")
			w.str(f.Name)
			w.str(string(f.Tag))
			if f.Anonymous {
				w.str("embedded")
			}
			w.typ(f.Type)
		}
		w.str("end")
	case reflect.Func:
		w.uint(uint64(t.NumIn()))
		for i := range t.NumIn() {
			w.typ(t.In(i))
		}
		w.uint(uint64(t.NumOut()))
		for i := range t.NumOut() {
			w.typ(t.Out(i))
		}
		if t.IsVariadic() {
			w.str("variadic")
		}
	case reflect.Interface:
		w.uint(uint64(t.NumMethod())) // sorted by name
		for i := range t.NumMethod() {
			m := t.Method(i)
			w.str(m.PkgPath)
			w.str(m.Name)
			w.typ(m.Type)
		}
	}
}

// encodesItself reports whether t is a type whose encoding its own methods
// define.
func encodesItself(t reflect.Type) bool {
	if t.Kind() == reflect.Interface {
		return false
	}
	for _, m := range []reflect.Type{textMarshalerType, binaryMarshalerType, jsonMarshalerType} {
		if t.Implements(m) || reflect.PointerTo(t).Implements(m) {
			return true
		}
	}
	return false
}
