package consumer

import (
	"strings"
	"testing"

	"github.com/interlock-go/interlock/producer"
)

// TestReplyValueFits: a reply fits in a record of the replies topic: the
// positions of a command's many events become the last of each partition,
// and a result too large is left out, the reply saying why.
func TestReplyValueFits(t *testing.T) {
	route, state := testRoute(t, "replies")
	p := testProcessor(route, state, Config{RepliesTopic: "replies"})
	p.limits.batch = defaultBatchBytes // as New sets it
	limit := p.limits.forTopic("replies")
	var ps []producer.Position
	for i := range int64(40_000) {
		ps = append(ps, producer.Position{Topic: "events", Partition: int32(i % 2), Offset: i})
	}
	for _, tc := range []struct {
		name       string
		result     string
		wantResult bool
	}{{"many events", `{"ok":true}`, true}, {"a large result", `"` + strings.Repeat("x", limit) + `"`, false}} {
		b := p.replyValue(&producer.Reply{Status: producer.Applied, CommandID: "c", Version: 9, Positions: ps, Result: []byte(tc.result)}, []byte("key"))
		if len(b) > limit {
			t.Fatalf("%s: %d bytes, over the limit of %d", tc.name, len(b), limit)
		}
		r, err := producer.DecodeReply(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Positions) != 2 || r.Positions[0].Offset != 39_998 || r.Positions[1].Offset != 39_999 {
			t.Errorf("%s: %d positions, want the last of each of the 2 partitions", tc.name, len(r.Positions))
		}
		if got := r.Result != nil; got != tc.wantResult || r.Status != producer.Applied || r.Version != 9 || tc.wantResult != (r.Reason == "") {
			t.Errorf("%s: status %s, version %d, result of %d bytes, reason %q", tc.name, r.Status, r.Version, len(r.Result), r.Reason)
		}
	}
}
