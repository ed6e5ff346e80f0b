package producer

import (
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
	}{
		{"key not a ULID", "nope", map[string]string{HeaderType: "X"}, `record key "nope" is not an aggregate ID`},
		{"no type", id, nil, "header interlock-type is missing"},
		{"bad command ID", id, map[string]string{HeaderType: "X", HeaderCommandID: "x"}, "header interlock-command-id"},
		{"bad version", id, map[string]string{HeaderType: "X", HeaderVersion: "one"}, "header interlock-aggregate-version"},
		{"negative expected version", id, map[string]string{HeaderType: "X", HeaderExpectedVersion: "-1"}, `"-1" is not a version`},
		{"bad reply partition", id, map[string]string{HeaderType: "X", HeaderReplyTo: "p"}, "is not a partition"},
		{"bad time", id, map[string]string{HeaderType: "X", HeaderTime: "yesterday"}, "header interlock-time"},
		{"bad deadline", id, map[string]string{HeaderType: "X", HeaderDeadline: "soon"}, "header interlock-deadline"},
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
		})
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
