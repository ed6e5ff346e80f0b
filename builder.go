package interlock

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/producer"
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

// Builder assembles an application: its options, aggregates and hooks.
type Builder struct {
	opts  []Option
	aggs  []aggregate.Type
	hooks []Hook
}

// NewBuilder starts building an application with the given options.
func NewBuilder(opts ...Option) *Builder {
	return &Builder{opts: opts}
}

// RegisterAggregate registers an aggregate type (an *aggregate.Definition).
func (b *Builder) RegisterAggregate(t aggregate.Type) *Builder {
	b.aggs = append(b.aggs, t)
	return b
}

// RegisterHook registers a lifecycle hook.
func (b *Builder) RegisterHook(h Hook) *Builder {
	b.hooks = append(b.hooks, h)
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
	names := map[string]bool{}
	handledBy := map[reflect.Type]string{}
	var routes []*producer.Route
	for _, t := range b.aggs {
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
		r, err := producer.NewRoute(t, prefix+".commands", prefix+".events", cfg.codec.Name(),
			func(rt reflect.Type) (producer.Serde, error) { return cfg.codec.For(rt) })
		if err != nil {
			errs = append(errs, err)
			continue
		}
		routes = append(routes, r)
	}
	for i, h := range b.hooks {
		if h.Name == "" {
			errs = append(errs, fmt.Errorf("hook %d has no name", i))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return &App{cfg: cfg, log: cfg.logger, routes: routes, hooks: b.hooks}, nil
}
