package schema

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	timeType        = reflect.TypeFor[time.Time]()
	durationType    = reflect.TypeFor[time.Duration]()
	textMarshaler   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// deriver writes the Avro schema (JSON) of a Go type. Every named Avro
// type is written with its full name, so no name depends on the namespace
// of the record that encloses it.
type deriver struct {
	namespace *string                 // from AvroNamespace; nil: derived from package paths
	names     map[reflect.Type]string // full Avro name of each type already defined
	owners    map[string]reflect.Type // Go type of each full Avro name
	b         strings.Builder
}

func deriveAvro(t reflect.Type, namespace *string) (string, error) {
	d := &deriver{
		namespace: namespace,
		names:     map[reflect.Type]string{},
		owners:    map[string]reflect.Type{},
	}
	if err := d.record(t, t.String(), "", "Record"); err != nil {
		return "", err
	}
	return d.b.String(), nil
}

// typ writes the schema of t. path names the field for errors; ns and hint
// name an anonymous struct or fixed (the enclosing namespace, and the
// enclosing record and field).
func (d *deriver) typ(t reflect.Type, path, ns, hint string) error {
	switch t {
	case timeType:
		d.b.WriteString(`{"type":"long","logicalType":"timestamp-micros"}`)
		return nil
	case durationType:
		d.b.WriteString(`{"type":"long","logicalType":"time-micros"}`)
		return nil
	}
	if ok, why := textual(t); why != "" {
		return unsupported(path, why)
	} else if ok {
		d.b.WriteString(`"string"`)
		return nil
	}
	switch t.Kind() {
	case reflect.Bool:
		d.b.WriteString(`"boolean"`)
	case reflect.Int8, reflect.Int16, reflect.Int32:
		d.b.WriteString(`"int"`)
	case reflect.Int, reflect.Int64:
		d.b.WriteString(`"long"`)
	case reflect.Float32:
		d.b.WriteString(`"float"`)
	case reflect.Float64:
		d.b.WriteString(`"double"`)
	case reflect.String:
		d.b.WriteString(`"string"`)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return unsupported(path, t.String()+" cannot be encoded: Avro has no unsigned integers (use a signed type)")
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			d.b.WriteString(`"bytes"`)
			return nil
		}
		d.b.WriteString(`{"type":"array","items":`)
		if err := d.typ(t.Elem(), path, ns, hint); err != nil {
			return err
		}
		d.b.WriteString(`}`)
	case reflect.Array:
		if t.Elem().Kind() != reflect.Uint8 {
			return unsupported(path, t.String()+" cannot be encoded: of the arrays only [N]byte can (use a slice)")
		}
		return d.fixed(t, path, ns, hint)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return unsupported(path, t.String()+" cannot be encoded: map keys must be strings")
		}
		d.b.WriteString(`{"type":"map","values":`)
		if err := d.typ(t.Elem(), path, ns, hint); err != nil {
			return err
		}
		d.b.WriteString(`}`)
	case reflect.Struct:
		return d.record(t, path, ns, hint)
	case reflect.Pointer:
		if t.Elem().Kind() == reflect.Pointer {
			return unsupported(path, t.String()+" cannot be encoded: pointer to pointer")
		}
		d.b.WriteString(`["null",`)
		if err := d.typ(t.Elem(), path, ns, hint); err != nil {
			return err
		}
		d.b.WriteString(`]`)
	default: // complex, chan, func, interface, unsafe.Pointer
		return unsupported(path, t.String()+" cannot be encoded")
	}
	return nil
}

// textual reports whether t is encoded as its text (encoding.TextMarshaler
// on the value, encoding.TextUnmarshaler on the pointer, as hamba/avro
// requires), or why it cannot be.
func textual(t reflect.Type) (ok bool, why string) {
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface {
		return false, ""
	}
	m, u := t.Implements(textMarshaler), reflect.PointerTo(t).Implements(textUnmarshaler)
	switch {
	case m && u:
		return true, ""
	case m:
		return false, t.String() + " cannot be encoded: it implements encoding.TextMarshaler but not encoding.TextUnmarshaler"
	case reflect.PointerTo(t).Implements(textMarshaler):
		return false, t.String() + " cannot be encoded: its MarshalText method has a pointer receiver (use a value receiver)"
	}
	return false, ""
}

func (d *deriver) fixed(t reflect.Type, path, ns, hint string) error {
	if full, ok := d.names[t]; ok {
		d.b.WriteString(`"` + full + `"`)
		return nil
	}
	full, err := d.name(t, ns, "Fixed"+strconv.Itoa(t.Len()))
	if err != nil {
		return unsupported(path, err.Error())
	}
	d.b.WriteString(`{"type":"fixed","name":"` + full + `","size":` + strconv.Itoa(t.Len()) + `}`)
	return nil
}

func (d *deriver) record(t reflect.Type, path, ns, hint string) error {
	if full, ok := d.names[t]; ok {
		d.b.WriteString(`"` + full + `"`)
		return nil
	}
	full, err := d.name(t, ns, hint)
	if err != nil {
		return unsupported(path, err.Error())
	}
	fields, err := structFields(t, path)
	if err != nil {
		return err
	}
	ns, local := "", full
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		ns, local = full[:i], full[i+1:]
	}
	d.b.WriteString(`{"type":"record","name":"` + full + `","fields":[`)
	for i, f := range fields {
		if i > 0 {
			d.b.WriteByte(',')
		}
		d.b.WriteString(`{"name":"` + f.name + `","type":`)
		if err := d.typ(f.typ, path+"."+f.goPath, ns, local+"_"+f.name); err != nil {
			return err
		}
		if f.typ.Kind() == reflect.Pointer {
			d.b.WriteString(`,"default":null`)
		}
		d.b.WriteByte('}')
	}
	d.b.WriteString(`]}`)
	return nil
}

// name returns the full Avro name of the struct or fixed type t and
// reserves it. Anonymous types are named by hint in the namespace ns of
// their enclosing record.
func (d *deriver) name(t reflect.Type, ns, hint string) (string, error) {
	local := t.Name()
	switch {
	case local == "":
		local = hint
	case d.namespace != nil:
		ns = *d.namespace
	default:
		ns = namespaceOf(t.PkgPath())
	}
	full := avroName(local)
	if ns != "" {
		full = ns + "." + full
	}
	if prev, dup := d.owners[full]; dup && prev != t {
		return "", fmt.Errorf("types %v and %v both have the Avro name %s (rename one, or give it an AvroSchema method)", prev, t, full)
	}
	d.owners[full] = t
	d.names[t] = full
	return full, nil
}

// field is a struct field as hamba/avro finds it: by breadth-first search
// through embedded structs.
type field struct {
	name   string // Avro name: the avro tag before its comma, or the Go name
	goPath string // e.g. "Meta.At"
	index  []int
	typ    reflect.Type
	depth  int
	skip   bool // tagged avro:"-", or inside an embedded struct that is skipped
}

// structFields returns the fields of struct t that its Avro record holds,
// in declaration order (embedded structs flattened in place). It mirrors
// how hamba/avro's describeStruct finds the Go field of a record field —
// first match in a breadth-first walk that visits each struct type once —
// and rejects the layouts where that would silently lose data.
func structFields(t reflect.Type, path string) ([]field, error) {
	type level struct {
		t      reflect.Type
		index  []int
		goPath string
		skip   bool
	}
	var all []field
	visited := map[reflect.Type]bool{}
	next := []level{{t: t}}
	for depth := 0; len(next) > 0; depth++ {
		curr := next
		next = nil
		for _, l := range curr {
			if visited[l.t] {
				if !l.skip {
					return nil, unsupported(path+"."+l.goPath, "struct "+l.t.String()+" is embedded more than once; its fields would be encoded once")
				}
				continue
			}
			visited[l.t] = true
			for i := range l.t.NumField() {
				f := l.t.Field(i)
				index := append(slices.Clip(l.index), i)
				goPath := f.Name
				if l.goPath != "" {
					goPath = l.goPath + "." + f.Name
				}
				name := f.Name
				if tag, ok := f.Tag.Lookup("avro"); ok {
					name, _, _ = strings.Cut(tag, ",")
				}
				if f.Anonymous {
					et := f.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					skip := l.skip || name == "-"
					if et.Kind() != reflect.Struct {
						if skip || !f.IsExported() {
							continue
						}
						return nil, unsupported(path+"."+goPath, "embedded "+f.Type.String()+" cannot be encoded: give the field a name")
					}
					skip = skip || allSkipped(et)
					if !skip {
						if ok, _ := textual(et); ok || et == timeType {
							return nil, unsupported(path+"."+goPath, "embedded "+f.Type.String()+" cannot be encoded: give the field a name")
						}
						if f.Type.Kind() == reflect.Pointer {
							return nil, unsupported(path+"."+goPath, "embedded "+f.Type.String()+" cannot be encoded when nil: embed "+et.String()+" by value")
						}
					}
					next = append(next, level{t: et, index: index, goPath: goPath, skip: skip})
					continue
				}
				if !f.IsExported() {
					continue
				}
				all = append(all, field{name: name, goPath: goPath, index: index, typ: f.Type, depth: depth, skip: l.skip || name == "-"})
			}
		}
	}

	winner := map[string]int{} // first field of each name: the one hamba/avro uses
	for i, f := range all {
		w, seen := winner[f.name]
		if !seen {
			winner[f.name] = i
			continue
		}
		switch g := all[w]; {
		case f.skip:
		case g.skip:
			return nil, unsupported(path+"."+f.goPath, fmt.Sprintf("Avro name %q is taken by %s, which is not encoded", f.name, g.goPath))
		case g.depth == f.depth:
			return nil, unsupported(path+"."+f.goPath, fmt.Sprintf("Avro name %q is also the name of %s", f.name, g.goPath))
		}
		// Otherwise f is shadowed by a shallower field, as in Go.
	}
	var out []field
	for _, i := range winner {
		f := all[i]
		if f.skip {
			continue
		}
		if !validName(f.name) {
			return nil, unsupported(path+"."+f.goPath, fmt.Sprintf("%q is not a valid Avro name (letters, digits and _, not starting with a digit; set an avro tag)", f.name))
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b field) int { return slices.Compare(a.index, b.index) })
	return out, nil
}

// allSkipped reports whether every field of t that hamba/avro would look
// at is tagged avro:"-" (as in aggregate.CommandOf, the command envelope).
func allSkipped(t reflect.Type) bool {
	n := 0
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("avro") == "-" {
			n++
		} else if f.IsExported() || f.Anonymous {
			return false
		}
	}
	return n > 0
}

func validName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := range len(s) {
		if !nameChar(s[i]) {
			return false
		}
	}
	return true
}

func nameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// avroName turns a Go type name into a valid Avro name. The package paths
// in the arguments of a generic type are dropped (Foo[example.com/x/y.Bar]
// becomes Foo_y_Bar) and every run of other characters becomes one "_".
func avroName(s string) string {
	var b []byte
	word := 0 // start of the current qualified identifier in b
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			b = b[:word]
			continue
		case c == '[' || c == ']' || c == ',' || c == ' ' || c == '*':
			word = len(b) + 1
		}
		b = append(b, c)
	}
	out := make([]byte, 0, len(b)+1)
	for _, c := range b {
		if !nameChar(c) {
			c = '_'
			if len(out) > 0 && out[len(out)-1] == '_' {
				continue
			}
		}
		out = append(out, c)
	}
	for len(out) > 0 && out[len(out)-1] == '_' {
		out = out[:len(out)-1]
	}
	if len(out) == 0 || out[0] >= '0' && out[0] <= '9' {
		out = append([]byte{'_'}, out...)
	}
	return string(out)
}

// namespaceOf derives an Avro namespace from a Go package path: the path
// split at every "/" and ".", each part made a valid Avro name.
// "github.com/acme/bank-core/v2" becomes "github.com.acme.bank_core.v2".
func namespaceOf(pkgPath string) string {
	parts := strings.FieldsFunc(pkgPath, func(r rune) bool { return r == '/' || r == '.' })
	for i, p := range parts {
		parts[i] = avroName(p)
	}
	return strings.Join(parts, ".")
}

// validNamespace reports whether ns is "" or dot-separated valid names.
func validNamespace(ns string) bool {
	if ns == "" {
		return true
	}
	for p := range strings.SplitSeq(ns, ".") {
		if !validName(p) {
			return false
		}
	}
	return true
}
