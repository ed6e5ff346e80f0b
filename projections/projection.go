package projections

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
)

// Policy says what a projection does with an event whose handler still
// fails after its retries.
type Policy uint8

const (
	// DeadLetter parks the event in the projection's dead-letter topic and
	// holds back the later events of its aggregate (parked after it, in
	// order) while other aggregates flow on; Projector.Retry applies them
	// once the cause is fixed. The default: bad input never stops a
	// partition (DESIGN.md, invariant 7).
	DeadLetter Policy = iota
	// Stop halts the projection and reports the event: its error is
	// logged and returned by Projector.Err. For a read model that must
	// never skip an event, whatever waits behind it.
	Stop
)

// Option configures a Projection.
type Option interface{ apply(*settings) }

type settings struct {
	version      int
	policy       Policy
	retries      int
	backoff      time.Duration
	maxBatch     int
	batchTimeout time.Duration
}

type optionFunc func(*settings)

func (f optionFunc) apply(s *settings) { f(s) }

// Version sets the projection's version. A new version of a projection (a
// new read model, new tables) is built from the start of the log under its
// own group and checkpoints while the older version keeps serving its
// queries; interlock.Ask switches to the newest version once it has caught
// up. Version 1 (the default) is the bare name; version n > 1 runs as
// "<name>.v<n>".
func Version(n int) Option { return optionFunc(func(s *settings) { s.version = n }) }

// WithPolicy sets what happens to an event whose handler keeps failing.
// Default DeadLetter.
func WithPolicy(p Policy) Option { return optionFunc(func(s *settings) { s.policy = p }) }

// WithRetries sets how many times a batch whose handler failed is tried
// again before the Policy applies, waiting backoff, then twice as long
// each time (at most 30 s). Failures to reach the sink itself are retried
// without limit. Default 5 retries from 100 ms.
func WithRetries(n int, backoff time.Duration) Option {
	return optionFunc(func(s *settings) { s.retries, s.backoff = n, backoff })
}

// WithBatchTimeout bounds the time one unit of work of the sink may take,
// handlers included; a batch that takes longer fails and is retried like a
// failing handler. Closing the projection lets the batch under way finish
// within this bound. Default 1 minute.
func WithBatchTimeout(d time.Duration) Option {
	return optionFunc(func(s *settings) { s.batchTimeout = d })
}

// WithMaxBatch bounds the events applied in one unit of work of the sink.
// Default 500.
func WithMaxBatch(n int) Option { return optionFunc(func(s *settings) { s.maxBatch = n }) }

// Projection is a read model: a name, a sink, and handlers of the event
// types it follows. Create it with New, add handlers with On, register it
// on the application builder.
type Projection[T any] struct {
	name     string // the family, with ".v<n>" from version 2
	family   string
	sink     Sink[T]
	set      settings
	handlers map[reflect.Type]handler[T]
	order    []reflect.Type
	raw      map[string]func(ctx context.Context, tx T, r *kgo.Record) error
	queries  []QueryHandler
	errs     []error
}

// handler applies one decoded event; data is a *E.
type handler[T any] func(ctx context.Context, tx T, env aggregate.EventEnvelope, data any, pos producer.Position, md map[string]string) error

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// New creates a projection named name (lowercase letters, digits, dashes:
// it names the consumer group and the dead-letter topic) writing to sink.
func New[T any](name string, sink Sink[T], opts ...Option) *Projection[T] {
	p := &Projection[T]{
		name: name, sink: sink,
		family:   name,
		set:      settings{version: 1, retries: 5, backoff: 100 * time.Millisecond, maxBatch: 500, batchTimeout: time.Minute},
		handlers: map[reflect.Type]handler[T]{},
		raw:      map[string]func(context.Context, T, *kgo.Record) error{},
	}
	if _, ok := any(sink).(effects); ok {
		p.set.maxBatch = 1 // a failure repeats no other event's effect
	}
	for _, o := range opts {
		o.apply(&p.set)
	}
	if !namePattern.MatchString(name) {
		p.errs = append(p.errs, fmt.Errorf("projection name %q: use 1-63 lowercase letters, digits and dashes, starting with a letter", name))
	}
	if sink == nil {
		p.errs = append(p.errs, fmt.Errorf("projection %q has no sink", name))
	}
	if p.set.version < 1 {
		p.errs = append(p.errs, fmt.Errorf("projection %q: version %d must be at least 1", name, p.set.version))
	} else if p.set.version > 1 {
		p.family, p.name = name, fmt.Sprintf("%s.v%d", name, p.set.version)
	}
	if p.set.retries < 0 || p.set.backoff <= 0 || p.set.maxBatch < 1 || p.set.batchTimeout <= 0 {
		p.errs = append(p.errs, fmt.Errorf("projection %q: retries %d, backoff %v, max batch %d, batch timeout %v: retries must not be negative, the others positive",
			name, p.set.retries, p.set.backoff, p.set.maxBatch, p.set.batchTimeout))
	}
	return p
}

// On registers fn as p's handler of events of type E. It runs inside the
// sink's unit of work (tx) of its batch.
func On[E, T any](p *Projection[T], fn func(ctx context.Context, tx T, e Event[E]) error) {
	t := reflect.TypeFor[E]()
	if _, dup := p.handlers[t]; dup {
		p.errs = append(p.errs, fmt.Errorf("projection %q: event %v has two handlers", p.name, t))
		return
	}
	where := fmt.Sprintf("projection %q: handler of %v", p.name, t)
	p.handlers[t] = func(ctx context.Context, tx T, env aggregate.EventEnvelope, data any, pos producer.Position, md map[string]string) (err error) {
		// A panic is the handler's error: retried, then parked (or the
		// projection stopped), never the end of the process.
		defer func() {
			if v := recover(); v != nil {
				err = aggregate.Recovered(where, v)
			}
		}()
		return fn(ctx, tx, Event[E]{Event: aggregate.Event[E]{EventEnvelope: env, Data: *data.(*E)}, Position: pos, Metadata: md})
	}
	p.order = append(p.order, t)
}

// OnRecord registers fn as p's handler of every record of topic, a topic
// Interlock did not write (or any topic read raw): fn gets the record as
// it is and decodes it itself (JSON, Avro with a registry, ...). Records
// are held back and parked per key, as events are per aggregate. An
// error of fn counts against its record, unless it matches
// schema.ErrRegistryUnavailable or is marked with Transient.
func OnRecord[T any](p *Projection[T], topic string, fn func(ctx context.Context, tx T, r *kgo.Record) error) {
	if _, dup := p.raw[topic]; dup || topic == "" {
		p.errs = append(p.errs, fmt.Errorf("projection %q: topic %q has two record handlers, or is empty", p.name, topic))
		return
	}
	where := fmt.Sprintf("projection %q: record handler of %s", p.name, topic)
	p.raw[topic] = func(ctx context.Context, tx T, r *kgo.Record) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = aggregate.Recovered(where, v)
			}
		}()
		return fn(ctx, tx, r)
	}
}

// Name is the projection's name: its family's name and, from version 2
// on, ".v<version>". It names the group, the checkpoints and the
// dead-letter topic.
func (p *Projection[T]) Name() string { return p.name }

// Family is the name the projection was created with, shared by its
// versions.
func (p *Projection[T]) Family() string { return p.family }

// Version is the projection's version.
func (p *Projection[T]) Version() int { return p.set.version }

// EventTypes lists the event types p handles, in registration order.
func (p *Projection[T]) EventTypes() []reflect.Type { return p.order }

// Validate reports every mistake in p's definition.
func (p *Projection[T]) Validate() error {
	errs := append([]error(nil), p.errs...)
	if len(p.handlers) == 0 && len(p.raw) == 0 {
		errs = append(errs, fmt.Errorf("projection %q handles no event (register one with projections.On or OnRecord)", p.name))
	}
	return errors.Join(errs...)
}

// Runner is the non-generic view of a Projection that the application
// drives. *Projection[T] implements it for every T.
type Runner interface {
	Name() string
	Family() string
	Version() int
	EventTypes() []reflect.Type
	Validate() error
	Queries() []QueryHandler
	Start(ctx context.Context, cfg Config) (*Projector, error)
}

var _ Runner = (*Projection[struct{}])(nil)

// Handle runs p's handler of event (an event value, not a pointer) with tx,
// as the runtime does for a recorded event with envelope env, without
// Kafka: for tests of handlers (see package projectionstest). An event p
// does not follow is ignored.
func (p *Projection[T]) Handle(ctx context.Context, tx T, env aggregate.EventEnvelope, event any) error {
	h, ok := p.handlers[reflect.TypeOf(event)]
	if !ok {
		return nil
	}
	ptr := reflect.New(reflect.TypeOf(event))
	ptr.Elem().Set(reflect.ValueOf(event))
	if o, ok := any(tx).(*Output); ok {
		o.begin(env, nil)
	}
	return h(ctx, tx, env, ptr.Interface(), producer.Position{}, nil)
}

// HandleRecord runs p's handler of r's topic (OnRecord) with tx, as the
// runtime does, without Kafka: for tests of handlers (see package
// projectionstest). A record of a topic p has no record handler for is an
// error: p would never see it.
func (p *Projection[T]) HandleRecord(ctx context.Context, tx T, r *kgo.Record) error {
	fn, ok := p.raw[r.Topic]
	if !ok {
		return fmt.Errorf("projection %s has no record handler for topic %q (projections.OnRecord)", p.Name(), r.Topic)
	}
	return fn(ctx, tx, r)
}

// stackAttr is the log attribute of a panicking handler's stack, on its
// first failure (the retries repeat it), which the error's message leaves
// out; nil for any other error or attempt.
func stackAttr(err error, attempt int) []any {
	if pe := (*aggregate.PanicError)(nil); attempt == 1 && errors.As(err, &pe) {
		return []any{"stack", string(pe.Stack)}
	}
	return nil
}
