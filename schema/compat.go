package schema

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
)

// IncompatibleError says why a schema breaks the compatibility of a
// subject: which type, which field, which rule. It wraps ErrIncompatible.
type IncompatibleError struct {
	// Type is the Go type or, without one, the record's full name.
	Type string
	// Subject is the subject checked ("" when checked without a registry).
	Subject string
	// Level is the compatibility broken.
	Level Compatibility
	// Version is the registered version the new schema conflicts with.
	Version int
	// Path is where the rule is broken: the record's full name and the
	// field path, e.g. "bank.MoneyDeposited.currency".
	Path string
	// Rule says what was changed and why that breaks the level, e.g.
	// "field added without a default: old data has no value for it".
	Rule string
}

// Error says which type breaks which level, where and how.
func (e *IncompatibleError) Error() string {
	var b strings.Builder
	b.WriteString("schema: ")
	b.WriteString(e.Type)
	b.WriteString(" breaks ")
	b.WriteString(e.Level.String())
	fmt.Fprintf(&b, " compatibility with version %d", e.Version)
	if e.Subject != "" {
		fmt.Fprintf(&b, " of subject %q", e.Subject)
	}
	b.WriteString(": ")
	b.WriteString(e.Path)
	b.WriteString(": ")
	b.WriteString(e.Rule)
	return b.String()
}

// Unwrap returns ErrIncompatible.
func (e *IncompatibleError) Unwrap() error { return ErrIncompatible }

// Compatible checks the Avro schema next against the registered versions
// of its subject (oldest first) under level, locally: no registry is
// asked. It returns nil or an *IncompatibleError for the first conflict,
// or an error for a schema that does not parse.
func Compatible(level Compatibility, next string, registered []Version) error {
	if level == None || len(registered) == 0 {
		return nil
	}
	ns, err := parseSchema(next)
	if err != nil {
		return fmt.Errorf("schema: new schema: %w", err)
	}
	check := registered
	if !level.transitive() {
		check = registered[len(registered)-1:]
	}
	for i := len(check) - 1; i >= 0; i-- { // newest first: the likeliest conflict
		v := check[i]
		old, err := parseSchema(v.Schema)
		if err != nil {
			return fmt.Errorf("schema: registered version %d: %w", v.Version, err)
		}
		var path, rule string
		if (recursive(ns) || recursive(old)) && ns.String() != old.String() {
			path, rule = fullName(ns), ruleRecursive
		}
		if rule == "" && level.backward() {
			path, rule = incompatibility(ns, old, true, fullName(ns))
		}
		if rule == "" && level.forward() {
			path, rule = incompatibility(old, ns, false, fullName(ns))
		}
		if rule != "" {
			return &IncompatibleError{Type: fullName(ns), Level: level, Version: v.Version, Path: path, Rule: rule}
		}
	}
	return nil
}

// ruleRecursive is why two versions of a recursive schema are
// incompatible whatever their change.
const ruleRecursive = "a record that contains itself cannot be read with another version of its schema (hamba/avro cannot resolve such schemas): keep the schema as it is, or add a new event type and an upcaster"

func parseSchema(text string) (avro.Schema, error) {
	return avro.ParseWithCache(text, "", &avro.SchemaCache{})
}

func fullName(s avro.Schema) string {
	if n, ok := deref(s).(avro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

// incompatibility reports whether data written with writer can be read
// with reader, and if not where and why. The verdict is hamba/avro's, the
// same library that resolves old data when it is decoded; the path and the
// rule come from walking the schemas. newIsReader tells which side is the
// new schema, for the wording.
func incompatibility(reader, writer avro.Schema, newIsReader bool, root string) (path, rule string) {
	err := avro.NewSchemaCompatibility().Compatible(reader, writer)
	if err == nil {
		if recursive(reader) || recursive(writer) {
			return "", "" // Compatible left them to the caller: never resolved
		}
		// hamba/avro finds compatible some pairs that it cannot resolve
		// (a promotion into a union that holds the promoted type already):
		// what cannot be decoded is not compatible.
		if _, err := avro.NewSchemaCompatibility().Resolve(reader, writer); err != nil {
			return root, "the Avro library cannot read data of the one as the other: " + err.Error()
		}
		return "", ""
	}
	e := explainer{newIsReader: newIsReader, seen: map[[2]string]bool{}}
	if path, rule = e.explain(reader, writer, root); rule != "" {
		return path, rule
	}
	return root, err.Error()
}

type explainer struct {
	newIsReader bool
	seen        map[[2]string]bool // record pairs being walked
}

func compatible(reader, writer avro.Schema) bool {
	return avro.NewSchemaCompatibility().Compatible(reader, writer) == nil
}

// oldNew orders reader and writer as (old, new).
func (e *explainer) oldNew(reader, writer string) (string, string) {
	if e.newIsReader {
		return writer, reader
	}
	return reader, writer
}

func (e *explainer) explain(r, w avro.Schema, path string) (string, string) {
	r, w = deref(r), deref(w)
	if r.Type() != w.Type() {
		switch {
		case w.Type() == avro.Union:
			for _, b := range w.(*avro.UnionSchema).Types() {
				if compatible(r, b) {
					continue
				}
				if deref(b).Type() == r.Type() {
					return e.explain(r, b, path)
				}
				o, n := e.oldNew(describe(r), describe(w))
				return path, fmt.Sprintf("type changed from %s to %s: %s data cannot be read as %s", o, n, describe(b), describe(r))
			}
			return "", ""
		case r.Type() == avro.Union:
			for _, b := range r.(*avro.UnionSchema).Types() {
				if compatible(b, w) {
					return "", ""
				}
			}
			o, n := e.oldNew(describe(r), describe(w))
			return path, fmt.Sprintf("type changed from %s to %s: %s data cannot be read as %s", o, n, describe(w), describe(r))
		case promotes(w.Type(), r.Type()):
			return "", ""
		}
		o, n := e.oldNew(describe(r), describe(w))
		return path, fmt.Sprintf("type changed from %s to %s: %s data cannot be read as %s (only int to long, float or double, long to float or double, float to double and string to bytes and back are promotions)", o, n, describe(w), describe(r))
	}
	switch r.Type() {
	case avro.Record:
		rr, wr := r.(*avro.RecordSchema), w.(*avro.RecordSchema)
		if rule := e.name(rr, wr); rule != "" {
			return path, rule
		}
		key := [2]string{rr.FullName(), wr.FullName()}
		if e.seen[key] {
			return "", ""
		}
		e.seen[key] = true
		defer delete(e.seen, key)
		for _, rf := range rr.Fields() {
			wf := findField(wr.Fields(), rf)
			fpath := path + "." + rf.Name()
			if wf == nil {
				if rf.HasDefault() {
					continue
				}
				if e.newIsReader {
					return fpath, "field added without a default: old data has no value for it (give it a default, e.g. make it a pointer)"
				}
				return fpath, "field removed, but the old schema gives it no default: old readers need a value for it"
			}
			if p, rule := e.explain(rf.Type(), wf.Type(), fpath); rule != "" {
				return p, rule
			}
		}
	case avro.Enum:
		re, we := r.(*avro.EnumSchema), w.(*avro.EnumSchema)
		if rule := e.name(re, we); rule != "" {
			return path, rule
		}
		if re.HasDefault() {
			return "", ""
		}
		for _, s := range we.Symbols() {
			if !slices.Contains(re.Symbols(), s) {
				if e.newIsReader {
					return path, fmt.Sprintf("enum symbol %s removed: old data may hold it (or give the enum a default)", s)
				}
				return path, fmt.Sprintf("enum symbol %s added: old readers do not know it (or give the old enum a default)", s)
			}
		}
	case avro.Fixed:
		rf, wf := r.(*avro.FixedSchema), w.(*avro.FixedSchema)
		if rule := e.name(rf, wf); rule != "" {
			return path, rule
		}
		if rf.Size() != wf.Size() {
			o, n := e.oldNew(fmt.Sprint(rf.Size()), fmt.Sprint(wf.Size()))
			return path, fmt.Sprintf("fixed size changed from %s to %s", o, n)
		}
	case avro.Array:
		return e.explain(r.(*avro.ArraySchema).Items(), w.(*avro.ArraySchema).Items(), path+"[]")
	case avro.Map:
		return e.explain(r.(*avro.MapSchema).Values(), w.(*avro.MapSchema).Values(), path+"{}")
	case avro.Union:
		for _, b := range w.(*avro.UnionSchema).Types() {
			if compatible(r, b) {
				continue
			}
			if e.newIsReader {
				return path, fmt.Sprintf("union branch %s removed: old data may hold it", describe(b))
			}
			return path, fmt.Sprintf("union branch %s added: old readers do not know it", describe(b))
		}
	}
	return "", ""
}

// name checks a named type's name as hamba/avro does: the same name, or
// the writer's full name among the reader's aliases.
func (e *explainer) name(r, w avro.NamedSchema) string {
	if r.Name() == w.Name() || slices.Contains(r.Aliases(), w.FullName()) {
		return ""
	}
	o, n := e.oldNew(r.FullName(), w.FullName())
	return fmt.Sprintf("renamed from %s to %s (give the new type the alias %q, or keep the old type and an upcaster)", o, n, o)
}

// findField finds the writer field that reader field f reads: same name,
// or a name among f's aliases.
func findField(fs []*avro.Field, f *avro.Field) *avro.Field {
	for _, g := range fs {
		if g.Name() == f.Name() || slices.Contains(f.Aliases(), g.Name()) {
			return g
		}
	}
	return nil
}

func promotes(w, r avro.Type) bool {
	switch w {
	case avro.Int:
		return r == avro.Long || r == avro.Float || r == avro.Double
	case avro.Long:
		return r == avro.Float || r == avro.Double
	case avro.Float:
		return r == avro.Double
	case avro.String:
		return r == avro.Bytes
	case avro.Bytes:
		return r == avro.String
	}
	return false
}

// describe names a schema's type briefly for messages.
func describe(s avro.Schema) string {
	s = deref(s)
	switch s := s.(type) {
	case avro.NamedSchema:
		return string(s.Type()) + " " + s.FullName()
	case *avro.ArraySchema:
		return "array of " + describe(s.Items())
	case *avro.MapSchema:
		return "map of " + describe(s.Values())
	case *avro.UnionSchema:
		parts := make([]string, len(s.Types()))
		for i, t := range s.Types() {
			parts[i] = describe(t)
		}
		return "union [" + strings.Join(parts, ", ") + "]"
	}
	return string(s.Type())
}
