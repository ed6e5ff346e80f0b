package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/metrics"
	"github.com/interlock-go/interlock/snapshot"
	"github.com/interlock-go/interlock/tracing"
)

// defaultHTTPAddr is where serve answers /metrics, /healthz and /readyz
// unless told otherwise: every interface, so probes and scrapers reach a
// pod or a container.
const defaultHTTPAddr = ":8080"

// serveConfig is what serve's flags and environment say.
type serveConfig struct {
	brokers, name, instance, roles, redisURL, httpAddr string
	log                                                *slog.Logger
}

// serve runs the example domains as a service until ctx ends (SIGINT or
// SIGTERM), with its metrics and health on HTTP.
func serve(ctx context.Context, args []string) error {
	cfg, err := parseServe(args, os.Stderr)
	if err != nil {
		return err
	}
	svc, err := newService(ctx, cfg)
	if err != nil {
		return err
	}
	defer svc.close()
	var ln net.Listener
	if cfg.httpAddr != "" {
		// Listen before starting, so a taken port fails at once.
		if ln, err = net.Listen("tcp", cfg.httpAddr); err != nil {
			return fmt.Errorf("serve: --http: %w", err)
		}
	}
	return svc.run(ctx, ln)
}

func parseServe(args []string, stderr io.Writer) (serveConfig, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serveConfig
	fs.StringVar(&cfg.brokers, "brokers", os.Getenv("INTERLOCK_BROKERS"), "comma-separated Kafka seed brokers (env INTERLOCK_BROKERS; empty: an embedded Kafka)")
	fs.StringVar(&cfg.name, "name", envOr("INTERLOCK_NAME", "interlock"), "application name: the topic prefix (env INTERLOCK_NAME)")
	fs.StringVar(&cfg.instance, "instance-id", os.Getenv("INTERLOCK_INSTANCE_ID"), "stable instance ID, e.g. the pod name (env INTERLOCK_INSTANCE_ID; default: hostname and a random suffix)")
	fs.StringVar(&cfg.roles, "roles", envOr("INTERLOCK_ROLES", "dispatch,process"), "roles of this instance: dispatch, process (env INTERLOCK_ROLES)")
	fs.StringVar(&cfg.redisURL, "redis", "", "Redis URL of the snapshot store, redis://[user@]host:port/db (env INTERLOCK_REDIS_URL; its password from INTERLOCK_REDIS_PASSWORD; default: in-process snapshots)")
	fs.StringVar(&cfg.httpAddr, "http", envOr("INTERLOCK_HTTP_ADDR", defaultHTTPAddr), "address of the HTTP server for /metrics, /healthz and /readyz (env INTERLOCK_HTTP_ADDR; \"off\": none)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if cfg.redisURL == "" {
		cfg.redisURL = os.Getenv("INTERLOCK_REDIS_URL")
	}
	if cfg.httpAddr == "off" {
		cfg.httpAddr = ""
	}
	cfg.log = slog.New(slog.NewJSONHandler(stderr, nil))
	return cfg, nil
}

// service is serve's application with its metrics and HTTP handler.
type service struct {
	app     *interlock.App
	metrics *metrics.Metrics
	handler http.Handler
	log     *slog.Logger
	closers []func() error
	// running is set from the application's start to the beginning of its
	// drain: the App's Live, Ready, Stats and Lag wait while it starts or
	// closes, so probes and scrapes do not ask it then.
	running atomic.Bool
}

// newService builds the application of cfg, not yet started: the bank
// domain with Prometheus metrics (Interlock's, Go's and the process's) and
// the tracing middleware on the global OpenTelemetry provider.
func newService(ctx context.Context, cfg serveConfig) (*service, error) {
	svc := &service{log: cfg.log}
	opts := []interlock.Option{interlock.WithName(cfg.name), interlock.WithLogger(cfg.log)}
	if cfg.brokers != "" {
		opts = append(opts, interlock.WithBrokers(strings.Split(cfg.brokers, ",")...))
	}
	if cfg.instance != "" {
		opts = append(opts, interlock.WithInstanceID(cfg.instance))
	}
	var r interlock.Role
	for _, s := range strings.Split(cfg.roles, ",") {
		switch strings.TrimSpace(s) {
		case "dispatch":
			r |= interlock.RoleDispatch
		case "process":
			r |= interlock.RoleProcess
		default:
			return nil, fmt.Errorf("serve: unknown role %q (use dispatch, process)", s)
		}
	}
	opts = append(opts, interlock.WithRoles(r))
	if cfg.redisURL != "" {
		store, err := snapshot.NewRedis(ctx, snapshot.RedisConfig{URL: cfg.redisURL, Password: os.Getenv("INTERLOCK_REDIS_PASSWORD")})
		if err != nil {
			return nil, fmt.Errorf("serve: snapshot store: %w", err)
		}
		svc.closers = append(svc.closers, store.Close)
		opts = append(opts, interlock.WithSnapshotStore(store))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg)
	if err != nil {
		svc.close()
		return nil, err
	}
	opts = append(opts, interlock.WithObserver(m))
	// Tracing first: its spans cover the other middleware. With no SDK
	// installed it records nothing, but still carries a caller's trace
	// context from each command to its events.
	app, err := interlock.NewBuilder(opts...).
		RegisterAggregate(bank.Accounts()).
		Use(tracing.Middleware(), m.Middleware()).
		Build()
	if err != nil {
		svc.close()
		return nil, err
	}
	svc.app, svc.metrics = app, m
	svc.handler = httpHandler(svc, m.Handler())
	return svc, nil
}

func (s *service) close() {
	for _, c := range s.closers {
		c()
	}
}

// run serves HTTP on ln (none when nil), starts the application, and on
// ctx's end closes the application, allowing up to 30 seconds to drain,
// while HTTP keeps answering (the probes say 503 from the start of the
// drain, and /metrics no longer has the application's counters), then
// stops HTTP. An HTTP server that fails stops the service.
func (s *service) run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	if ln != nil {
		s.log.Info("interlock: serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
		go func() { served <- srv.Serve(ln) }()
	}
	stopHTTP := func() error {
		if ln == nil {
			return nil
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}
	if err := s.app.Start(ctx); err != nil {
		return errors.Join(err, stopHTTP())
	}
	s.metrics.Watch(s.app)
	s.running.Store(true)
	var failed error
	select {
	case <-ctx.Done():
	case err := <-served:
		failed = fmt.Errorf("serve: HTTP server: %w", err)
		served <- http.ErrServerClosed // for stopHTTP
	}
	s.running.Store(false)
	s.metrics.Watch(nil)
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return errors.Join(failed, s.app.Close(closeCtx), stopHTTP())
}

// Live reports whether the application runs and is not stuck (false
// while it starts and drains).
func (s *service) Live() bool { return s.running.Load() && s.app.Live() }

// Ready reports whether the application runs with every owned partition
// restored (false while it starts and drains).
func (s *service) Ready() bool { return s.running.Load() && s.app.Ready() }

// health is what the probes ask: a service (an *interlock.App's state).
type health interface {
	Live() bool
	Ready() bool
}

// httpHandler routes /metrics to metricsHandler, and the probes to app:
// /healthz (liveness: App.Live) and /readyz (readiness: App.Ready) answer
// 200 or 503 with a one-line JSON body.
func httpHandler(app health, metricsHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler)
	mux.Handle("GET /healthz", probe("live", app.Live))
	mux.Handle("GET /readyz", probe("ready", app.Ready))
	return mux
}

func probe(name string, check func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ok := check()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, "{%q:%t}\n", name, ok)
	})
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
