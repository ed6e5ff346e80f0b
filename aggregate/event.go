package aggregate

import (
	"time"

	"github.com/oklog/ulid/v2"
)

// EventEnvelope is what the log records about an event besides its payload.
type EventEnvelope struct {
	// EventID identifies the event (a ULID).
	EventID ulid.ULID
	// AggregateType and AggregateID name the aggregate that emitted it.
	AggregateType string
	AggregateID   ulid.ULID
	// Type is the event type's name.
	Type string
	// Version is the aggregate's version after this event: 1 for the first.
	Version int64
	// Time is when the command that emitted it was handled.
	Time time.Time
	// CommandID is the command that emitted it; CorrelationID is that
	// command's correlation ID and CausationID its command ID.
	CommandID     ulid.ULID
	CorrelationID string
	CausationID   string
}

// Event is a recorded event: its envelope and its payload.
type Event[E any] struct {
	EventEnvelope
	Data E
}
