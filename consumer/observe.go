package consumer

import "time"

// An observer is any value that implements one or more of the interfaces
// below (BatchObserver, RestoreObserver, BadRecordObserver); the processor
// calls the methods it finds, from its loop, so they must be quick and
// must not block. Metrics and tracing plug in this way without entering
// the processor.

// BatchObserver is told about every transaction the processor ends.
type BatchObserver interface {
	OnBatch(Batch)
}

// Batch is one transaction of commands.
type Batch struct {
	// Commands is the number of command records in the batch; Applied,
	// Rejected and Failed split them by outcome (Applied includes retries
	// answered with their first outcome).
	Commands, Applied, Rejected, Failed int
	// Committed is false when the transaction aborted or its outcome is
	// unknown (the batch comes back, or the state is rebuilt).
	Committed bool
	// Duration is from the transaction's start to its end.
	Duration time.Duration
}

// RestoreObserver is told about every partition restore that completes.
type RestoreObserver interface {
	OnRestore(Restore)
}

// Restore is one completed partition restore.
type Restore struct {
	// Topic and Partition name the events partition.
	Topic     string
	Partition int32
	// From is the offset the replay started at (0: the whole log), Events
	// the number of events replayed.
	From, Events int64
	// Duration is the restore's wall time, waits for open transactions
	// included.
	Duration time.Duration
}

// BadRecordObserver is told about every record the processor cannot use:
// a command it rejects for what the record is, not for what the handler
// decided, and an event that breaks its aggregate's replay. It may be
// called from several goroutines at once.
type BadRecordObserver interface {
	OnBadRecord(BadRecord)
}

// BadRecord is one record the processor could not use.
type BadRecord struct {
	// Topic, Partition and Offset locate the record.
	Topic     string
	Partition int32
	Offset    int64
	// Event is true for an event met by a restore, false for a command.
	Event bool
	// Reason is one of producer.Reasons: a fixed set, fit for a metric
	// label.
	Reason string
	// Err says what is wrong with the record.
	Err error
}

func (p *Processor) observeBad(b BadRecord) {
	for _, o := range p.cfg.Observers {
		if bo, ok := o.(BadRecordObserver); ok {
			bo.OnBadRecord(b)
		}
	}
}

func (p *Processor) observeBatch(b Batch) {
	for _, o := range p.cfg.Observers {
		if bo, ok := o.(BatchObserver); ok {
			bo.OnBatch(b)
		}
	}
}

func (p *Processor) observeRestore(r Restore) {
	for _, o := range p.cfg.Observers {
		if ro, ok := o.(RestoreObserver); ok {
			ro.OnRestore(r)
		}
	}
}
