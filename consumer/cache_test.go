package consumer

import (
	"math"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
)

func testEntry(part *partition, dirtyFrom int64, size int) *entry {
	id := ulid.Make()
	e := &entry{part: part, inst: &aggregate.Instance{ID: id}, last: -1, dirtyFrom: dirtyFrom, size: size}
	part.entries[id] = e
	if dirtyFrom >= 0 {
		part.dirty[id] = e
	}
	return e
}

func testPartition() *partition {
	return &partition{entries: map[ulid.ULID]*entry{}, dirty: map[ulid.ULID]*entry{}, broken: map[ulid.ULID]error{}, floor: math.MaxInt64}
}

func TestCacheEvictsOnlyCleanEntriesOldestFirst(t *testing.T) {
	c := newCache()
	a, b := testPartition(), testPartition()
	oldClean := testEntry(a, -1, 10)
	dirty := testEntry(a, 5, 10)
	otherPart := testEntry(b, -1, 10)
	newClean := testEntry(a, -1, 10)
	for _, e := range []*entry{oldClean, dirty, otherPart, newClean} {
		c.put(e)
	}
	if c.len() != 4 || c.bytes != 40 {
		t.Fatalf("len %d bytes %d", c.len(), c.bytes)
	}
	// Only partition a's entries may go: the dirty one stays.
	if n := c.evict(2, 1<<20, map[*partition]bool{a: true}); n != 2 || a.entries[oldClean.inst.ID] != nil || a.entries[newClean.inst.ID] != nil || a.entries[dirty.inst.ID] == nil {
		t.Fatalf("evicted %d; left in a: %d entries", n, len(a.entries))
	}
	if b.entries[otherPart.inst.ID] == nil {
		t.Fatal("an entry of another partition was evicted")
	}
	c.resize(dirty, 100)
	if c.bytes != 110 {
		t.Fatalf("bytes %d after resize, want 110", c.bytes)
	}
	if n := c.evict(10, 50, nil); n != 1 || c.len() != 1 || c.bytes != 100 {
		t.Fatalf("byte bound: evicted %d, left %d entries of %d bytes", n, c.len(), c.bytes)
	}
}

func TestWatermark(t *testing.T) {
	part := testPartition()
	part.position = 100
	if w := part.watermark(nil); w != 100 {
		t.Fatalf("nothing dirty: W = %d, want the position", w)
	}
	e1 := testEntry(part, 40, 0)
	testEntry(part, 70, 0)
	if w := part.watermark(nil); w != 40 {
		t.Fatalf("W = %d, want the first dirty offset 40", w)
	}
	if w := part.watermark(map[*entry]bool{e1: true}); w != 70 {
		t.Fatalf("writing the first dirty entry: W = %d, want 70", w)
	}
	part.floor = 20
	if w := part.watermark(nil); w != 20 {
		t.Fatalf("with a broken aggregate at 20: W = %d", w)
	}
}
