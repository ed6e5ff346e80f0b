package projections

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
)

// Kafka is the sink of projections that write to Kafka: transformed
// records for downstream pipelines, and commands (a saga, or process
// manager). It is exactly once: the projector consumes its events and
// produces its output in Kafka transactions that also commit the consumed
// offsets (KIP-447), so a crash, a rebalance or a zombie instance never
// writes a batch's output twice or half of it. Handlers get an *Output.
func Kafka() Sink[*Output] { return kafkaSink{} }

type kafkaSink struct{}

func (kafkaSink) Apply(context.Context, string, []Checkpoint, func(context.Context, *Output) error) error {
	return errors.New("projections: the Kafka sink runs inside the projector's own transactions")
}

// Output is how a Kafka projection's handler writes: its records and
// commands commit with the batch, or not at all.
type Output struct {
	ctx  context.Context
	sess *kgo.GroupTransactSession
	// recorded holds, in a recording Output, what was produced and sent.
	recorded *Recorded
	routes   []*producer.Route
	name     string
	event    aggregate.EventEnvelope
	md       map[string]string // the current event's metadata
	sent     int               // commands sent for the current event
	mu       sync.Mutex
	failure  error
}

// Recorded is what a recording Output was given.
type Recorded struct {
	// Records are the records produced, in order.
	Records []*kgo.Record
	// Commands are the commands sent, in order, with their envelopes as
	// Send filled them in.
	Commands []any
}

// NewRecorder returns an Output that records what handlers produce and
// send instead of writing to Kafka, for tests (see package
// projectionstest). projection names the projection, as command IDs
// derive from it.
func NewRecorder(projection string) (*Output, *Recorded) {
	r := &Recorded{}
	return &Output{recorded: r, name: projection}, r
}

// Produce writes r (any topic, any bytes: a record for a downstream
// pipeline) in the batch's transaction.
func (o *Output) Produce(r *kgo.Record) {
	if o.recorded != nil {
		o.recorded.Records = append(o.recorded.Records, r)
		return
	}
	o.sess.Produce(o.ctx, r, func(r *kgo.Record, err error) {
		if err != nil {
			o.fail(fmt.Errorf("producing to %s: %w", r.Topic, err))
		}
	})
}

// Send writes cmd (a command value of a registered aggregate, with its
// aggregate ID set) to its commands topic in the batch's transaction, for
// the aggregate's processor to handle. Its envelope is filled in from the
// event being handled: the correlation ID is the event's, the causation ID
// the event's ID, and the command ID, unless set, is derived from the
// event, the projection and the order of the sends, so it is the same
// every time this event is handled. The event's metadata (trace context,
// tenant) goes with the command.
func (o *Output) Send(cmd any) error {
	var route *producer.Route
	var msg *producer.Message
	for _, r := range o.routes {
		if m, ok := r.CommandOf(reflect.TypeOf(cmd)); ok {
			route, msg = r, m
			break
		}
	}
	if route == nil && o.recorded == nil {
		return fmt.Errorf("%w %T: register the aggregate that handles it", producer.ErrUnknownCommand, cmd)
	}
	env, ok := aggregate.EnvelopeOf(cmd)
	if !ok {
		return fmt.Errorf("%T is not a command (it does not embed aggregate.Command)", cmd)
	}
	if env.AggregateID == (ulid.ULID{}) {
		return fmt.Errorf("%T: %w", cmd, aggregate.ErrMissingID)
	}
	o.sent++
	if env.CommandID == (ulid.ULID{}) {
		env.CommandID = derivedID(o.event.EventID, o.name, o.sent)
	}
	if env.CorrelationID == "" {
		env.CorrelationID = o.event.CorrelationID
	}
	if env.CausationID == "" {
		env.CausationID = o.event.EventID.String()
	}
	if o.recorded != nil {
		ptr := reflect.New(reflect.TypeOf(cmd))
		ptr.Elem().Set(reflect.ValueOf(cmd))
		aggregate.SetEnvelope(ptr.Interface(), env)
		o.recorded.Commands = append(o.recorded.Commands, ptr.Elem().Interface())
		return nil
	}
	rec, err := producer.CommandRecord(route, msg, cmd, env, o.md, -1, time.Time{})
	if err != nil {
		return err
	}
	o.Produce(rec)
	return nil
}

// begin makes the event with envelope env and metadata md the one whose
// handler runs next.
func (o *Output) begin(env aggregate.EventEnvelope, md map[string]string) {
	o.event, o.md, o.sent = env, md, 0
}

func (o *Output) fail(err error) {
	o.mu.Lock()
	o.failure = errors.Join(o.failure, err)
	o.mu.Unlock()
}

func (o *Output) err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failure
}

// derivedID is a command ID that depends only on the event, the
// projection and n: the event's time, and a hash of the rest.
func derivedID(event ulid.ULID, projection string, n int) ulid.ULID {
	h := sha256.New()
	h.Write(event[:])
	h.Write([]byte(projection))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
	var id ulid.ULID
	copy(id[:6], event[:6])
	copy(id[6:], h.Sum(nil))
	return id
}
