package projections

import (
	"math"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/producer"
)

// dlqIndex is what a projector knows of its dead-letter topic, read from
// its start at Start and then followed: the events parked per key (each
// once, in order), the retry requests not yet answered, and how far each
// partition of the topic has been read. Guarded by Projector.mu.
type dlqIndex struct {
	parked  map[string][]*kgo.Record   // by key, unresolved, in order
	open    map[producer.Position]bool // the original positions in parked
	pending map[int64]*kgo.Record      // retry requests by offset, unanswered
	read    map[int32]int64            // next offset read, per partition
}

func newDLQIndex() *dlqIndex {
	return &dlqIndex{parked: map[string][]*kgo.Record{}, open: map[producer.Position]bool{},
		pending: map[int64]*kgo.Record{}, read: map[int32]int64{}}
}

// add folds one record of the dead-letter topic into the index. It
// returns whether the record is a retry request.
func (x *dlqIndex) add(r *kgo.Record) (request bool) {
	x.read[r.Partition] = max(x.read[r.Partition], r.Offset+1)
	key := string(r.Key)
	switch {
	case hasHeader(r, HeaderDLQRetry):
		x.pending[r.Offset] = r
		return true
	case hasHeader(r, HeaderDLQResolved), hasHeader(r, HeaderDLQFailed):
		if req, err := strconv.ParseInt(header(r, HeaderDLQRequest), 10, 64); err == nil {
			delete(x.pending, req)
		}
		if !hasHeader(r, HeaderDLQResolved) {
			return false
		}
		// A resolution covers the parked records up to the offset it
		// names (all of them when it names none): a record parked after
		// it keeps the key held.
		upTo, err := strconv.ParseInt(header(r, HeaderDLQCovers), 10, 64)
		if err != nil {
			upTo = r.Offset
		}
		kept := x.parked[key][:0]
		for _, p := range x.parked[key] {
			if p.Offset > upTo {
				kept = append(kept, p)
			} else {
				delete(x.open, positionOf(original(p)))
			}
		}
		if len(kept) == 0 {
			delete(x.parked, key)
		} else {
			x.parked[key] = kept
		}
	default:
		// A parked event: once while it is unresolved, however often it
		// was parked (a park is written before the batch that moves past
		// it commits); parked again after its resolution (applied again
		// after a crash, and failing again), it holds its key again.
		pos := positionOf(original(r))
		if !x.open[pos] {
			x.open[pos] = true
			x.parked[key] = append(x.parked[key], r)
		}
	}
	return false
}

// heldFrom returns the offset, in its own topic, of key's first parked
// event: the key's later events wait behind it. (Parks come in offset
// order, but for an event parked again after its resolution.)
func (x *dlqIndex) heldFrom(key string) (int64, bool) {
	ps := x.parked[key]
	if len(ps) == 0 {
		return 0, false
	}
	from := int64(math.MaxInt64)
	for _, p := range ps {
		from = min(from, originalOffset(p))
	}
	return from, true
}

// isParked reports whether r itself is parked and not yet resolved.
func (x *dlqIndex) isParked(r *kgo.Record) bool { return x.open[positionOf(r)] }

func positionOf(r *kgo.Record) producer.Position {
	return producer.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
}
