package producer_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/producer"
)

// FuzzParseHeaders: whatever the key and headers of a record, parsing
// them gives an envelope or an error naming what is wrong, never a panic;
// the lean parse of the replay agrees with the full one on what it reads.
func FuzzParseHeaders(f *testing.F) {
	f.Add("01J00000000000000000000000", "MoneyDeposited", "3", "01J00000000000000000000001", "2026-11-26T01:00:00Z", "0")
	f.Add("not-a-ulid", "", "-1", "x", "yesterday", "99999999999")
	f.Add("01J00000000000000000000000", "T", "9223372036854775807", "", "", "")
	f.Fuzz(func(t *testing.T, key, typ, version, commandID, at, replyTo string) {
		r := &kgo.Record{Key: []byte(key), Headers: []kgo.RecordHeader{
			{Key: producer.HeaderType, Value: []byte(typ)},
			{Key: producer.HeaderVersion, Value: []byte(version)},
			{Key: producer.HeaderCommandID, Value: []byte(commandID)},
			{Key: producer.HeaderTime, Value: []byte(at)},
			{Key: producer.HeaderReplyTo, Value: []byte(replyTo)},
			{Key: producer.HeaderDeadline, Value: []byte(at)},
			{Key: producer.HeaderExpectedVersion, Value: []byte(version)},
		}}
		full, err := producer.ParseHeaders(r)
		// ULIDs parse in either case.
		if err == nil && (full.Type != typ || !strings.EqualFold(full.Command.AggregateID.String(), key)) {
			t.Fatalf("parsed %+v from type %q, key %q", full, typ, key)
		}
		lean, lerr := producer.ParseEventHeaders(r)
		if lerr == nil && err == nil && (lean.Type != full.Type || lean.Version != full.Version || lean.Command.CommandID != full.Command.CommandID) {
			t.Fatalf("lean parse %+v disagrees with the full one %+v", lean, full)
		}
	})
}
