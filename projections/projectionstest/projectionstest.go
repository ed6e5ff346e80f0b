// Package projectionstest tests projections, processors and sagas without
// Kafka, in the given/when/then style of package aggregatetest: events (and
// records of foreign topics) go straight to the handlers, and what a
// projection on the Kafka sink sends or produces is recorded instead.
//
//	s := projectionstest.Saga(t, bank.TransferSaga())
//	s.When(transferID, bank.TransferStarted{From: a, To: b, Amount: 10}).
//		ThenSends(bank.DebitForTransfer{Command: aggregate.To(a), Transfer: transferID.String(), To: b, Amount: 10})
package projectionstest

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/projections"
)

// Project runs p's handlers with tx for events, in order, as events of the
// aggregate id at versions 1, 2, … (the envelope a projection would see),
// and fails t on the first handler error.
func Project[T any](t testing.TB, p *projections.Projection[T], tx T, id ulid.ULID, events ...any) {
	t.Helper()
	for i, e := range events {
		if err := p.Handle(context.Background(), tx, envelope(id, int64(i+1), e), e); err != nil {
			t.Fatalf("%s: event %d (%T): %v", p.Name(), i+1, e, err)
		}
	}
}

func envelope(id ulid.ULID, version int64, e any) aggregate.EventEnvelope {
	return aggregate.EventEnvelope{
		EventID: ulid.Make(), AggregateID: id, Type: reflect.TypeOf(e).Name(), Version: version,
		Time: time.Now(), CorrelationID: "flow-" + id.String(), CausationID: ulid.Make().String(),
	}
}

// ProjectRecords runs p's record handlers (projections.OnRecord: topics
// Interlock did not write) with tx for recs, in order, and fails t on the
// first handler error, or on a record of a topic p has no handler for.
func ProjectRecords[T any](t testing.TB, p *projections.Projection[T], tx T, recs ...*kgo.Record) {
	t.Helper()
	for i, r := range recs {
		if err := p.HandleRecord(context.Background(), tx, r); err != nil {
			t.Fatalf("%s: record %d (%s): %v", p.Name(), i+1, r.Topic, err)
		}
	}
}

// SagaScenario is a saga, or any projection on the Kafka sink, under
// test.
type SagaScenario struct {
	t     testing.TB
	p     *projections.Projection[*projections.Output]
	env   aggregate.EventEnvelope
	rec   *projections.Recorded
	err   error
	steps int
}

// Saga starts a scenario for a saga, or any projection on the Kafka sink
// (a Kafka-to-Kafka processor: see ThenProduces).
func Saga(t testing.TB, p *projections.Projection[*projections.Output]) *SagaScenario {
	return &SagaScenario{t: t, p: p}
}

// When hands event, emitted by aggregate id, to the saga.
func (s *SagaScenario) When(id ulid.ULID, event any) *SagaScenario {
	s.t.Helper()
	s.steps++
	out, rec := projections.NewRecorder(s.p.Name())
	s.env, s.rec = envelope(id, int64(s.steps), event), rec
	s.err = s.p.Handle(context.Background(), out, s.env, event)
	return s
}

// ThenSends checks that the saga sent exactly cmds, in order: their
// aggregate IDs and payloads. Their envelopes are checked too: the
// correlation ID is the event's, the causation ID the event's ID, and the
// command IDs are set.
func (s *SagaScenario) ThenSends(cmds ...any) *SagaScenario {
	s.t.Helper()
	if s.err != nil {
		s.t.Fatalf("the saga failed: %v", s.err)
	}
	got := s.rec.Commands
	if len(got) != len(cmds) {
		s.t.Fatalf("sent %d commands %v, want %d %v", len(got), got, len(cmds), cmds)
	}
	for i, c := range got {
		env, _ := aggregate.EnvelopeOf(c)
		if env.CorrelationID != s.env.CorrelationID || env.CausationID != s.env.EventID.String() || env.CommandID == (ulid.ULID{}) {
			s.t.Errorf("command %d (%T): envelope %+v does not carry the event's correlation %q and ID %s as causation", i, c, env, s.env.CorrelationID, s.env.EventID)
		}
		want := cmds[i]
		wenv, _ := aggregate.EnvelopeOf(want)
		if env.AggregateID != wenv.AggregateID || !reflect.DeepEqual(payload(c), payload(want)) {
			s.t.Errorf("command %d: sent %T to %s: %+v, want %T to %s: %+v", i, c, env.AggregateID, payload(c), want, wenv.AggregateID, payload(want))
		}
	}
	return s
}

// ThenProduces checks that the projection produced exactly recs
// (Output.Produce: records for downstream pipelines), in order: their
// topics, keys and values.
func (s *SagaScenario) ThenProduces(recs ...*kgo.Record) *SagaScenario {
	s.t.Helper()
	if s.err != nil {
		s.t.Fatalf("the projection failed: %v", s.err)
	}
	got := s.rec.Records
	if len(got) != len(recs) {
		s.t.Fatalf("produced %d records %s, want %d %s", len(got), records(got), len(recs), records(recs))
	}
	for i, r := range got {
		if w := recs[i]; r.Topic != w.Topic || !bytes.Equal(r.Key, w.Key) || !bytes.Equal(r.Value, w.Value) {
			s.t.Errorf("record %d: produced %s, want %s", i, records(got[i:i+1]), records(recs[i:i+1]))
		}
	}
	return s
}

// records prints recs' topics, keys and values.
func records(recs []*kgo.Record) string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = fmt.Sprintf("{%s key %q value %q}", r.Topic, r.Key, r.Value)
	}
	return "[" + strings.Join(out, " ") + "]"
}

// ThenSendsNothing checks that the saga sent no command.
func (s *SagaScenario) ThenSendsNothing() *SagaScenario { s.t.Helper(); return s.ThenSends() }

// ThenFails checks that the saga's handler failed with an error whose
// message contains want.
func (s *SagaScenario) ThenFails(want string) *SagaScenario {
	s.t.Helper()
	if s.err == nil || !strings.Contains(s.err.Error(), want) {
		s.t.Fatalf("saga error %v, want one containing %q", s.err, want)
	}
	return s
}

// payload returns cmd with its envelope cleared, for comparison.
func payload(cmd any) any {
	ptr := reflect.New(reflect.TypeOf(cmd))
	ptr.Elem().Set(reflect.ValueOf(cmd))
	aggregate.SetEnvelope(ptr.Interface(), aggregate.Command{})
	return fmt.Sprintf("%+v", ptr.Elem().Interface())
}
