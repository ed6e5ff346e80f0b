package upcasttest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-go/interlock/schema"
)

// Version 1 of the event, as it was recorded in testdata/deposited-v1.avro.
type depositedV1 struct {
	Amount int32  `avro:"amount"`
	Teller string `avro:"teller"`
}

func (depositedV1) AvroSchema() string {
	return `{"type":"record","name":"bank.Deposited","fields":[{"name":"amount","type":"int"},{"name":"teller","type":"string"}]}`
}

// The current event, renamed and reshaped.
type Deposited struct {
	Cents int64   `avro:"cents"`
	By    *string `avro:"by"`
}

func toCurrent(e depositedV1) (Deposited, error) {
	return Deposited{Cents: int64(e.Amount) * 100, By: &e.Teller}, nil
}

// recorder keeps what Check reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestCheck(t *testing.T) {
	codec := schema.Avro()
	ups, err := schema.NewUpcasters(codec, schema.Upcast(toCurrent).RecordedAs("Deposited"))
	if err != nil {
		t.Fatal(err)
	}
	rec := Recorded(t, "testdata/deposited-v1.avro", codec, depositedV1{Amount: 7, Teller: "ann"})
	ann := "ann"
	Check(t, ups, codec, Case{Name: "Deposited", Record: rec, Want: Deposited{Cents: 700, By: &ann}})

	// Check fails a wrong expectation and a record that does not decode.
	r := &recorder{TB: t}
	Check(r, ups, codec,
		Case{Name: "Deposited", Record: rec, Want: Deposited{Cents: 1}},
		Case{Name: "Deposited", Record: rec[:len(rec)-1], Want: Deposited{}},
		Case{Name: "Deposited", Record: rec},
	)
	want := []string{"case 0 (Deposited): got upcasttest.Deposited", "case 1 (Deposited): ", "case 2 (Deposited): no Want"}
	if len(r.errs) != len(want) {
		t.Fatalf("reported %q", r.errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(r.errs[i], w) {
			t.Errorf("report %d = %q, want %q", i, r.errs[i], w)
		}
	}
}

func TestRecorded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "e.avro")
	first := Recorded(t, path, schema.Avro(), depositedV1{Amount: 1})
	if b, err := os.ReadFile(path); err != nil || string(b) != string(first) {
		t.Fatalf("file holds %x, %v", b, err)
	}
	// Recorded once: a new value does not overwrite it.
	if again := Recorded(t, path, schema.Avro(), depositedV1{Amount: 2}); string(again) != string(first) {
		t.Error("the record changed")
	}
}
