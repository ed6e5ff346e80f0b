package consumer

import "sync/atomic"

// Stats are the processor's counters since it started.
type Stats struct {
	// CommandsApplied, CommandsRejected and CommandsFailed count handled
	// commands by outcome (bad records count as rejected); Duplicates
	// counts retries answered with their first outcome.
	CommandsApplied, CommandsRejected, CommandsFailed, Duplicates int64
	// EventsReplayed counts events read back from the log on restores.
	EventsReplayed int64
	// Restores counts partition restores; FullReplays those that read a
	// non-empty log from its start (no watermark, or the snapshot store
	// could not be trusted).
	Restores, FullReplays int64
	// SnapshotsLoaded and SnapshotsWritten count snapshot store traffic;
	// SnapshotMisses counts aggregates looked up in the store (met in a
	// replay from the watermark) that had no snapshot; SnapshotsIgnored
	// counts snapshots rejected as corrupt, of another state type, or
	// inconsistent with the log.
	SnapshotsLoaded, SnapshotsWritten, SnapshotMisses, SnapshotsIgnored int64
	// StoreErrors counts failed snapshot store calls (writes, loads,
	// claims); SnapshotWriteErrors those that were writes.
	StoreErrors, SnapshotWriteErrors int64
	// Cached is the number of aggregates in memory now; Evictions counts
	// those dropped from memory to stay within the cache bounds.
	Cached, Evictions int64
	// BatchesGivenBack counts batches handed back unhandled because a
	// command's writer schema could not be had from a schema registry
	// that did not answer; each is tried again a second later.
	BatchesGivenBack int64
}

type counters struct {
	applied, rejected, failed        atomic.Int64
	duplicates                       atomic.Int64
	replayed, restores, fullReplays  atomic.Int64
	loaded, written, ignored, errors atomic.Int64
	misses, writeErrors              atomic.Int64
	cached, evictions                atomic.Int64
	givenBack                        atomic.Int64
}

// Stats returns the processor's counters.
func (p *Processor) Stats() Stats {
	c := &p.stats
	return Stats{
		CommandsApplied: c.applied.Load(), CommandsRejected: c.rejected.Load(), CommandsFailed: c.failed.Load(), Duplicates: c.duplicates.Load(),
		EventsReplayed: c.replayed.Load(), Restores: c.restores.Load(), FullReplays: c.fullReplays.Load(),
		SnapshotsLoaded: c.loaded.Load(), SnapshotsWritten: c.written.Load(), SnapshotMisses: c.misses.Load(), SnapshotsIgnored: c.ignored.Load(),
		StoreErrors: c.errors.Load(), SnapshotWriteErrors: c.writeErrors.Load(), Cached: c.cached.Load(), Evictions: c.evictions.Load(),
		BatchesGivenBack: c.givenBack.Load(),
	}
}
