package projections

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/producer"
)

// ParkObserver is told about every poison event a projection parks in its
// dead-letter topic (not about the later events of its aggregate, parked
// behind it), once the park is durable. Set it in Config.Observers; its
// method must be quick and safe for concurrent use.
type ParkObserver interface {
	OnPark(Park)
}

// Park is one poison event parked in a dead-letter topic.
type Park struct {
	// Projection is the projection's name.
	Projection string
	// Topic, Partition and Offset locate the event.
	Topic     string
	Partition int32
	Offset    int64
	// Reason is one of producer.Reasons, or ReasonHandlerFailed: a fixed
	// set, fit for a metric label.
	Reason string
	// Err is why the event was parked.
	Err error
}

// ReasonHandlerFailed is the reason of an event that decoded but whose
// handler kept failing.
const ReasonHandlerFailed = "handler_failed"

// parkReason classifies why an event is poison.
func parkReason(err error) string {
	if r := producer.Reason(err); r != producer.ReasonOther {
		return r
	}
	return ReasonHandlerFailed
}

func (pr *Projector) observePark(r *kgo.Record, why error) {
	if len(pr.cfg.Observers) == 0 {
		return
	}
	p := Park{Projection: pr.name, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Reason: parkReason(why), Err: why}
	for _, o := range pr.cfg.Observers {
		if po, ok := o.(ParkObserver); ok {
			po.OnPark(p)
		}
	}
}
