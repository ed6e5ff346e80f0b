package bench

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
)

// eventStream makes the event records of the workload's aggregates
// exactly as a processor writes them: each aggregate's commands (Setup
// first, then Command) run through the aggregate's definition as the
// processor runs them, their events encoded by the workload's codec, with
// headers by producer.EventRecord and the handler's result (JSON) on each
// command's last event, keyed and partitioned by aggregate ID as the
// dispatcher partitions commands. The aggregates take turns, one command
// each.
type eventStream struct {
	topic   string
	w       Workload
	codec   schema.Codec
	serdes  map[reflect.Type]eventSerde
	ids     []ulid.ULID
	parts   []int32
	insts   []*aggregate.Instance
	turn    int                 // commands run so far
	pending []*kgo.Record       // events of the last command not returned yet
	next    int                 // records returned so far
	first   map[int32]ulid.ULID // an aggregate of each partition
}

type eventSerde struct {
	name  string
	serde schema.Serde
}

func newEventStream(w Workload, topic string, aggregates, partitions int) (*eventStream, error) {
	s := &eventStream{topic: topic, w: w, codec: w.codec(), serdes: map[reflect.Type]eventSerde{}, first: map[int32]ulid.ULID{}}
	for _, m := range w.Aggregate.Events() {
		serde, err := s.codec.For(m.Type)
		if err != nil {
			return nil, err
		}
		s.serdes[m.Type] = eventSerde{name: m.Name, serde: serde}
	}
	part := kgo.StickyKeyPartitioner(nil).ForTopic(topic) // murmur2, as the dispatcher's default
	// At least one aggregate per partition, for the restore's triggers.
	for len(s.ids) < aggregates || len(s.first) < partitions {
		id := ulid.Make()
		p := int32(part.Partition(&kgo.Record{Key: []byte(id.String())}, partitions))
		if _, ok := s.first[p]; !ok {
			s.first[p] = id
		}
		s.ids = append(s.ids, id)
		s.parts = append(s.parts, p)
		s.insts = append(s.insts, w.Aggregate.New(id))
	}
	return s, nil
}

// record returns the next event.
func (s *eventStream) record(now time.Time) (*kgo.Record, error) {
	for empty := 0; len(s.pending) == 0; empty++ {
		if empty > len(s.ids) {
			return nil, fmt.Errorf("the workload's commands on %q emit no events", s.w.Aggregate.Name())
		}
		if err := s.execute(now); err != nil {
			return nil, err
		}
	}
	r := s.pending[0]
	s.pending = s.pending[1:]
	s.next++
	return r, nil
}

// execute runs the next aggregate's next command and queues its events.
func (s *eventStream) execute(now time.Time) error {
	i := s.turn % len(s.ids)
	s.turn++
	id, inst := s.ids[i], s.insts[i]
	var cmd any
	if inst.Version == 0 {
		cmd = s.w.Setup(id, i)
	} else {
		cmd = s.w.Command(id)
	}
	version := inst.Version
	out, err := s.w.Aggregate.Execute(inst, cmd)
	if err != nil {
		return fmt.Errorf("running %T on %s %s at version %d: %w", cmd, s.w.Aggregate.Name(), id, version, err)
	}
	var result []byte
	if _, none := out.Result.(aggregate.None); !none {
		if result, err = json.Marshal(out.Result); err != nil {
			return fmt.Errorf("encoding the result of %T: %w", cmd, err)
		}
	}
	cmdID := ulid.Make()
	for j, e := range out.Events {
		es, ok := s.serdes[reflect.TypeOf(e)]
		if !ok {
			return fmt.Errorf("event %T of %T is not registered on %q", e, cmd, s.w.Aggregate.Name())
		}
		value, err := es.serde.Encode(e)
		if err != nil {
			return fmt.Errorf("encoding event %s: %w", es.name, err)
		}
		r := producer.EventRecord(s.topic, s.parts[i], s.codec.Name(), aggregate.EventEnvelope{
			EventID:       ulid.Make(),
			AggregateType: s.w.Aggregate.Name(),
			AggregateID:   id,
			Type:          es.name,
			Version:       version + int64(j) + 1,
			Time:          now,
			CommandID:     cmdID,
			CorrelationID: cmdID.String(),
			CausationID:   cmdID.String(),
		}, value)
		if j == len(out.Events)-1 && result != nil {
			// The result rides on the command's last event, for retries.
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: producer.HeaderResult, Value: result})
		}
		s.pending = append(s.pending, r)
	}
	return nil
}
