package interlock

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/consumer"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/snapshot"
)

// ErrInvalid is matched (errors.Is) by every error Build returns.
var ErrInvalid = errors.New("interlock: invalid application")

var topicPart = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// Hook is a user component started with the application and stopped with
// it: hooks start in registration order, after Kafka is ready and before
// commands are processed, and stop in reverse order.
type Hook struct {
	// Name identifies the hook in errors and logs.
	Name string
	// Start starts the component; an error aborts the application's start
	// (hooks already started are stopped). May be nil.
	Start func(ctx context.Context) error
	// Stop stops the component. May be nil.
	Stop func(ctx context.Context) error
}

// Builder assembles an application: its options, aggregates, hooks and
// middleware.
type Builder struct {
	opts     []Option
	aggs     []registered
	hooks    []Hook
	dispatch []middleware.Middleware
	handle   []middleware.Middleware
	query    []middleware.Middleware
	projs    []projections.Runner
}

type registered struct {
	t         aggregate.Type
	snapshots snapshot.Strategy
}

// AggregateOption configures one registered aggregate type.
type AggregateOption interface{ applyAggregate(*registered) }

type aggregateOptionFunc func(*registered)

func (f aggregateOptionFunc) applyAggregate(r *registered) { f(r) }

// Snapshots sets when the aggregate type's state is written to the
// snapshot store: snapshot.EveryN(n), snapshot.After(d) or
// snapshot.Never(). Default: at the flush interval (WithFlushInterval).
func Snapshots(s snapshot.Strategy) AggregateOption {
	return aggregateOptionFunc(func(r *registered) { r.snapshots = s })
}

// NewBuilder starts building an application with the given options.
func NewBuilder(opts ...Option) *Builder {
	return &Builder{opts: opts}
}

// RegisterAggregate registers an aggregate type (an *aggregate.Definition).
func (b *Builder) RegisterAggregate(t aggregate.Type, opts ...AggregateOption) *Builder {
	r := registered{t: t}
	for _, o := range opts {
		o.applyAggregate(&r)
	}
	b.aggs = append(b.aggs, r)
	return b
}

// RegisterHook registers a lifecycle hook.
func (b *Builder) RegisterHook(h Hook) *Builder {
	b.hooks = append(b.hooks, h)
	return b
}

// Use registers middleware on both sides: around Dispatch and Send, and
// around the handler in the processor. The first registered is the
// outermost on each side. See package middleware.
func (b *Builder) Use(mws ...middleware.Middleware) *Builder {
	return b.UseDispatch(mws...).UseHandle(mws...)
}

// UseDispatch registers middleware around Dispatch and Send, in the
// caller's process: the place to add metadata, refuse a command before it
// is sent, or retry one (middleware.RetryConflicts).
func (b *Builder) UseDispatch(mws ...middleware.Middleware) *Builder {
	b.dispatch = append(b.dispatch, mws...)
	return b
}

// UseHandle registers middleware around the aggregates' handlers in the
// processor, inside each command's transaction: the place for checks that
// need the processor's view, and for what should happen once per handled
// command. Keep it fast and deterministic: it runs while the partition
// waits.
func (b *Builder) UseHandle(mws ...middleware.Middleware) *Builder {
	b.handle = append(b.handle, mws...)
	return b
}

// UseQuery registers middleware around the answers to queries (Ask), in
// the asking process.
func (b *Builder) UseQuery(mws ...middleware.Middleware) *Builder {
	b.query = append(b.query, mws...)
	return b
}

// RegisterProjection registers a projection (a *projections.Projection):
// instances with RoleProject run it, every instance can Ask its queries.
func (b *Builder) RegisterProjection(p projections.Runner) *Builder {
	b.projs = append(b.projs, p)
	return b
}

// Build checks everything registered and returns the application, not yet
// started. It reports every mistake at once: invalid options, aggregates
// with no handler, a command type handled by two aggregates, an event type
// with no applier, a message type the codec cannot encode.
func (b *Builder) Build() (*App, error) {
	cfg := defaults()
	for _, o := range b.opts {
		o.apply(&cfg)
	}
	var errs []error
	if err := cfg.validate(); err != nil {
		errs = append(errs, err)
	}
	if len(b.aggs) == 0 {
		errs = append(errs, errors.New("no aggregate registered (use RegisterAggregate)"))
	}
	if cfg.builtin {
		cfg.openRegistry = builtinRegistry(cfg.name, cfg.replicationFactor)
	}
	var deferred *schema.DeferredRegistry
	// WithRegistry returns a codec without schemas (JSON) as it is: no
	// registry for it.
	if cfg.openRegistry != nil && schema.WithRegistry(cfg.codec, nil) != cfg.codec {
		deferred = &schema.DeferredRegistry{}
		cfg.codec = schema.WithRegistry(cfg.codec, deferred, schema.CompatibilityLevel(cfg.compat))
	}
	var regs []registration
	names := map[string]bool{}
	handledBy := map[reflect.Type]string{}
	var aggs []consumer.Aggregate
	for _, reg := range b.aggs {
		t := reg.t
		if err := t.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if names[t.Name()] {
			errs = append(errs, fmt.Errorf("aggregate %q is registered twice", t.Name()))
			continue
		}
		names[t.Name()] = true
		for _, c := range t.Commands() {
			if other, dup := handledBy[c.Type]; dup {
				errs = append(errs, fmt.Errorf("command %v is handled by two aggregates: %q and %q", c.Type, other, t.Name()))
			}
			handledBy[c.Type] = t.Name()
		}
		prefix := cfg.name + "." + t.Name()
		isCmd := map[reflect.Type]bool{}
		for _, c := range t.Commands() {
			isCmd[c.Type] = true
		}
		r, err := producer.NewRoute(t, prefix+".commands", prefix+".events", cfg.codec.Name(),
			func(rt reflect.Type) (producer.Serde, error) {
				s, err := cfg.codec.For(rt)
				if err == nil {
					topic := prefix + ".events"
					if isCmd[rt] {
						topic = prefix + ".commands"
					}
					regs = append(regs, registration{s, topic})
				}
				return s, err
			})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		agg := consumer.Aggregate{Route: r, Snapshots: reg.snapshots}
		if !reg.snapshots.IsNever() {
			if agg.State, err = cfg.codec.For(t.StateType()); err != nil {
				errs = append(errs, fmt.Errorf("aggregate %q: state %v cannot be encoded for snapshots (or register it with interlock.Snapshots(snapshot.Never())): %w", t.Name(), t.StateType(), err))
				continue
			}
			agg.Fingerprint = snapshot.Fingerprint(t.StateType(), cfg.codec.Name())
		}
		aggs = append(aggs, agg)
	}
	routes := make([]*producer.Route, len(aggs))
	for i, g := range aggs {
		routes[i] = g.Route
	}
	queries := map[reflect.Type][]query{}
	projNames := map[string]bool{}
	for _, p := range b.projs {
		if err := p.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if projNames[p.Name()] {
			errs = append(errs, fmt.Errorf("projection %q is registered twice", p.Name()))
			continue
		}
		projNames[p.Name()] = true
		for _, t := range p.EventTypes() {
			if !slices.ContainsFunc(routes, func(r *producer.Route) bool { _, ok := r.EventOf(t); return ok }) {
				errs = append(errs, fmt.Errorf("projection %q handles event %v, which no registered aggregate applies", p.Name(), t))
			}
		}
		for _, q := range p.Queries() {
			if others := queries[q.Type]; len(others) > 0 && others[0].family != p.Family() {
				errs = append(errs, fmt.Errorf("query %v is answered by two projections: %q and %q", q.Type, others[0].projection, p.Name()))
				continue
			}
			queries[q.Type] = append(queries[q.Type], query{projection: p.Name(), family: p.Family(), version: p.Version(), QueryHandler: q})
		}
	}
	var ups *schema.Upcasters
	if len(cfg.upcasters) > 0 {
		var err error
		if ups, err = schema.NewUpcasters(cfg.codec, cfg.upcasters...); err != nil {
			errs = append(errs, err)
		}
		for _, u := range cfg.upcasters {
			t := ups.Target(u.Old())
			if !slices.ContainsFunc(routes, func(r *producer.Route) bool { _, ok := r.EventOf(t); return ok }) {
				errs = append(errs, fmt.Errorf("an upcaster turns events into %v, which no registered aggregate applies", t))
			}
		}
	}
	for i, h := range b.hooks {
		if h.Name == "" {
			errs = append(errs, fmt.Errorf("hook %d has no name", i))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	if cfg.store == nil {
		cfg.store = snapshot.NewMemory()
	}
	app := &App{
		cfg: cfg, log: cfg.logger, aggs: aggs, hooks: b.hooks, projs: slices.Clone(b.projs), queries: queries,
		dispatchChain: middleware.Chain(slices.Clone(b.dispatch)...),
		queryChain:    middleware.Chain(slices.Clone(b.query)...),
		registry:      deferred, registrations: regs, upcasters: ups,
	}
	if len(b.handle) > 0 {
		app.handleChain = middleware.Chain(slices.Clone(b.handle)...)
	}
	return app, nil
}

// registration is a message type's Serde and the topic its records go to.
type registration struct {
	serde schema.Serde
	topic string
}
