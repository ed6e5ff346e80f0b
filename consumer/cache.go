package consumer

import (
	"container/list"
	"time"

	"github.com/interlock-go/interlock/aggregate"
)

// entry is one aggregate held in memory.
type entry struct {
	part *partition
	inst *aggregate.Instance
	// last is the offset of the event that brought inst to its version,
	// -1 when unknown (a new aggregate).
	last int64
	// dirtyFrom is the offset of the first event not in a stored
	// snapshot, -1 when the aggregate is clean (safe in the store).
	dirtyFrom int64
	// pending counts the events since the last snapshot; since is the time
	// of the first of them.
	pending int64
	since   time.Time
	// size is the encoded size of the last snapshot, the cache's estimate
	// of the entry's weight.
	size int
	// stored is set for an entry loaded from a snapshot.
	stored bool
	elem   *list.Element
}

func (e *entry) dirty() bool { return e.dirtyFrom >= 0 }

// cache is the processor's bounded memory of aggregates across its
// partitions: least recently used first out, but only clean entries (whose
// state is safe in the snapshot store) are ever evicted.
type cache struct {
	lru   *list.List // of *entry, most recently used at the front
	bytes int64
}

func newCache() *cache { return &cache{lru: list.New()} }

func (c *cache) len() int { return c.lru.Len() }

// put adds e or marks it used.
func (c *cache) put(e *entry) {
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
		return
	}
	e.elem = c.lru.PushFront(e)
	c.bytes += int64(e.size)
}

func (c *cache) resize(e *entry, size int) {
	if e.elem != nil {
		c.bytes += int64(size - e.size)
	}
	e.size = size
}

func (c *cache) remove(e *entry) {
	if e.elem == nil {
		return
	}
	c.lru.Remove(e.elem)
	e.elem = nil
	c.bytes -= int64(e.size)
}

// evict removes clean entries, oldest first, until the cache is within its
// bounds or only dirty entries are left. With only set, it evicts entries of
// those partitions alone (the others may be pinned by the batch being
// prepared). It returns how many it removed.
func (c *cache) evict(maxCount int, maxBytes int64, only map[*partition]bool) int {
	n := 0
	for el := c.lru.Back(); el != nil && (c.lru.Len() > maxCount || c.bytes > maxBytes); {
		prev := el.Prev()
		e := el.Value.(*entry)
		if !e.dirty() && (only == nil || only[e.part]) {
			c.remove(e)
			delete(e.part.entries, e.inst.ID)
			n++
		}
		el = prev
	}
	return n
}

// dropPartition forgets every entry of part.
func (c *cache) dropPartition(part *partition) {
	for _, e := range part.entries {
		c.remove(e)
	}
}

// over reports whether the cache exceeds its bounds.
func (c *cache) over(maxCount int, maxBytes int64) bool {
	return c.lru.Len() > maxCount || c.bytes > maxBytes
}
