package metrics

import (
	"github.com/interlock-go/interlock/consumer"
	"github.com/interlock-go/interlock/projections"
)

// OnBatch implements consumer.BatchObserver: it counts the transaction by
// outcome and observes its size and duration.
func (m *Metrics) OnBatch(b consumer.Batch) {
	outcome := outcomeAborted
	if b.Committed {
		outcome = outcomeCommitted
	}
	m.transactions.WithLabelValues(outcome).Inc()
	m.batchSize.Observe(float64(b.Commands))
	m.txDuration.Observe(b.Duration.Seconds())
}

// OnRestore implements consumer.RestoreObserver: it observes the restore's
// duration and counts the events it replayed.
func (m *Metrics) OnRestore(r consumer.Restore) {
	m.restores.WithLabelValues(r.Topic).Observe(r.Duration.Seconds())
	m.replayed.WithLabelValues(r.Topic).Add(float64(r.Events))
}

// OnBadRecord implements consumer.BadRecordObserver: it counts the record
// by kind (command or event) and reason.
func (m *Metrics) OnBadRecord(b consumer.BadRecord) {
	kind := kindCommand
	if b.Event {
		kind = kindEvent
	}
	m.badRecords.WithLabelValues(kind, b.Reason).Inc()
}

// OnPark implements projections.ParkObserver: it counts the poison event
// by projection and reason.
func (m *Metrics) OnPark(p projections.Park) {
	m.parked.WithLabelValues(p.Projection, p.Reason).Inc()
}
