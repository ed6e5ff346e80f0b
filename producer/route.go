package producer

import (
	"fmt"
	"reflect"
	"time"

	"github.com/interlock-go/interlock/aggregate"
)

// Serde encodes and decodes the payload of one message type.
// schema.Serde satisfies it.
type Serde interface {
	Encode(v any) ([]byte, error)
	// Decode returns a pointer to a new value.
	Decode(b []byte) (any, error)
}

// Message is one command or event type as it travels on Kafka.
type Message struct {
	aggregate.Message
	Serde Serde
	// Lossy is set for a type that may not survive encoding unchanged
	// (times lose their monotonic reading, location, or precision): a
	// processor applies such events as decoded from their records, so the
	// state it holds equals the fold of the log.
	Lossy bool
}

// lossy reports whether t holds a time.Time or time.Duration.
func lossy(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == reflect.TypeFor[time.Time]() || t == reflect.TypeFor[time.Duration]() {
		return true
	}
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return lossy(t.Elem(), seen)
	case reflect.Map:
		return lossy(t.Key(), seen) || lossy(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if lossy(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// Route is everything the runtime needs about one aggregate type: its
// definition, its topics and its message types with their codecs.
type Route struct {
	Type          aggregate.Type
	CommandsTopic string
	EventsTopic   string
	// Codec is the codec's name, written in the headers of every record.
	Codec string

	commands       map[string]*Message
	events         map[string]*Message
	commandsByType map[reflect.Type]*Message
	eventsByType   map[reflect.Type]*Message
}

// NewRoute builds the route of t; serde returns the codec of each message
// type and fails for a type the codec cannot encode.
func NewRoute(t aggregate.Type, commandsTopic, eventsTopic, codec string, serde func(reflect.Type) (Serde, error)) (*Route, error) {
	r := &Route{
		Type: t, CommandsTopic: commandsTopic, EventsTopic: eventsTopic, Codec: codec,
		commands: map[string]*Message{}, events: map[string]*Message{},
		commandsByType: map[reflect.Type]*Message{}, eventsByType: map[reflect.Type]*Message{},
	}
	add := func(ms []aggregate.Message, byName map[string]*Message, byType map[reflect.Type]*Message) error {
		for _, m := range ms {
			s, err := serde(m.Type)
			if err != nil {
				return fmt.Errorf("aggregate %q: no codec for %v: %w", t.Name(), m.Type, err)
			}
			msg := &Message{Message: m, Serde: s, Lossy: lossy(m.Type, map[reflect.Type]bool{})}
			byName[m.Name], byType[m.Type] = msg, msg
		}
		return nil
	}
	if err := add(t.Commands(), r.commands, r.commandsByType); err != nil {
		return nil, err
	}
	if err := add(t.Events(), r.events, r.eventsByType); err != nil {
		return nil, err
	}
	return r, nil
}

// Command returns the command type named name.
func (r *Route) Command(name string) (*Message, bool) { m, ok := r.commands[name]; return m, ok }

// CommandOf returns the command type t.
func (r *Route) CommandOf(t reflect.Type) (*Message, bool) {
	m, ok := r.commandsByType[t]
	return m, ok
}

// Event returns the event type named name.
func (r *Route) Event(name string) (*Message, bool) { m, ok := r.events[name]; return m, ok }

// EventOf returns the event type t.
func (r *Route) EventOf(t reflect.Type) (*Message, bool) { m, ok := r.eventsByType[t]; return m, ok }
