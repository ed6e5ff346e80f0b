package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/interlock-go/interlock/snapshot"
)

// storeTimeout bounds every call to the snapshot store, so a slow or dead
// store costs the processor little.
const storeTimeout = 3 * time.Second

// storeOK reports whether the store may be called now: after a failure it
// is left alone for a growing while (up to 30s), so a dead store does not
// slow every batch.
func (p *Processor) storeOK() bool {
	return !p.storeDown || !time.Now().Before(p.storeRetry)
}

// opSave names a snapshot write in storeResult.
const opSave = "save"

// storeResult records the outcome of a store call, logging a failure once
// per burst and the recovery once.
func (p *Processor) storeResult(op string, err error) {
	if err == nil {
		if p.storeDown {
			p.log.Info("interlock: snapshot store is back", "op", op)
		}
		p.storeDown, p.storeWait = false, 0
		return
	}
	p.stats.errors.Add(1)
	if op == opSave {
		p.stats.writeErrors.Add(1)
	}
	if !p.storeDown {
		p.log.Error("interlock: snapshot store failed; processing goes on from memory and the log", "op", op, "err", err)
	}
	p.storeDown = true
	p.storeWait = min(max(2*p.storeWait, time.Second), 30*time.Second)
	p.storeRetry = time.Now().Add(p.storeWait)
}

// watermark is W(p) if the given entries were written: the first offset
// not covered by a snapshot, or the partition's position when every
// aggregate is safe.
func (part *partition) watermark(writing map[*entry]bool) int64 {
	w := min(part.position, part.floor)
	for _, e := range part.dirty {
		if !writing[e] {
			w = min(w, e.dirtyFrom)
		}
	}
	return w
}

// flush writes snapshots of the given dirty entries of part and advances
// its watermark. Entries it cannot encode stay dirty (and hold the
// watermark back).
func (p *Processor) flush(ctx context.Context, part *partition, es []*entry) {
	if !p.snapshots(part) || part.token == 0 || !p.storeOK() {
		return
	}
	snaps := make([]snapshot.Snapshot, 0, len(es))
	writing := make(map[*entry]bool, len(es))
	sizes := make([]int, 0, len(es))
	var written []*entry
	for _, e := range es {
		b, err := part.agg.State.Encode(e.inst.State)
		if err != nil {
			p.log.Error("interlock: cannot encode state for a snapshot", "aggregate", part.route.Type.Name(), "aggregate_id", e.inst.ID, "err", err)
			continue
		}
		b = encodeFrame(b, e.inst.Recent)
		snaps = append(snaps, snapshot.Snapshot{
			AggregateID: e.inst.ID, Version: e.inst.Version, Offset: e.last,
			Fingerprint: part.agg.Fingerprint, State: b,
		})
		writing[e] = true
		written = append(written, e)
		sizes = append(sizes, len(b))
	}
	w := part.watermark(writing)
	if len(snaps) == 0 && w <= part.savedW {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	err := p.cfg.Store.Save(sctx, part.sp, part.token, snaps, w)
	cancel()
	if errors.Is(err, snapshot.ErrFenced) {
		// A newer owner claimed the partition, or the store lost our claim:
		// either way our evictions can no longer be undone from it.
		p.log.Warn("interlock: snapshot store refused our claim; the partition will be rebuilt", "partition", part.sp.String())
		p.storeResult(opSave, nil)
		p.rebuild(part)
		return
	}
	p.storeResult(opSave, err)
	if err != nil {
		return
	}
	part.savedW = max(part.savedW, w)
	for i, e := range written {
		e.dirtyFrom, e.pending = -1, 0
		delete(part.dirty, e.inst.ID)
		p.cache.resize(e, sizes[i])
	}
	p.stats.written.Add(int64(len(snaps)))
}

// flushAll writes every dirty aggregate of every owned partition.
func (p *Processor) flushAll(ctx context.Context) {
	for _, part := range p.owned() {
		if !part.restored.Load() || !p.snapshots(part) {
			continue
		}
		if part.token == 0 {
			// Every aggregate is in memory; with a claim they become
			// evictable once written.
			p.claim(ctx, part)
		}
		es := make([]*entry, 0, len(part.dirty))
		for _, e := range part.dirty {
			es = append(es, e)
		}
		p.flush(ctx, part, es)
	}
}

// housekeep runs between batches: the periodic flush, and eviction when
// the cache is over its bounds.
func (p *Processor) housekeep(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	over := p.cache.over(p.cfg.MaxCached, p.cfg.MaxCachedBytes)
	if over || time.Since(p.lastFlush) >= p.cfg.FlushInterval {
		p.flushAll(ctx)
		p.lastFlush = time.Now()
	}
	if over {
		p.stats.evictions.Add(int64(p.cache.evict(p.cfg.MaxCached, p.cfg.MaxCachedBytes, nil)))
		p.stats.cached.Store(int64(p.cache.len()))
	}
}
