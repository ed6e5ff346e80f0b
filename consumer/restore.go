package consumer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/acl"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/snapshot"
)

// errUntrusted says the snapshot store's view of a partition disagrees
// with the log (a missing, stale or unreadable snapshot below the
// watermark): the partition must be rebuilt from the whole log.
var errUntrusted = errors.New("snapshot store inconsistent with the log")

// prepare makes w's partition ready for its records: restored, and every
// aggregate they address in memory (or known to be new).
func (p *Processor) prepare(ctx context.Context, w *work) error {
	for range 3 {
		part := w.part
		if !part.restored.Load() {
			// Every owned partition that waits for its restore comes
			// along: one replay reads them all at once.
			errs := p.restore(ctx, p.unrestored(part))
			for o, err := range errs {
				if o != part {
					p.log.Warn("interlock: restoring a partition; will retry", "partition", o.sp.String(), "err", err)
				}
			}
			if err := errs[part]; err != nil {
				return err
			}
		}
		if part.token == 0 {
			return nil // the whole partition is in memory
		}
		var missing []ulid.ULID
		seen := map[ulid.ULID]bool{}
		for _, r := range w.records {
			id, err := ulid.ParseStrict(string(r.Key))
			if err != nil || seen[id] || part.entries[id] != nil || part.broken[id] != nil {
				continue
			}
			seen[id] = true
			missing = append(missing, id)
		}
		if len(missing) == 0 || p.load(ctx, part, missing) {
			return nil
		}
		w.part = p.rebuild(part)
	}
	return fmt.Errorf("partition %s: cannot rebuild its aggregates", w.part.sp)
}

// forgetStored has the store forget part's watermark and snapshots,
// which belong to an events partition since deleted: kept, the watermark
// would be trusted once the new partition grows past it.
func (p *Processor) forgetStored(ctx context.Context, part *partition) {
	rs, ok := p.cfg.Store.(snapshot.Resetter)
	if !ok {
		p.log.Error("interlock: the snapshot store cannot forget the old watermark; delete its keys of the partition, or a later owner may trust it", "partition", part.sp.String())
		return
	}
	if part.token == 0 {
		return // not claimed: this owner does not use the store
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	err := rs.Reset(sctx, part.sp, part.token)
	cancel()
	p.storeResult("reset", err)
	if err != nil {
		p.log.Error("interlock: the snapshot store did not forget the old watermark; a later owner may trust it until it does", "partition", part.sp.String(), "err", err)
	}
}

// claim makes this processor the owner of part in the store.
func (p *Processor) claim(ctx context.Context, part *partition) (snapshot.Mark, bool) {
	if !p.snapshots(part) || !p.storeOK() {
		return snapshot.Mark{}, false
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	mark, err := p.cfg.Store.Claim(sctx, part.sp)
	cancel()
	p.storeResult("claim", err)
	if err != nil {
		return snapshot.Mark{}, false
	}
	part.token = mark.Token
	return mark, true
}

// load reads the snapshots of ids into part. It reports false when the
// store cannot be trusted for part (unreachable, lost its data, another
// owner, an unusable snapshot): the caller rebuilds part from the log.
func (p *Processor) load(ctx context.Context, part *partition, ids []ulid.ULID) bool {
	if !p.storeOK() {
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	snaps, mark, err := p.cfg.Store.Load(sctx, part.sp, ids)
	cancel()
	p.storeResult("load", err)
	if err != nil {
		return false
	}
	if mark.Token != part.token {
		p.log.Warn("interlock: the snapshot store lost this partition's data or gave it to another owner; rebuilding it from the log", "partition", part.sp.String())
		return false
	}
	if part.savedW > 0 && (!mark.HasWatermark || mark.Watermark < part.savedW) {
		// Our claim, but an older state of it: a store restarted from an
		// older dump, whose snapshots may be older than what we wrote.
		p.log.Warn("interlock: the snapshot store went back in time (restarted from an older dump?); rebuilding the partition from the log", "partition", part.sp.String(),
			"watermark", mark.Watermark, "stored", part.savedW)
		return false
	}
	p.stats.misses.Add(int64(len(ids) - len(snaps)))
	for id, s := range snaps {
		e, err := p.fromSnapshot(part, s)
		if err != nil {
			p.stats.ignored.Add(1)
			p.log.Warn("interlock: ignoring a snapshot; rebuilding the partition from the log", "partition", part.sp.String(), "aggregate_id", id, "err", err)
			return false
		}
		part.entries[id] = e
		p.cache.put(e)
		p.stats.loaded.Add(1)
	}
	return true
}

// fromSnapshot returns the clean cache entry of a stored snapshot.
func (p *Processor) fromSnapshot(part *partition, s snapshot.Snapshot) (*entry, error) {
	if s.Fingerprint != part.agg.Fingerprint {
		return nil, fmt.Errorf("snapshot of another state type (fingerprint %x, want %x)", s.Fingerprint, part.agg.Fingerprint)
	}
	if s.Version < 1 || s.Offset < 0 {
		return nil, fmt.Errorf("snapshot at version %d, offset %d", s.Version, s.Offset)
	}
	state, recent, err := decodeFrame(s.State)
	if err != nil {
		return nil, err
	}
	ptr, err := part.agg.State.Decode(state)
	if err != nil {
		return nil, err
	}
	inst, err := part.route.Type.Restore(s.AggregateID, s.Version, ptr)
	if err != nil {
		return nil, err
	}
	inst.Recent = recent
	return &entry{part: part, inst: inst, last: s.Offset, dirtyFrom: -1, size: len(s.State), stored: true}, nil
}

// errPastEnd says a partition's watermark is past the end of its events
// partition (the topic was recreated): it is replayed from its start.
var errPastEnd = errors.New("snapshot watermark past the end of the events partition")

// restoring is one partition's share of a restore.
type restoring struct {
	part *partition
	// from is where the replay starts, end where the partition ended when
	// the restore began (-1 until listed), next the next offset to fold.
	from, end, next int64
	events          int64 // events folded
	progress        time.Time
	done            bool
	// evicted is set once the replay evicted aggregates from memory:
	// from then on, as from a watermark, an aggregate not in memory may
	// have its state in the store.
	evicted bool
	took    time.Duration
	err     error
}

// restore rebuilds parts together: it claims each partition in the store,
// then one client replays their events partitions at once, each from the
// store's watermark (from the start when there is none, or when the store
// proves inconsistent) up to the end the partition has now, loading the
// snapshots of the aggregates it meets. Reading every partition in one
// client overlaps their fetches with the fold: several partitions restore
// about as fast as one partition holding all their events, where one
// after another each paid its own client, metadata and fetch round trips.
// A previous owner's open transaction makes its partition wait until that
// transaction ends; the others go on. It returns the error of each
// partition it could not restore (the others are restored).
func (p *Processor) restore(ctx context.Context, parts []*partition) map[*partition]error {
	started := time.Now()
	rs := make([]*restoring, len(parts))
	for i, part := range parts {
		p.stats.restores.Add(1)
		p.clearPartition(part) // a failed earlier attempt may have left state
		r := &restoring{part: part, end: -1}
		if mark, ok := p.claim(ctx, part); ok && mark.HasWatermark && !part.full {
			r.from, part.savedW = mark.Watermark, mark.Watermark
		}
		rs[i] = r
	}
	errs := map[*partition]error{}
	if err := p.replay(ctx, rs, started); err != nil {
		for _, part := range parts {
			errs[part] = err
		}
		return errs
	}
	var again []*restoring
	for _, r := range rs {
		switch {
		case errors.Is(r.err, errPastEnd):
			p.log.Warn("interlock: the snapshot watermark is past the end of the events partition (was the topic recreated?); replaying it all", "partition", r.part.sp.String(), "watermark", r.from, "end", r.end)
			p.forgetStored(ctx, r.part)
		case errors.Is(r.err, errUntrusted) && r.from > 0:
			p.stats.ignored.Add(1)
			p.log.Warn("interlock: snapshots disagree with the log; replaying the partition from its start", "partition", r.part.sp.String(), "err", r.err)
		default:
			continue
		}
		p.clearPartition(r.part)
		r.from, r.err = 0, nil
		again = append(again, r)
	}
	if len(again) > 0 {
		if err := p.replay(ctx, again, started); err != nil {
			for _, r := range again {
				r.err = err
			}
		}
	}
	for _, r := range rs {
		part := r.part
		if r.err != nil {
			errs[part] = r.err
			continue
		}
		if r.from == 0 && r.end > 0 {
			p.stats.fullReplays.Add(1)
		}
		part.position = max(part.position, r.end)
		p.mu.Lock() // Ready asks from other goroutines
		part.restored.Store(true)
		p.mu.Unlock()
		p.log.Info("interlock: partition restored", "partition", part.sp.String(), "from", r.from, "end", r.end,
			"events", r.events, "aggregates", len(part.entries), "took", r.took.Round(time.Millisecond))
		p.observeRestore(Restore{Topic: part.sp.Topic, Partition: part.id, From: r.from, Events: r.events, Duration: r.took})
	}
	p.stats.cached.Store(int64(p.cache.len()))
	return errs
}

// unrestored returns part and every other owned partition not yet
// restored, to restore them together.
func (p *Processor) unrestored(part *partition) []*partition {
	out := []*partition{part}
	for _, o := range p.owned() {
		if o != part && !o.restored.Load() {
			out = append(out, o)
		}
	}
	return out
}

// clearPartition forgets every aggregate of part, before it is rebuilt.
func (p *Processor) clearPartition(part *partition) {
	p.cache.dropPartition(part)
	clear(part.entries)
	clear(part.dirty)
	clear(part.broken)
	part.floor, part.savedW, part.position = math.MaxInt64, 0, 0
}

// replay folds the committed events of each partition of rs in
// [from, end) into its entries, reading them all with one client; the
// loop folds each partition's records in order. From a watermark
// (from > 0), the aggregates it meets start from their snapshots. The end
// of a partition whose end is not known yet is listed first. A partition
// that fails gets its error in its restoring and no more of its records
// are read; the error returned is the client's, which stops them all.
func (p *Processor) replay(ctx context.Context, rs []*restoring, started time.Time) error {
	offsets := map[string]map[int32]kgo.Offset{}
	byTP := make(map[topicPartition]*restoring, len(rs))
	var topics []string
	for _, r := range rs {
		t := r.part.sp.Topic
		if offsets[t] == nil {
			offsets[t] = map[int32]kgo.Offset{}
			topics = append(topics, t)
		}
		offsets[t][r.part.id] = kgo.NewOffset().At(r.from)
		byTP[topicPartition{t, r.part.id}] = r
		r.next, r.done = r.from, false
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), p.cfg.ClientOpts...),
		kgo.ConsumePartitions(offsets),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // to see where the partition ends
		kgo.FetchMaxWait(200*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("replay client: %w", err)
	}
	defer cl.Close()
	// finish stops reading r's partition.
	finish := func(r *restoring, err error) {
		r.done, r.err, r.took = true, err, time.Since(started)
		cl.RemoveConsumePartitions(map[string][]int32{r.part.sp.Topic: {r.part.id}})
	}
	// The end is listed while the client already fetches from the start.
	var ends kadm.ListedOffsets
	for _, r := range rs {
		if r.end >= 0 {
			continue
		}
		if ends == nil {
			ends, err = kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
			if err == nil {
				err = ends.Error()
			}
			if err != nil {
				return fmt.Errorf("listing the end of %s: %w", strings.Join(topics, ", "), err)
			}
		}
		end, ok := ends.Lookup(r.part.sp.Topic, r.part.id)
		if !ok {
			return fmt.Errorf("listing the end of %s: no offset for partition %d", r.part.sp.Topic, r.part.id)
		}
		r.end = end.Offset
	}
	active := 0
	now := time.Now()
	for _, r := range rs {
		switch {
		case r.from > r.end:
			finish(r, errPastEnd)
		case r.from == r.end:
			finish(r, nil)
		default:
			active++
			r.progress = now
		}
	}
	restoring := make(map[*partition]bool, len(rs))
	for _, r := range rs {
		restoring[r.part] = true
	}
	stall := p.cfg.TransactionTimeout * 3
	var batch []*kgo.Record
	for active > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		var denied error
		fs.EachError(func(t string, id int32, err error) {
			switch {
			case acl.Denied(err):
				denied = acl.FetchError(p.cfg.Group, t, err)
			case !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
				p.log.Warn("interlock: replaying events", "topic", t, "partition", id, "err", err)
			}
		})
		if denied != nil {
			return denied // no retry passes it: the caller stops
		}
		now := time.Now()
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			r := byTP[topicPartition{ftp.Topic, ftp.Partition}]
			if r == nil || r.done {
				return
			}
			batch = batch[:0]
			from := r.next
			for _, rec := range ftp.Records {
				if rec.Offset >= r.end {
					// Read to the end: what it has not seen below it was
					// aborted (a read_committed reader never gets it), by a
					// transaction that ended past the end, as the broker
					// does to a dead owner's when it times out.
					r.next = r.end
					break
				}
				if rec.Offset >= r.next {
					r.next = rec.Offset + 1
					if !rec.Attrs.IsControl() {
						batch = append(batch, rec)
					}
				}
			}
			if r.next == from {
				return
			}
			r.progress = now
			err := p.fold(ctx, r.part, batch, now, r.from > 0 || r.evicted)
			r.events += int64(len(batch))
			if err != nil || r.next >= r.end {
				finish(r, err)
				active--
			}
		})
		for _, r := range rs {
			if !r.done && now.Sub(r.progress) > stall {
				finish(r, fmt.Errorf("events %s: no progress past offset %d (end %d) for %v: is a transaction of a previous owner still open?", r.part.sp, r.next, r.end, stall))
				active--
			}
		}
		if p.cache.over(p.cfg.MaxCached, p.cfg.MaxCachedBytes) {
			for _, r := range rs {
				if r.err != nil {
					continue // its state is dropped and rebuilt
				}
				part := r.part
				part.position = max(part.position, r.next)
				es := make([]*entry, 0, len(part.dirty))
				for _, e := range part.dirty {
					es = append(es, e)
				}
				p.flush(ctx, part, es)
			}
			// Only the partitions being restored: the others' entries
			// may be pinned by the batch being prepared.
			if n := p.cache.evict(p.cfg.MaxCached, p.cfg.MaxCachedBytes, restoring); n > 0 {
				p.stats.evictions.Add(int64(n))
				for _, r := range rs {
					r.evicted = true
				}
			}
		}
	}
	return nil
}

// fold folds one fetched batch of part's event records, in order. With
// stored set, aggregates met past their first event and not in memory have
// their state in the store: below the watermark, or evicted earlier in this
// replay after being written. Without it (a replay from the start that has
// evicted nothing) every aggregate met is in memory or new, but for a log
// whose start was deleted: looking for them ahead would cost about 15 % of
// the fold, so the rare one is loaded when met.
func (p *Processor) fold(ctx context.Context, part *partition, batch []*kgo.Record, now time.Time, stored bool) error {
	if part.token != 0 && stored {
		var missing []ulid.ULID
		seen := map[ulid.ULID]bool{} // missing, or created by its first event in this batch
		for _, r := range batch {
			id, err := ulid.ParseStrict(string(r.Key))
			if err != nil || seen[id] || part.entries[id] != nil || part.broken[id] != nil {
				continue
			}
			seen[id] = true
			if !firstEvent(r) {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 && !p.load(ctx, part, missing) {
			return errUntrusted
		}
	}
	for _, r := range batch {
		err := p.replayOne(part, r, now)
		var missing *notInMemoryError
		if !stored && errors.As(err, &missing) {
			// A log without the aggregate's first event (its start
			// deleted): the store's snapshot, if any, is where it starts.
			if !p.load(ctx, part, []ulid.ULID{missing.id}) {
				return errUntrusted
			}
			err = p.replayOne(part, r, now)
		}
		if err != nil {
			return err
		}
	}
	p.stats.replayed.Add(int64(len(batch)))
	return nil
}

// notInMemoryError is an event of an aggregate that is neither in memory
// nor new, in a partition whose other aggregates are in the store: the
// store has no snapshot of it, so it cannot be trusted.
type notInMemoryError struct {
	id      ulid.ULID
	offset  int64
	version int64
}

func (e *notInMemoryError) Error() string {
	return fmt.Sprintf("%v: aggregate %s has no snapshot but its event at offset %d has version %d", errUntrusted, e.id, e.offset, e.version)
}

func (e *notInMemoryError) Unwrap() error { return errUntrusted }

// firstEvent reports whether r is an aggregate's first event.
func firstEvent(r *kgo.Record) bool {
	v, _ := producer.Header(r, producer.HeaderVersion)
	return string(v) == "1"
}

// replayOne folds one event record into part. An event that cannot be
// decoded or applied marks its aggregate broken rather than leaving it with
// a state that is not the fold of its events. An aggregate restored from a
// snapshot skips the events the snapshot has; one that should have come
// from the store but is missing, or whose next event does not follow its
// snapshot, means the store cannot be trusted (errUntrusted).
func (p *Processor) replayOne(part *partition, r *kgo.Record, now time.Time) error {
	route := part.route
	h, err := route.ParseEvent(r)
	if err != nil {
		p.log.Error("interlock: unreadable event record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		p.observeBad(BadRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Event: true, Reason: producer.Reason(err), Err: err})
		return nil
	}
	id := h.Command.AggregateID
	if part.broken[id] != nil {
		return nil
	}
	fail := func(reason string, err error) error {
		err = fmt.Errorf("event at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		p.observeBad(BadRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Event: true, Reason: reason, Err: err})
		p.log.Error("interlock: aggregate cannot be rebuilt; its commands will be rejected", "aggregate", route.Type.Name(), "aggregate_id", id, "err", err)
		part.broken[id] = err
		part.floor = min(part.floor, r.Offset)
		if e := part.entries[id]; e != nil {
			p.cache.remove(e)
			delete(part.entries, id)
			delete(part.dirty, id)
		}
		return nil
	}
	e := part.entries[id]
	if e == nil {
		if h.Version != 1 && part.token != 0 {
			return &notInMemoryError{id: id, offset: r.Offset, version: h.Version}
		}
		e = &entry{part: part, inst: route.Type.New(id), last: -1, dirtyFrom: -1}
		part.entries[id] = e
		p.cache.put(e)
	}
	if h.Version != e.inst.Version+1 {
		switch {
		case e.stored && h.Version <= e.inst.Version:
			return nil // the snapshot has it
		case e.stored:
			return fmt.Errorf("%w: aggregate %s: event version %d follows snapshot version %d", errUntrusted, id, h.Version, e.inst.Version)
		}
		return fail(producer.ReasonOther, fmt.Errorf("version %d follows version %d", h.Version, e.inst.Version))
	}
	var ptr any
	msg, ok := route.Event(h.Type)
	switch {
	case p.cfg.Upcasters != nil:
		var cur schema.Decoder
		if ok {
			cur = msg.Serde
		}
		ptr, err = p.cfg.Upcasters.Decode(h.Type, r.Value, cur)
	case !ok:
		return fail(producer.ReasonUnknownType, fmt.Errorf("unknown event type %q", h.Type))
	default:
		ptr, err = msg.Serde.Decode(r.Value)
	}
	switch {
	case errors.Is(err, schema.ErrDecode), errors.Is(err, schema.ErrUpcast):
		return fail(producer.Reason(err), err)
	case err != nil:
		// Not the record's fault (a schema registry out of reach): the
		// restore fails and is tried again.
		return fmt.Errorf("event at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	if err := route.Type.Apply(e.inst, ptr); err != nil {
		return fail(producer.ReasonOther, err)
	}
	p.remember(e.inst, h, r.Offset)
	p.markDirty(part, e, r.Offset, r.Offset, 1, now)
	return nil
}

// remember records the event with headers h at offset in inst's recent
// commands. The replay owns inst, so it updates the slice in place. The
// result is copied: the header's value shares the fetched batch's memory,
// which the result would otherwise keep alive, unseen by the cache bounds.
func (p *Processor) remember(inst *aggregate.Instance, h producer.Headers, offset int64) {
	id, result := h.Command.CommandID, bytes.Clone(h.Result)
	recent := inst.Recent
	if n := len(recent); n > 0 && recent[n-1].CommandID == id {
		last := &recent[n-1]
		last.Version, last.Events = inst.Version, last.Events+1
		if result != nil {
			last.Result = result
		}
		return
	}
	inst.Recent = appendRecent(recent, aggregate.Applied{CommandID: id, Version: inst.Version, Offset: offset, Events: 1, Result: result}, p.cfg.IdempotencyWindow)
}

// appendRecent adds a to recent, keeping the last window records, in
// place: only for an array no other instance sees.
func appendRecent(recent []aggregate.Applied, a aggregate.Applied, window int) []aggregate.Applied {
	if len(recent) < window {
		return append(recent, a)
	}
	copy(recent, recent[len(recent)-window+1:])
	return append(recent[:window-1], a)
}
