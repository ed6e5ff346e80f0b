package projections

import (
	"errors"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDLQIndexParked: a record parked is held, itself and its key's later
// records, however often it is parked, until a resolution covers it; then
// it is no longer parked, and a record of its key parked after the
// resolution is, itself included.
func TestDLQIndexParked(t *testing.T) {
	pr := &Projector{cfg: Config{DeadLetterTopic: "dlq"}}
	x := newDLQIndex()
	event := func(offset int64) *kgo.Record {
		return &kgo.Record{Topic: "events", Partition: 2, Offset: offset, Key: []byte("acct")}
	}
	next := int64(0)
	write := func(r *kgo.Record) *kgo.Record { // as the dead-letter topic would hold it
		r.Offset, next = next, next+1
		x.add(r)
		return r
	}
	first, later := event(10), event(11)
	dl := write(pr.deadLetter(first, errors.New("boom")))
	write(pr.deadLetter(first, errors.New("boom again"))) // parked again, after a batch given back
	if !x.isParked(first) || x.isParked(later) {
		t.Fatalf("parked: first %v, later %v; want only the first", x.isParked(first), x.isParked(later))
	}
	if from, ok := x.heldFrom("acct"); !ok || from != 10 {
		t.Fatalf("held from %d, %v; want 10", from, ok)
	}
	write(&kgo.Record{Topic: "dlq", Key: []byte("acct"), Headers: []kgo.RecordHeader{
		{Key: HeaderDLQResolved, Value: []byte("1")}, {Key: HeaderDLQCovers, Value: strconv.AppendInt(nil, dl.Offset+1, 10)}}})
	if x.isParked(first) {
		t.Fatal("still parked after its resolution")
	}
	if _, ok := x.heldFrom("acct"); ok {
		t.Fatal("the key is still held after its resolution")
	}
	write(pr.deadLetter(later, errors.New("boom")))
	if !x.isParked(later) || x.isParked(first) {
		t.Fatalf("after a later park: first %v, later %v; want only the later", x.isParked(first), x.isParked(later))
	}
	// Applied again after a crash, the first fails again: parked again, it
	// holds its key again, from its own offset.
	write(pr.deadLetter(first, errors.New("boom once more")))
	if from, ok := x.heldFrom("acct"); !x.isParked(first) || !ok || from != 10 {
		t.Fatalf("parked again after its resolution: parked %v, held from %d (%v); want parked, the key held", x.isParked(first), from, ok)
	}
	if n := len(x.parked["acct"]); n != 2 {
		t.Fatalf("%d records of the key parked, want 2", n)
	}
}
