package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/gateway"
	"github.com/interlock-go/interlock/metrics"
	"github.com/interlock-go/interlock/snapshot"
	"github.com/interlock-go/interlock/tracing"
)

// serve runs the application until ctx ends, with its metrics and health
// on HTTP.
func serve(ctx context.Context, inv *invocation) error {
	// What it runs with, secrets redacted (Config.LogValue), for whoever
	// must find out why it does not connect.
	inv.cfg.Logger.Info("interlock: serve", "config", inv.cfg)
	svc, err := newServer(ctx, inv)
	if err != nil {
		return err
	}
	var ln net.Listener
	if inv.cfg.HTTPAddr != "" {
		// Listen before starting, so a taken port fails at once.
		if ln, err = net.Listen("tcp", inv.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("serve: --http: %w", err)
		}
	}
	return svc.run(ctx, ln)
}

// server is serve's application with its metrics and HTTP handler.
type server struct {
	app     *interlock.App
	metrics *metrics.Metrics
	handler http.Handler
	log     *slog.Logger
	// drain bounds the application's close after ctx ends.
	drain time.Duration
	// running is set from the application's start to the beginning of its
	// drain: the App's Live, Ready, Stats and Lag wait while it starts or
	// closes, so probes and scrapes do not ask it then.
	running atomic.Bool
}

// newServer builds the application, not yet started, with the snapshot
// store of the configuration, Prometheus metrics (Interlock's, Go's and
// the process's) and the tracing middleware on the global OpenTelemetry
// provider. With no SDK installed tracing records nothing, but still
// carries a caller's trace context from each command to its events.
func newServer(ctx context.Context, inv *invocation) (*server, error) {
	cfg := inv.cfg
	svc := &server{log: cfg.Logger, drain: cfg.DrainTimeout}
	var extra []interlock.Option
	if cfg.RedisURL != "" {
		prefix := cfg.RedisKeyPrefix
		if prefix == "" {
			prefix = cfg.Name
		}
		rc := snapshot.RedisConfig{URL: cfg.RedisURL, Password: cfg.RedisPassword, KeyPrefix: prefix}
		if cfg.RedisTLSCAFile != "" {
			pem, err := os.ReadFile(cfg.RedisTLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("serve: --redis-tls-ca-file: %w", pathErr(err))
			}
			rc.TLS = &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
			if !rc.TLS.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("serve: --redis-tls-ca-file %s: no PEM certificate in it", cfg.RedisTLSCAFile)
			}
		}
		store, err := snapshot.NewRedis(ctx, rc)
		if err != nil {
			return nil, fmt.Errorf("serve: snapshot store: %w", err)
		}
		cfg.Cleanup(func() { store.Close() })
		extra = append(extra, interlock.WithSnapshotStore(store))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg)
	if err != nil {
		return nil, err
	}
	cfg.opts = append(cfg.opts, append(extra, interlock.WithObserver(m))...)
	b, err := inv.build(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("the build function returned no builder")
	}
	// Registered after the user's middleware, so inside it: the user's
	// own middleware (a rejection before the handler) is not measured.
	app, err := b.Use(tracing.Middleware(), m.Middleware()).Build()
	if err != nil {
		return nil, err
	}
	svc.app, svc.metrics = app, m
	mux := httpHandler(svc, m.Handler())
	if cfg.Gateway.Token != "" {
		gw, err := gateway.New(app, gateway.Config{Token: cfg.Gateway.Token, MaxBody: cfg.Gateway.MaxBody, Timeout: cfg.Gateway.Timeout, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		mux.Handle("/v1/", gw)
		cfg.Logger.Info("interlock: the HTTP JSON gateway answers on /v1/commands/{type} and /v1/queries/{type}")
	}
	svc.handler = mux
	return svc, nil
}

// run serves HTTP on ln (none when nil), starts the application, and on
// ctx's end closes the application, allowing its drain timeout, while
// HTTP keeps answering (the probes say 503 from the start of the drain,
// and /metrics no longer has the application's counters), then stops
// HTTP. An HTTP server that fails stops the service.
func (s *server) run(ctx context.Context, ln net.Listener) error {
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
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.drain)
	defer cancel()
	return errors.Join(failed, s.app.Close(closeCtx), stopHTTP())
}

// Live reports whether the application runs and is not stuck (false
// while it starts and drains).
func (s *server) Live() bool { return s.running.Load() && s.app.Live() }

// Ready reports whether the application runs with every owned partition
// restored (false while it starts and drains).
func (s *server) Ready() bool { return s.running.Load() && s.app.Ready() }

// health is what the probes ask: a server (an *interlock.App's state).
type health interface {
	Live() bool
	Ready() bool
}

// httpHandler routes /metrics to metricsHandler, and the probes to app:
// /healthz (liveness: App.Live) and /readyz (readiness: App.Ready) answer
// 200 or 503 with a one-line JSON body.
func httpHandler(app health, metricsHandler http.Handler) *http.ServeMux {
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
