package producer

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
)

func TestCommandHeadersRoundTrip(t *testing.T) {
	c := aggregate.To(ulid.Make()).Expect(7)
	c.CommandID, c.CorrelationID, c.CausationID = ulid.Make(), "corr", "cause"
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	r := &kgo.Record{Key: []byte(c.AggregateID.String()), Headers: commandHeaders("Deposit", "account", "avro", c, 3, now, now.Add(time.Second))}
	h, err := ParseHeaders(r)
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != "Deposit" || h.AggregateType != "account" || h.Codec != "avro" || h.ReplyTo != 3 || !h.Time.Equal(now) ||
		h.Command.AggregateID != c.AggregateID || h.Command.CommandID != c.CommandID || h.Command.CorrelationID != "corr" ||
		h.Command.CausationID != "cause" || h.Command.ExpectedVersion == nil || *h.Command.ExpectedVersion != 7 ||
		!h.Deadline.Equal(now.Add(time.Second)) {
		t.Fatalf("parsed %+v from %+v", h, c)
	}
	r.Headers = commandHeaders("Deposit", "account", "avro", aggregate.Command{AggregateID: c.AggregateID, CommandID: c.CommandID}, -1, now, time.Time{})
	if h, err := ParseHeaders(r); err != nil || h.ReplyTo != -1 || h.Command.ExpectedVersion != nil || !h.Deadline.IsZero() {
		t.Fatalf("no reply, no expectation: %+v, %v", h, err)
	}
}

func TestParseHeadersErrors(t *testing.T) {
	id := ulid.Make().String()
	tests := []struct {
		name    string
		key     string
		headers map[string]string
		want    string
		// event: ParseEventHeaders reads this header too, and fails alike.
		event bool
	}{
		{"key not a ULID", "nope", map[string]string{HeaderType: "X"}, `record key "nope" is not an aggregate ID`, true},
		{"key with a bad character", "01ARZ3NDEKTSV4RRFFQ69G5FAU", map[string]string{HeaderType: "X"}, `is not an aggregate ID`, true},
		{"no type", id, nil, "header interlock-type is missing", true},
		{"bad command ID", id, map[string]string{HeaderType: "X", HeaderCommandID: "x"}, "header interlock-command-id", true},
		{"bad version", id, map[string]string{HeaderType: "X", HeaderVersion: "one"}, "header interlock-aggregate-version", true},
		{"negative expected version", id, map[string]string{HeaderType: "X", HeaderExpectedVersion: "-1"}, `"-1" is not a version`, false},
		{"bad reply partition", id, map[string]string{HeaderType: "X", HeaderReplyTo: "p"}, "is not a partition", false},
		{"bad time", id, map[string]string{HeaderType: "X", HeaderTime: "yesterday"}, "header interlock-time", false},
		{"bad deadline", id, map[string]string{HeaderType: "X", HeaderDeadline: "soon"}, "header interlock-deadline", false},
		{"bad event ID", id, map[string]string{HeaderType: "X", HeaderEventID: "e"}, "header interlock-event-id", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &kgo.Record{Key: []byte(tt.key)}
			for k, v := range tt.headers {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
			}
			if _, err := ParseHeaders(r); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseHeaders() = %v, want %q", err, tt.want)
			}
			_, err := ParseEventHeaders(r)
			if tt.event && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("ParseEventHeaders() = %v, want %q", err, tt.want)
			}
			if !tt.event && err != nil {
				t.Fatalf("ParseEventHeaders() = %v: it must not read that header", err)
			}
		})
	}
}

func TestParseEventHeaders(t *testing.T) {
	r := benchEvent()
	full, err := ParseHeaders(r)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseEventHeaders(r)
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != "MoneyDeposited" || h.Version != 1234 || string(h.Result) != `{"balance":3}` ||
		h.Command.AggregateID != full.Command.AggregateID || h.Command.CommandID != full.Command.CommandID || h.Command.CommandID == (ulid.ULID{}) {
		t.Fatalf("ParseEventHeaders = %+v, want the type, version, IDs and result of %+v", h, full)
	}
	if h.AggregateType != "" || !h.Time.IsZero() || h.EventID != (ulid.ULID{}) || h.Command.CorrelationID != "" {
		t.Fatalf("ParseEventHeaders decoded more than it says: %+v", h)
	}
}

func TestHeaderLookupAndResult(t *testing.T) {
	r := &kgo.Record{Key: []byte(ulid.Make().String()), Headers: []kgo.RecordHeader{
		{Key: HeaderType, Value: []byte("Deposited")}, {Key: HeaderResult, Value: []byte(`{"balance":3}`)},
	}}
	if v, ok := Header(r, HeaderType); !ok || string(v) != "Deposited" {
		t.Fatalf("Header(type) = %q, %v", v, ok)
	}
	if _, ok := Header(r, HeaderVersion); ok {
		t.Fatal("Header found a header that is not there")
	}
	if h, err := ParseHeaders(r); err != nil || string(h.Result) != `{"balance":3}` {
		t.Fatalf("ParseHeaders result = %q, %v", h.Result, err)
	}
}

func TestReplyPartitionIsStable(t *testing.T) {
	a, b := ReplyPartition("pod-1", 12), ReplyPartition("pod-1", 12)
	if a != b || a < 0 || a >= 12 {
		t.Fatalf("ReplyPartition = %d, %d", a, b)
	}
}

// benchEvent is an event record as a processor writes it, with a result.
func benchEvent() *kgo.Record {
	r := EventRecord("bank.events", 3, "avro", aggregate.EventEnvelope{
		EventID: ulid.Make(), AggregateType: "bank-account", AggregateID: ulid.Make(), Type: "MoneyDeposited",
		Version: 1234, Time: time.Now(), CommandID: ulid.Make(), CorrelationID: ulid.Make().String(), CausationID: ulid.Make().String(),
	}, []byte("value"))
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderResult, Value: []byte(`{"balance":3}`)})
	return r
}

func BenchmarkParseHeaders(b *testing.B) {
	r := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeaders(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEventRecord(b *testing.B) {
	env := aggregate.EventEnvelope{
		EventID: ulid.Make(), AggregateType: "bank-account", AggregateID: ulid.Make(), Type: "MoneyDeposited",
		Version: 1234, Time: time.Now(), CommandID: ulid.Make(), CorrelationID: ulid.Make().String(), CausationID: ulid.Make().String(),
	}
	value := []byte("value")
	b.ReportAllocs()
	for b.Loop() {
		EventRecord("bank.events", 3, "avro", env, value)
	}
}

func BenchmarkParseEventHeaders(b *testing.B) {
	r := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEventHeaders(r); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEventRecordRoundTrip(t *testing.T) {
	env := aggregate.EventEnvelope{
		EventID: ulid.Make(), AggregateType: "bank-account", AggregateID: ulid.Make(), Type: "MoneyDeposited",
		Version: 42, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)), CommandID: ulid.Make(),
		CorrelationID: "corr", CausationID: "",
	}
	r := EventRecord("t", 5, "avro", env, []byte("v"))
	h, err := ParseHeaders(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Key) != env.AggregateID.String() || r.Topic != "t" || r.Partition != 5 || string(r.Value) != "v" || !r.Timestamp.Equal(env.Time) ||
		h.Type != env.Type || h.AggregateType != env.AggregateType || h.Codec != "avro" || h.Version != 42 || h.EventID != env.EventID ||
		h.Command.AggregateID != env.AggregateID || h.Command.CommandID != env.CommandID || h.Command.CorrelationID != "corr" ||
		h.Command.CausationID != "" || !h.Time.Equal(env.Time) {
		t.Fatalf("parsed %+v from %+v", h, env)
	}
	// The values share a buffer: growing one must not change another.
	for i := range r.Headers {
		r.Headers[i].Value = append(r.Headers[i].Value, 'x')
	}
	r.Key = append(r.Key, 'x')
	want := map[string]string{
		HeaderType: "MoneyDepositedx", HeaderAggregateType: "bank-accountx", HeaderCodec: "avrox", HeaderVersion: "42x",
		HeaderEventID: env.EventID.String() + "x", HeaderCommandID: env.CommandID.String() + "x",
		HeaderCorrelationID: "corrx", HeaderCausationID: "x",
	}
	for k, v := range want {
		if got, _ := Header(r, k); string(got) != v {
			t.Fatalf("header %s = %q after appending to every value, want %q", k, got, v)
		}
	}
	if string(r.Key) != env.AggregateID.String()+"x" {
		t.Fatalf("key = %q after appending to every value", r.Key)
	}
}

func BenchmarkCommandHeaders(b *testing.B) {
	c := aggregate.To(ulid.Make()).Expect(7)
	c.CommandID, c.CorrelationID = ulid.Make(), ulid.Make().String()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		commandHeaders("DepositMoney", "bank-account", "avro", c, 3, now, now.Add(time.Second))
	}
}

// TestParseHeadersRepeated: a record that repeats headers (hostile or
// broken input) parses as if each header were read in order: the last
// value wins, however many there are.
func TestParseHeadersRepeated(t *testing.T) {
	r := &kgo.Record{Key: []byte(ulid.Make().String())}
	for i := range 20 {
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: HeaderType, Value: []byte(fmt.Sprintf("T%d", i))},
			kgo.RecordHeader{Key: HeaderCorrelationID, Value: []byte(fmt.Sprintf("c%d", i))})
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderCodec, Value: []byte("json")}, kgo.RecordHeader{Key: HeaderCausationID, Value: nil})
	for name, parse := range map[string]func(*kgo.Record) (Headers, error){"ParseHeaders": ParseHeaders, "ParseEventHeaders": ParseEventHeaders} {
		h, err := parse(r)
		if err != nil || h.Type != "T19" {
			t.Fatalf("%s: type %q, %v; want T19", name, h.Type, err)
		}
		if name == "ParseHeaders" && (h.Command.CorrelationID != "c19" || h.Codec != "json" || h.Command.CausationID != "") {
			t.Fatalf("%s: %+v", name, h)
		}
	}
}

type MoneyDeposited struct{ Amount int64 }

type account struct{ Balance int64 }

func testRoute(t testing.TB) *Route {
	t.Helper()
	d := aggregate.Define[account]("bank-account", aggregate.Apply(func(s *account, e MoneyDeposited) { s.Balance += e.Amount }))
	r, err := NewRoute(d, "bank.commands", "bank.events", "json", func(reflect.Type) (Serde, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A route parses its own events as ParseEventHeaders does, with the type
// name its own string: no allocation per event. A type it does not know
// (an old name an upcaster renames) is parsed as usual.
func TestRouteParseEvent(t *testing.T) {
	rt := testRoute(t)
	r := benchEvent()
	want, err := ParseEventHeaders(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rt.ParseEvent(r)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseEvent = %+v, %v; ParseEventHeaders = %+v", got, err, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { got, _ = rt.ParseEvent(r) }); allocs != 0 {
		t.Fatalf("%.1f allocations per event of a known type", allocs)
	}
	for i := range r.Headers {
		if r.Headers[i].Key == HeaderType {
			r.Headers[i].Value = []byte("FundsDeposited")
		}
	}
	if got, err := rt.ParseEvent(r); err != nil || got.Type != "FundsDeposited" {
		t.Fatalf("an unknown type: %+v, %v", got, err)
	}
	r.Headers = slices.DeleteFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == HeaderType })
	_, werr := ParseEventHeaders(r)
	if _, err := rt.ParseEvent(r); err == nil || err.Error() != werr.Error() {
		t.Fatalf("no type header: %v, want %v", err, werr)
	}
}

func BenchmarkRouteParseEvent(b *testing.B) {
	rt, r := testRoute(b), benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rt.ParseEvent(r); err != nil {
			b.Fatal(err)
		}
	}
}
