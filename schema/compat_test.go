package schema

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

// rec is a record schema bank.Ev with the given fields (JSON).
func rec(fields ...string) string {
	return `{"type":"record","name":"bank.Ev","fields":[` + strings.Join(fields, ",") + `]}`
}

const (
	fAmountLong   = `{"name":"amount","type":"long"}`
	fAmountInt    = `{"name":"amount","type":"int"}`
	fAmountString = `{"name":"amount","type":"string"}`
	fMemoOpt      = `{"name":"memo","type":["null","string"],"default":null}`
	fMemoReq      = `{"name":"memo","type":"string"}`
	fMemoDefault  = `{"name":"memo","type":"string","default":""}`
	fLevel2       = `{"name":"level","type":{"type":"enum","name":"bank.Level","symbols":["LOW","HIGH"]}}`
	fLevel3       = `{"name":"level","type":{"type":"enum","name":"bank.Level","symbols":["LOW","MID","HIGH"]}}`
	fTags         = `{"name":"tags","type":{"type":"array","items":"int"}}`
	fTagsStr      = `{"name":"tags","type":{"type":"array","items":"string"}}`
	fInner        = `{"name":"inner","type":{"type":"record","name":"bank.In","fields":[{"name":"x","type":"long"}]}}`
	fInnerY       = `{"name":"inner","type":{"type":"record","name":"bank.In","fields":[{"name":"x","type":"long"},{"name":"y","type":"long"}]}}`
	fHash4        = `{"name":"hash","type":{"type":"fixed","name":"bank.H","size":4}}`
	fHash8        = `{"name":"hash","type":{"type":"fixed","name":"bank.H","size":8}}`
	fMemoStrOrInt = `{"name":"memo","type":["null","string","int"],"default":null}`
	fNext         = `{"name":"next","type":["null","bank.Ev"],"default":null}`
)

func TestCompatible(t *testing.T) {
	renamed := `{"type":"record","name":"bank.Event","fields":[` + fAmountLong + `]}`
	aliased := `{"type":"record","name":"bank.Event","aliases":["bank.Ev"],"fields":[` + fAmountLong + `]}`
	tests := []struct {
		name  string
		level Compatibility
		old   []string
		next  string
		// want: "" for compatible, else the path and the rule (substring).
		path, rule string
		version    int
	}{
		{"same", BackwardTransitive, []string{rec(fAmountLong)}, rec(fAmountLong), "", "", 0},
		{"field added with default", BackwardTransitive, []string{rec(fAmountLong)}, rec(fAmountLong, fMemoOpt), "", "", 0},
		{"field added with string default", Backward, []string{rec(fAmountLong)}, rec(fAmountLong, fMemoDefault), "", "", 0},
		{"field added without default", BackwardTransitive, []string{rec(fAmountLong)}, rec(fAmountLong, fMemoReq),
			"bank.Ev.memo", "field added without a default: old data has no value for it", 1},
		{"field added without default, forward", Forward, []string{rec(fAmountLong)}, rec(fAmountLong, fMemoReq), "", "", 0},
		{"field removed", BackwardTransitive, []string{rec(fAmountLong, fMemoReq)}, rec(fAmountLong), "", "", 0},
		{"field removed, forward", Forward, []string{rec(fAmountLong, fMemoReq)}, rec(fAmountLong),
			"bank.Ev.memo", "field removed, but the old schema gives it no default", 1},
		{"field with default removed, full", Full, []string{rec(fAmountLong, fMemoOpt)}, rec(fAmountLong), "", "", 0},
		{"int to long", BackwardTransitive, []string{rec(fAmountInt)}, rec(fAmountLong), "", "", 0},
		{"long to int", BackwardTransitive, []string{rec(fAmountLong)}, rec(fAmountInt),
			"bank.Ev.amount", "type changed from long to int: long data cannot be read as int", 1},
		{"int to long, forward", Forward, []string{rec(fAmountInt)}, rec(fAmountLong),
			"bank.Ev.amount", "type changed from int to long: long data cannot be read as int", 1},
		{"long to string", Backward, []string{rec(fAmountLong)}, rec(fAmountString),
			"bank.Ev.amount", "type changed from long to string", 1},
		{"array items", Backward, []string{rec(fTags)}, rec(fTagsStr),
			"bank.Ev.tags[]", "type changed from int to string", 1},
		{"nested field added", Backward, []string{rec(fInner)}, rec(fInnerY),
			"bank.Ev.inner.y", "field added without a default", 1},
		{"enum symbol added", BackwardTransitive, []string{rec(fLevel2)}, rec(fLevel3), "", "", 0},
		{"enum symbol removed", BackwardTransitive, []string{rec(fLevel3)}, rec(fLevel2),
			"bank.Ev.level", "enum symbol MID removed", 1},
		{"enum symbol added, forward", Forward, []string{rec(fLevel2)}, rec(fLevel3),
			"bank.Ev.level", "enum symbol MID added: old readers do not know it", 1},
		{"fixed size", Backward, []string{rec(fHash4)}, rec(fHash8),
			"bank.Ev.hash", "fixed size changed from 4 to 8", 1},
		{"union branch removed", Backward, []string{rec(fAmountLong, fMemoStrOrInt)}, rec(fAmountLong, fMemoOpt),
			"bank.Ev.memo", "union branch int removed", 1},
		{"union branch added", Backward, []string{rec(fAmountLong, fMemoOpt)}, rec(fAmountLong, fMemoStrOrInt), "", "", 0},
		{"union branch added, forward", Forward, []string{rec(fAmountLong, fMemoOpt)}, rec(fAmountLong, fMemoStrOrInt),
			"bank.Ev.memo", "union branch int added: old readers do not know it", 1},
		{"record renamed", Backward, []string{rec(fAmountLong)}, renamed,
			"bank.Event", "renamed from bank.Ev to bank.Event", 1},
		{"record renamed with alias", Backward, []string{rec(fAmountLong)}, aliased, "", "", 0},
		// Backward checks the latest only; transitive, every version.
		{"chain, backward", Backward, []string{rec(fAmountLong), rec(fAmountLong, fMemoDefault)}, rec(fAmountLong, fMemoReq), "", "", 0},
		{"chain, transitive", BackwardTransitive, []string{rec(fAmountLong), rec(fAmountLong, fMemoDefault)}, rec(fAmountLong, fMemoReq),
			"bank.Ev.memo", "field added without a default", 1},
		{"none", None, []string{rec(fAmountLong)}, rec(fAmountString), "", "", 0},
		{"recursive, changed", Backward, []string{rec(fAmountLong, fNext)}, rec(fAmountLong, fNext, fMemoOpt),
			"bank.Ev", "a record that contains itself cannot be read with another version", 1},
		{"recursive, same", BackwardTransitive, []string{rec(fAmountLong, fNext)}, rec(fAmountLong, fNext), "", "", 0},
		{"recursive, none", None, []string{rec(fAmountLong, fNext)}, rec(fAmountLong, fNext, fMemoOpt), "", "", 0},
		// hamba/avro calls this compatible but cannot resolve it.
		{"promotion into a union", Backward, []string{rec(`{"name":"b","type":["int","double"]}`)}, rec(`{"name":"b","type":["null","double"],"default":null}`),
			"bank.Ev", "the Avro library cannot read data of the one as the other: avro: union type must be unique", 1},
		{"full: backward half", Full, []string{rec(fAmountLong)}, rec(fAmountLong, fMemoReq),
			"bank.Ev.memo", "field added without a default", 1},
		{"optional made required", Backward, []string{rec(fAmountLong, fMemoOpt)}, rec(fAmountLong, fMemoReq),
			"bank.Ev.memo", "type changed from union [null, string] to string: null data cannot be read as string", 1},
		{"full transitive: forward half", FullTransitive, []string{rec(fAmountLong, fMemoReq), rec(fAmountLong, fMemoDefault)}, rec(fAmountLong),
			"bank.Ev.memo", "field removed, but the old schema gives it no default", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var vs []Version
			for i, s := range tc.old {
				vs = append(vs, Version{Version: i + 1, ID: uint32(i + 1), Schema: s})
			}
			err := Compatible(tc.level, tc.next, vs)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("err = %v, want compatible", err)
				}
				return
			}
			var ie *IncompatibleError
			if !errors.As(err, &ie) || !errors.Is(err, ErrIncompatible) {
				t.Fatalf("err = %v, want an *IncompatibleError", err)
			}
			if ie.Path != tc.path || !strings.Contains(ie.Rule, tc.rule) || ie.Level != tc.level || ie.Version != tc.version {
				t.Errorf("got path %q, rule %q, level %v, version %d; want %q, %q, %v, %d", ie.Path, ie.Rule, ie.Level, ie.Version, tc.path, tc.rule, tc.level, tc.version)
			}
			want := fmt.Sprintf("schema: %s breaks %s compatibility with version %d: %s: ", fullName(mustParse(t, tc.next)), tc.level, tc.version, tc.path)
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err = %q, want it to start with %q", err, want)
			}
		})
	}
}

func mustParse(t *testing.T, s string) avro.Schema {
	t.Helper()
	sch, err := parseSchema(s)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// The rules explained agree with hamba/avro's verdict, which decides: the
// explanation never makes a compatible pair incompatible, and every
// incompatible pair gets a path and a rule of its own.
func TestExplainAgreesWithHamba(t *testing.T) {
	schemas := []string{
		rec(fAmountLong), rec(fAmountInt), rec(fAmountString), rec(fAmountLong, fMemoOpt), rec(fAmountLong, fMemoReq),
		rec(fAmountLong, fMemoDefault), rec(fLevel2), rec(fLevel3), rec(fTags), rec(fTagsStr), rec(fInner), rec(fInnerY),
		rec(fHash4), rec(fHash8), rec(fAmountLong, fMemoStrOrInt),
	}
	for _, r := range schemas {
		for _, w := range schemas {
			rs, ws := mustParse(t, r), mustParse(t, w)
			verdict := avro.NewSchemaCompatibility().Compatible(rs, ws)
			e := explainer{newIsReader: true, seen: map[[2]string]bool{}}
			_, rule := e.explain(rs, ws, "bank.Ev")
			if (verdict == nil) != (rule == "") {
				t.Errorf("reader %s, writer %s: hamba says %v, explanation %q", r, w, verdict, rule)
			}
		}
	}
}

func TestParseCompatibility(t *testing.T) {
	for c := BackwardTransitive; c <= None; c++ {
		for _, s := range []string{c.String(), strings.ToLower(c.String()), strings.ReplaceAll(strings.ToLower(c.String()), "_", "-")} {
			if got, err := ParseCompatibility(s); err != nil || got != c {
				t.Errorf("ParseCompatibility(%q) = %v, %v; want %v", s, got, err, c)
			}
		}
	}
	if _, err := ParseCompatibility("SIDEWAYS"); err == nil || !strings.Contains(err.Error(), "BACKWARD_TRANSITIVE") {
		t.Errorf("err = %v", err)
	}
	if Compatibility(0) != BackwardTransitive {
		t.Error("the zero value is not BackwardTransitive")
	}
}

// A recursive type whose schema changed cannot be read: a clear error, not
// the stack overflow hamba/avro's resolution would be.
func TestDecodeRecursiveWriter(t *testing.T) {
	type Ev struct {
		Amount int64   `avro:"amount"`
		Next   *Ev     `avro:"next"`
		Memo   *string `avro:"memo"`
	}
	reg := mapRegistry{3: rec(fAmountLong, fNext)}
	s, err := Avro(AvroNamespace("bank"), AvroRegistry(reg)).For(reflect.TypeFor[Ev]())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Decode([]byte{0, 0, 0, 0, 3, 2, 0})
	if !errors.Is(err, ErrDecode) || !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "contains itself") {
		t.Errorf("err = %v", err)
	}
	// The same canonical form reads with the Serde's own decoder.
	reg[4] = `{"type":"record","name":"bank.Ev","doc":"same bytes","fields":[{"name":"amount","type":"long"},{"name":"next","type":["null","bank.Ev"],"default":null},{"name":"memo","type":["null","string"],"default":null}]}`
	v, err := s.Decode([]byte{0, 0, 0, 0, 4, 2, 2, 4, 0, 0, 0})
	if err != nil || v.(*Ev).Amount != 1 || v.(*Ev).Next == nil || v.(*Ev).Next.Amount != 2 {
		t.Errorf("got %+v, %v", v, err)
	}
}

// A named type used twice (a reference, not recursion) evolves: both uses
// resolve.
func TestDecodeReusedNamedType(t *testing.T) {
	type Addr struct {
		Street string  `avro:"street"`
		Zip    *string `avro:"zip"` // added
	}
	type Moved struct {
		From Addr   `avro:"from"`
		To   []Addr `avro:"to"`
	}
	writer := `{"type":"record","name":"bank.Moved","fields":[
		{"name":"from","type":{"type":"record","name":"bank.Addr","fields":[{"name":"street","type":"string"},{"name":"old","type":"int"}]}},
		{"name":"to","type":{"type":"array","items":"bank.Addr"}}]}`
	s, err := Avro(AvroNamespace("bank"), AvroRegistry(mapRegistry{5: writer})).For(reflect.TypeFor[Moved]())
	if err != nil {
		t.Fatal(err)
	}
	if err := Compatible(BackwardTransitive, s.Schema(), []Version{{Version: 1, ID: 5, Schema: writer}}); err != nil {
		t.Fatal(err)
	}
	// from = {"a", 1}, to = [{"b", 2}]
	b := []byte{0, 0, 0, 0, 5, 2, 'a', 2, 2, 2, 'b', 4, 0}
	v, err := s.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(*Moved); m.From.Street != "a" || len(m.To) != 1 || m.To[0].Street != "b" || m.From.Zip != nil || m.To[0].Zip != nil {
		t.Errorf("got %+v", m)
	}
}
