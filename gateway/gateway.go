// Package gateway is an HTTP JSON gateway to an application, so services
// written in other languages can dispatch commands and ask queries:
//
//	POST /v1/commands/{type}   {"aggregateId": "01J…", "payload": {…}}
//	POST /v1/queries/{type}    {"query": {…}, "after": [positions]}
//
// Every request needs the bearer token (Authorization: Bearer <token>).
// A command's body may also carry "commandId" (retry with the same ID:
// applied at most once, the retry gets the first outcome),
// "correlationId", "causationId" and "expectedVersion"; instead of a
// commandId, an Idempotency-Key header (any string of the caller's) gives
// the command ID aggregate.KeyID(aggregateId, type+":"+key), so a retry
// with the same key is applied at most once too (the same key on another
// command type is another command). Its answer is
// {"commandId", "version", "positions", "result"}. A query's "after" takes
// the positions a command's answer gave: read your writes.
//
// Errors are JSON, {"error": {"code": …, "message": …, "reason": …}}, with
// these statuses: 400 a body that is not valid (malformed JSON, an unknown
// field, a missing aggregate ID), 401 no or a wrong token, 404 an unknown
// type or route, 405 a method other than POST, 409 an expected-version
// conflict, 413 a body over the limit, 422 a command the domain rejected,
// 503 the application not ready or closing, 504 no answer in time (the
// command may still be applied: retry it with its command ID), 500 a
// command that failed. A rejection's "reason" is the error the aggregate
// declared (aggregate.Errors) that it matched, if any: a stable value to
// branch on, where the message carries details.
package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/projections"
)

// Config configures a gateway.
type Config struct {
	// Token is the bearer token every request must carry. Required: a
	// gateway without one refuses to be built.
	Token string
	// MaxBody bounds a request's body. Default 1 MiB.
	MaxBody int64
	// Timeout bounds the wait for a command's outcome or a query's answer.
	// Default 30 s.
	Timeout time.Duration
	// Logger receives one record per failed request (never bodies or the
	// token). Default slog.Default().
	Logger *slog.Logger
}

// Gateway is the HTTP handler of an application's gateway.
type Gateway struct {
	app      *interlock.App
	cfg      Config
	commands map[string]reflect.Type
	queries  map[string]reflect.Type
	mux      *http.ServeMux
}

// New returns the gateway of app, a built application (it may be started
// later; until it is ready, requests get 503).
func New(app *interlock.App, cfg Config) (*Gateway, error) {
	if cfg.Token == "" {
		return nil, errors.New("gateway: a token is required")
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Gateway{app: app, cfg: cfg, mux: http.NewServeMux()}
	g.commands, g.queries = app.MessageTypes()
	g.mux.HandleFunc("POST /v1/commands/{type}", g.command)
	g.mux.HandleFunc("POST /v1/queries/{type}", g.query)
	// Every other request gets a JSON error too, not the mux's plain text.
	g.mux.HandleFunc("/v1/commands/{type}", g.methodNotAllowed)
	g.mux.HandleFunc("/v1/queries/{type}", g.methodNotAllowed)
	g.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		g.fail(w, r, http.StatusNotFound, "not_found", fmt.Errorf("no route %s: use POST /v1/commands/{type} or /v1/queries/{type}", r.URL.Path))
	})
	return g, nil
}

func (g *Gateway) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	g.fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Errorf("%s %s: use POST", r.Method, r.URL.Path))
}

// ServeHTTP serves the gateway's routes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(auth), []byte(g.cfg.Token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="interlock"`)
		g.fail(w, r, http.StatusUnauthorized, "unauthorized", errors.New("a valid bearer token is required"))
		return
	}
	g.mux.ServeHTTP(w, r)
}

// commandRequest is the body of POST /v1/commands/{type}.
type commandRequest struct {
	AggregateID     string          `json:"aggregateId"`
	CommandID       string          `json:"commandId,omitempty"`
	CorrelationID   string          `json:"correlationId,omitempty"`
	CausationID     string          `json:"causationId,omitempty"`
	ExpectedVersion *int64          `json:"expectedVersion,omitempty"`
	Payload         json.RawMessage `json:"payload"`
}

// commandResponse is the answer to an applied command.
type commandResponse struct {
	CommandID string               `json:"commandId"`
	Version   int64                `json:"version"`
	Positions []interlock.Position `json:"positions"`
	Result    json.RawMessage      `json:"result,omitempty"`
}

func (g *Gateway) command(w http.ResponseWriter, r *http.Request) {
	t, ok := g.commands[r.PathValue("type")]
	if !ok {
		g.fail(w, r, http.StatusNotFound, "unknown_type", fmt.Errorf("no command type %q", r.PathValue("type")))
		return
	}
	var req commandRequest
	if !g.decode(w, r, &req) {
		return
	}
	env, err := envelope(req, r.PathValue("type"), r.Header.Get("Idempotency-Key"))
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "bad_request", err)
		return
	}
	ptr := reflect.New(t)
	if len(req.Payload) > 0 {
		if err := strict(req.Payload, ptr.Interface()); err != nil {
			g.fail(w, r, http.StatusBadRequest, "bad_request", fmt.Errorf("payload of %s: %w", t.Name(), err))
			return
		}
	}
	aggregate.SetEnvelope(ptr.Interface(), env)
	if !g.ready(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()
	res, err := interlock.DispatchValue(ctx, g.app, ptr.Elem().Interface())
	if err != nil {
		g.failDispatch(w, r, res.CommandID, err)
		return
	}
	if res.Positions == nil {
		res.Positions = []interlock.Position{}
	}
	g.reply(w, http.StatusOK, commandResponse{CommandID: res.CommandID.String(), Version: res.Version, Positions: res.Positions, Result: res.Value})
}

// envelope returns the command envelope a request for a command of type
// typ asks for, with the command ID of its Idempotency-Key header when it
// has one. The key is the request's: the same key on a request for another
// command type is another command.
func envelope(req commandRequest, typ, key string) (aggregate.Command, error) {
	var env aggregate.Command
	var err error
	if env.AggregateID, err = ulid.ParseStrict(req.AggregateID); err != nil {
		return env, fmt.Errorf("aggregateId %q is not a ULID: %w", req.AggregateID, err)
	}
	switch {
	case req.CommandID != "" && key != "":
		return env, errors.New("give a commandId or an Idempotency-Key header, not both")
	case key != "":
		env = env.WithKey(typ + ":" + key)
	case req.CommandID != "":
		if env.CommandID, err = ulid.ParseStrict(req.CommandID); err != nil {
			return env, fmt.Errorf("commandId %q is not a ULID: %w", req.CommandID, err)
		}
	}
	if req.ExpectedVersion != nil && *req.ExpectedVersion < 0 {
		return env, fmt.Errorf("expectedVersion %d is negative", *req.ExpectedVersion)
	}
	env.CorrelationID, env.CausationID, env.ExpectedVersion = req.CorrelationID, req.CausationID, req.ExpectedVersion
	return env, nil
}

// queryRequest is the body of POST /v1/queries/{type}.
type queryRequest struct {
	Query json.RawMessage      `json:"query"`
	After []interlock.Position `json:"after,omitempty"`
}

func (g *Gateway) query(w http.ResponseWriter, r *http.Request) {
	t, ok := g.queries[r.PathValue("type")]
	if !ok {
		g.fail(w, r, http.StatusNotFound, "unknown_type", fmt.Errorf("no query type %q", r.PathValue("type")))
		return
	}
	var req queryRequest
	if !g.decode(w, r, &req) {
		return
	}
	ptr := reflect.New(t)
	if len(req.Query) > 0 {
		if err := strict(req.Query, ptr.Interface()); err != nil {
			g.fail(w, r, http.StatusBadRequest, "bad_request", fmt.Errorf("query %s: %w", t.Name(), err))
			return
		}
	}
	projections.SetAfter(ptr.Interface(), req.After)
	if !g.ready(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()
	v, err := interlock.AskValue(ctx, g.app, ptr.Elem().Interface())
	if err != nil {
		g.failDispatch(w, r, ulid.ULID{}, err)
		return
	}
	g.reply(w, http.StatusOK, map[string]any{"result": v})
}

// decode reads the request body into v, strictly and within the limit.
func (g *Gateway) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, g.cfg.MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		g.fail(w, r, http.StatusRequestEntityTooLarge, "too_large", fmt.Errorf("the body is over %d bytes", tooBig.Limit))
		return false
	case err != nil:
		g.fail(w, r, http.StatusBadRequest, "bad_request", fmt.Errorf("the body: %w", err))
		return false
	}
	return true
}

// strict decodes b into v, refusing unknown fields.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (g *Gateway) ready(w http.ResponseWriter, r *http.Request) bool {
	if g.app.Ready() {
		return true
	}
	w.Header().Set("Retry-After", "1")
	g.fail(w, r, http.StatusServiceUnavailable, "not_ready", errors.New("the application is not ready"))
	return false
}

// failDispatch answers the error of a command or a query.
func (g *Gateway) failDispatch(w http.ResponseWriter, r *http.Request, id ulid.ULID, err error) {
	var rej *interlock.RejectedError
	switch {
	case errors.Is(err, interlock.ErrConcurrency):
		g.fail(w, r, http.StatusConflict, "concurrency", err)
	case errors.As(err, &rej):
		var declared string // the aggregate's declared error, for clients to branch on
		if rej.Err != nil {
			declared = rej.Err.Error()
		}
		g.failWith(w, r, http.StatusUnprocessableEntity, "rejected", errors.New(rej.Reason), declared)
	case errors.Is(err, interlock.ErrNotStarted), errors.Is(err, interlock.ErrClosed):
		w.Header().Set("Retry-After", "1")
		g.fail(w, r, http.StatusServiceUnavailable, "not_ready", err)
	case errors.Is(err, context.DeadlineExceeded):
		msg := "no answer in time"
		if id != (ulid.ULID{}) {
			msg += fmt.Sprintf("; the command may still be applied: retry it with commandId %s", id)
		}
		g.fail(w, r, http.StatusGatewayTimeout, "timeout", errors.New(msg))
	case errors.Is(err, interlock.ErrUnknownCommand), errors.Is(err, interlock.ErrUnknownQuery):
		g.fail(w, r, http.StatusNotFound, "unknown_type", err)
	default:
		g.fail(w, r, http.StatusInternalServerError, "failed", err)
	}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		// Reason is the declared error (aggregate.Errors) a rejection
		// matched: a stable value to branch on, where the message may
		// carry details.
		Reason string `json:"reason,omitempty"`
	} `json:"error"`
}

func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, status int, code string, err error) {
	g.failWith(w, r, status, code, err, "")
}

func (g *Gateway) failWith(w http.ResponseWriter, r *http.Request, status int, code string, err error, reason string) {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.Reason = code, err.Error(), reason
	g.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "interlock: gateway request failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status), slog.String("err", err.Error()))
	g.reply(w, status, b)
}

func (g *Gateway) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
