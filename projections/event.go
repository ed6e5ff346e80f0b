package projections

import (
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
)

// Event is an event as a projection's handler gets it: its envelope (event
// ID, aggregate type and ID, type, version, time, command, correlation and
// causation IDs), its payload, where it is in the log, and its metadata.
type Event[E any] struct {
	aggregate.Event[E]
	// Position is the event's topic, partition and offset.
	Position producer.Position
	// Metadata are the event's headers that are not Interlock's envelope,
	// inherited from its command: trace context (traceparent), tenant IDs.
	Metadata map[string]string
}
