package interlock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/consumer"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/schema"
)

// App is a built application. Start it, use Dispatch and Send, Close it.
type App struct {
	cfg   config
	log   *slog.Logger
	aggs  []consumer.Aggregate
	hooks []Hook
	projs []projections.Runner
	// queries are the registered queries by type: one per version of the
	// projection that answers it. active is, per projection family, the
	// version that answers, once a newer one caught up.
	queries map[reflect.Type][]query
	active  map[string]activeVersion
	// dispatchChain, handleChain and queryChain are the registered
	// middleware (handleChain is nil when there is none).
	dispatchChain, handleChain, queryChain middleware.Middleware

	// lifecycle serializes Start, Close and CheckSchemas. mu guards state
	// and is held only briefly, so probes and scrapes never wait for a
	// start or a drain. The fields below it are written by Start alone,
	// while the state is starting; readers look at them only once the
	// state (read under mu) says started or closing.
	lifecycle  sync.Mutex
	mu         sync.Mutex
	state      lifecycleState
	cluster    *kfake.Cluster
	brokers    []string
	started    []Hook
	dispatcher *producer.Dispatcher
	processor  *consumer.Processor
	projectors map[string]*projections.Projector

	// registry is where the codec's schemas live once it is open (nil:
	// no registry); registrations are the message types to register at
	// start; closeRegistry closes a registry the application opened.
	registry      *schema.DeferredRegistry
	registrations []registration
	upcasters     *schema.Upcasters
	closeRegistry func()
}

type lifecycleState uint8

const (
	built lifecycleState = iota
	starting
	started
	closing
	closed
)

// running returns whether the application's parts may be read: started,
// or closing (still draining).
func (a *App) running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state == started || a.state == closing
}

func (a *App) setState(s lifecycleState) {
	a.mu.Lock()
	a.state = s
	a.mu.Unlock()
}

// Brokers returns the seed brokers the application uses: the configured
// ones, or the embedded Kafka's addresses once started.
func (a *App) Brokers() []string {
	if !a.running() {
		return a.cfg.brokers
	}
	return a.brokers
}

// Start connects to Kafka (or starts the embedded one), creates missing
// topics, starts the hooks in order, then the dispatcher and the processor,
// as the roles say. On error, everything already started is stopped.
func (a *App) Start(ctx context.Context) (err error) {
	a.lifecycle.Lock()
	defer a.lifecycle.Unlock()
	a.mu.Lock()
	state := a.state
	if state == built {
		a.state = starting
	}
	a.mu.Unlock()
	if state != built {
		return errors.New("interlock: application already started")
	}
	defer func() {
		if err != nil {
			a.stop(context.WithoutCancel(ctx))
		} else {
			a.setState(started)
		}
	}()

	a.brokers = a.cfg.brokers
	if len(a.brokers) == 0 {
		opts := []kfake.Opt{kfake.NumBrokers(1)}
		if a.cfg.dataDir != "" {
			opts = append(opts, kfake.DataDir(a.cfg.dataDir))
		}
		if a.cluster, err = kfake.NewCluster(opts...); err != nil {
			return fmt.Errorf("interlock: starting the embedded Kafka: %w", err)
		}
		a.brokers = a.cluster.ListenAddrs()
		where := "in memory"
		if a.cfg.dataDir != "" {
			where = a.cfg.dataDir
		}
		a.log.Info("interlock: no brokers configured; running an embedded Kafka (kfake) for development", "addr", a.brokers[0], "data", where)
	}
	clientOpts := append([]kgo.Opt{kgo.SeedBrokers(a.brokers...)}, a.cfg.clientOpts...)

	adminClient, err := kgo.NewClient(clientOpts...)
	if err != nil {
		return fmt.Errorf("interlock: %w", err)
	}
	err = a.ensureTopics(ctx, kadm.NewClient(adminClient))
	adminClient.Close()
	if err != nil {
		return fmt.Errorf("interlock: %w", err)
	}
	if err := a.openRegistry(ctx, clientOpts); err != nil {
		return err
	}
	for _, r := range a.registrations {
		if _, err := schema.Register(ctx, r.serde, r.topic); err != nil {
			return fmt.Errorf("interlock: %w", err)
		}
	}
	if err := a.checkUpcasters(ctx); err != nil {
		return fmt.Errorf("interlock: %w", err)
	}

	for _, h := range a.hooks {
		if h.Start != nil {
			if err := h.Start(ctx); err != nil {
				return fmt.Errorf("interlock: starting hook %s: %w", h.Name, err)
			}
		}
		a.started = append(a.started, h)
	}
	if a.cfg.roles&RoleProcess != 0 {
		a.processor, err = consumer.New(ctx, consumer.Config{
			ClientOpts:         clientOpts,
			Group:              a.cfg.name + ".processors",
			TransactionalID:    a.cfg.name + ".processor." + a.cfg.instanceID,
			TransactionTimeout: a.cfg.transactionTimeout,
			SessionTimeout:     a.cfg.sessionTimeout,
			RepliesTopic:       a.repliesTopic(),
			Aggregates:         a.aggs,
			Store:              a.cfg.store,
			MaxCached:          a.cfg.maxCached,
			MaxCachedBytes:     a.cfg.maxCachedBytes,
			FlushInterval:      a.cfg.flushInterval,
			IdempotencyWindow:  a.cfg.idempotencyWindow,
			Logger:             a.log,
			Middleware:         a.handleChain,
			Observers:          a.cfg.observers,
			Upcasters:          a.upcasters,
		})
		if err != nil {
			return fmt.Errorf("interlock: %w", err)
		}
	}
	if a.cfg.roles&RoleDispatch != 0 {
		a.dispatcher, err = producer.NewDispatcher(ctx, producer.DispatcherConfig{
			ClientOpts:   clientOpts,
			RepliesTopic: a.repliesTopic(),
			InstanceID:   a.cfg.instanceID,
			Routes:       a.routes(),
			Logger:       a.log,
		})
		if err != nil {
			return fmt.Errorf("interlock: %w", err)
		}
	}
	a.projectors = map[string]*projections.Projector{}
	for _, p := range a.projs {
		pr, err := p.Start(ctx, projections.Config{
			ClientOpts: append(clientOpts[:len(clientOpts):len(clientOpts)],
				kgo.SessionTimeout(a.cfg.sessionTimeout), kgo.TransactionTimeout(a.cfg.transactionTimeout)),
			Group:           a.cfg.name + ".projection." + p.Name(),
			TransactionalID: a.cfg.name + ".projection." + p.Name() + "." + a.cfg.instanceID,
			DeadLetterTopic: a.deadLetterTopic(p.Name()),
			Routes:          a.routes(),
			Upcasters:       a.upcasters,
			Logger:          a.log,
			Passive:         a.cfg.roles&RoleProject == 0,
			Observers:       a.cfg.observers,
		})
		if err != nil {
			return fmt.Errorf("interlock: %w", err)
		}
		a.projectors[p.Name()] = pr
	}
	a.log.Info("interlock: started", "name", a.cfg.name, "instance", a.cfg.instanceID, "aggregates", len(a.aggs), "projections", len(a.projs))
	return nil
}

// Close stops the application gracefully: the dispatcher stops taking
// commands and waits for the replies of those in flight, the processor
// finishes its batch and leaves the group, hooks stop in reverse order, and
// the embedded Kafka, if any, shuts down. It gets less graceful when ctx
// ends, never dropping a committed command. Close is safe to call twice.
func (a *App) Close(ctx context.Context) error {
	a.lifecycle.Lock()
	defer a.lifecycle.Unlock()
	a.mu.Lock()
	state := a.state
	a.mu.Unlock()
	if state != started {
		return nil
	}
	return a.stop(ctx)
}

// stop stops what Start started; the caller holds the lifecycle lock.
func (a *App) stop(ctx context.Context) error {
	a.setState(closing)
	defer a.setState(closed)
	var errs []error
	if a.dispatcher != nil {
		errs = append(errs, a.dispatcher.Close(ctx))
	}
	if a.processor != nil {
		errs = append(errs, a.processor.Close(ctx))
	}
	for _, pr := range a.projectors {
		errs = append(errs, pr.Close(ctx))
	}
	for i := len(a.started) - 1; i >= 0; i-- {
		if h := a.started[i]; h.Stop != nil {
			if err := h.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stopping hook %s: %w", h.Name, err))
			}
		}
	}
	if a.closeRegistry != nil {
		a.closeRegistry()
	}
	if a.cluster != nil {
		a.cluster.Close()
	}
	a.log.Info("interlock: stopped", "name", a.cfg.name)
	return errors.Join(errs...)
}

// Run starts the application, blocks until ctx ends or the process gets
// SIGINT or SIGTERM, then closes it, allowing up to 30 seconds to drain.
func (a *App) Run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := a.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return a.Close(closeCtx)
}

func (a *App) dispatcherFor() (*producer.Dispatcher, error) {
	a.mu.Lock()
	state := a.state
	a.mu.Unlock()
	switch {
	case state == closing:
		return nil, ErrClosed
	case state != started || a.dispatcher == nil:
		return nil, ErrNotStarted
	}
	return a.dispatcher, nil
}

func (a *App) routes() []*producer.Route {
	rs := make([]*producer.Route, len(a.aggs))
	for i, g := range a.aggs {
		rs[i] = g.Route
	}
	return rs
}

// ProcessorStats are a processor's counters: commands by outcome, restores
// and replayed events, snapshot store traffic and errors, cache size.
type ProcessorStats = consumer.Stats

// Stats returns the processor's counters (zero when the instance does not
// process commands).
func (a *App) Stats() ProcessorStats {
	if !a.running() || a.processor == nil {
		return ProcessorStats{}
	}
	return a.processor.Stats()
}

// Ready reports whether the application serves: started, and, when it
// processes commands, joined to its group with every partition it owns
// restored. Use it for readiness probes.
func (a *App) Ready() bool {
	a.mu.Lock()
	state := a.state
	a.mu.Unlock()
	return state == started && (a.processor == nil || a.processor.Ready())
}

// Live reports whether the application is not stuck: started, and its
// processor (if any) has made progress recently or is replaying events (see
// consumer.Processor.Live). A processor stopped because another instance
// took its transactional ID, or because Kafka refused it an operation (an
// ACL missing: docs/security.md), is not live. Use it for liveness probes.
func (a *App) Live() bool {
	a.mu.Lock()
	state := a.state
	a.mu.Unlock()
	return state == started && (a.processor == nil || a.processor.Live())
}

// Lag returns, per commands topic and partition this instance owns, how
// many committed commands wait behind the last one it fetched (nil when it
// does not process commands).
func (a *App) Lag() map[string]map[int32]int64 {
	if !a.running() || a.processor == nil {
		return nil
	}
	return a.processor.Lag()
}

// Projectors returns the application's projections, running or followed
// passively (by an instance without RoleProject), in registration order.
func (a *App) Projectors() []*projections.Projector {
	if !a.running() {
		return nil
	}
	out := make([]*projections.Projector, 0, len(a.projectors))
	for _, p := range a.projs {
		out = append(out, a.projectors[p.Name()])
	}
	return out
}

// Projection returns the running projection named name, or nil.
func (a *App) Projection(name string) *projections.Projector {
	if !a.running() {
		return nil
	}
	return a.projectors[name]
}

// openRegistry opens the schema registry, if the application has one, and
// hands it to the codec.
func (a *App) openRegistry(ctx context.Context, clientOpts []kgo.Opt) error {
	if a.registry == nil {
		return nil
	}
	reg, err := a.cfg.openRegistry(ctx, clientOpts)
	if err != nil {
		return fmt.Errorf("interlock: schema registry: %w", err)
	}
	if c, ok := reg.(interface{ Close() }); ok && a.cfg.builtin {
		a.closeRegistry = c.Close
	}
	a.registry.Set(reg)
	return nil
}

// CheckSchemas checks, without starting the application or registering
// anything, that the schema of every command and event type is compatible
// with what the registry holds for it at the compatibility level: what
// `interlock schema check` runs in CI pipelines. Errors name the type, the
// field and the rule broken (*schema.IncompatibleError); all are reported.
// Call it on an application that is built, not started.
func (a *App) CheckSchemas(ctx context.Context) error {
	a.lifecycle.Lock()
	defer a.lifecycle.Unlock()
	if a.registry == nil {
		return nil
	}
	if a.cfg.builtin && len(a.cfg.brokers) == 0 {
		return errors.New("interlock: checking schemas needs brokers (WithBrokers): the built-in registry lives in Kafka")
	}
	if err := a.openRegistry(ctx, append([]kgo.Opt{kgo.SeedBrokers(a.cfg.brokers...)}, a.cfg.clientOpts...)); err != nil {
		return err
	}
	if a.closeRegistry != nil {
		defer a.closeRegistry()
	}
	var errs []error
	for _, r := range a.registrations {
		errs = append(errs, schema.Check(ctx, r.serde, r.topic))
	}
	errs = append(errs, a.checkUpcasters(ctx))
	return errors.Join(errs...)
}

// checkUpcasters checks, per events topic, that what was recorded under
// the record names of the upcasters' old types can still be read by one
// of the readers of that name (schema.CheckCoverage).
func (a *App) checkUpcasters(ctx context.Context) error {
	if a.upcasters == nil {
		return nil
	}
	old := map[string][]schema.Serde{} // by events topic
	for t, s := range a.upcasters.Readers() {
		target := a.upcasters.Target(t)
		for _, g := range a.aggs {
			if _, ok := g.Route.EventOf(target); ok {
				old[g.Route.EventsTopic] = append(old[g.Route.EventsTopic], s)
			}
		}
	}
	current := map[string][]schema.Serde{}
	for _, r := range a.registrations {
		current[r.topic] = append(current[r.topic], r.serde)
	}
	var errs []error
	for _, topic := range slices.Sorted(maps.Keys(old)) {
		if err := schema.CheckCoverage(ctx, topic, current[topic], old[topic]); err != nil {
			errs = append(errs, fmt.Errorf("events of %s that the upcasters' old types should read: %w", topic, err))
		}
	}
	return errors.Join(errs...)
}
