package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/middleware"
)

func TestLogging(t *testing.T) {
	id, cid := ulid.Make(), ulid.Make()
	cmd := deposit{Command: aggregate.Command{AggregateID: id, CommandID: cid, CorrelationID: "flow-1"}, Amount: 4242}
	cases := []struct {
		name    string
		side    middleware.Side
		async   bool
		err     error
		opts    []middleware.LogOption
		level   string
		outcome string
		want    map[string]any
	}{
		{name: "applied", side: middleware.Handle, level: "INFO", outcome: "applied",
			want: map[string]any{"version": 3.0, "events": 2.0, "side": "handle"}},
		{name: "sent", side: middleware.Dispatch, async: true, level: "INFO", outcome: "sent"},
		{name: "debug level", side: middleware.Dispatch, opts: []middleware.LogOption{middleware.LogLevel(slog.LevelDebug)},
			level: "DEBUG", outcome: "applied", want: map[string]any{"side": "dispatch"}},
		{name: "rejected", side: middleware.Dispatch, err: aggregate.Reject(errors.New("insufficient funds")),
			level: "INFO", outcome: "rejected", want: map[string]any{"reason": "insufficient funds"}},
		{name: "failed", side: middleware.Handle, err: fmt.Errorf("broker down"),
			level: "ERROR", outcome: "failed", want: map[string]any{"err": "broker down"}},
		{name: "payload", side: middleware.Handle, opts: []middleware.LogOption{middleware.LogPayloads()},
			level: "INFO", outcome: "applied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			h := middleware.Logging(log, tc.opts...)(func(context.Context, *middleware.Message) (middleware.Outcome, error) {
				return middleware.Outcome{Version: 3, Events: []any{1, 2}}, tc.err
			})
			m := msg(cmd)
			m.Side, m.Async = tc.side, tc.async
			if _, err := h(context.Background(), m); err != tc.err {
				t.Fatalf("err %v, want the handler's %v", err, tc.err)
			}
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("one JSON record expected: %v\n%s", err, buf.String())
			}
			base := map[string]any{
				"level": tc.level, "msg": "interlock: command " + tc.outcome, "outcome": tc.outcome,
				"type": "deposit", "aggregate": "account", "aggregate_id": id.String(),
				"command_id": cid.String(), "correlation_id": "flow-1",
			}
			for k, v := range tc.want {
				base[k] = v
			}
			for k, v := range base {
				if rec[k] != v {
					t.Errorf("%s = %v, want %v", k, rec[k], v)
				}
			}
			if _, ok := rec["duration"]; !ok {
				t.Error("no duration")
			}
			payload := strings.Contains(buf.String(), "4242")
			if payload != (tc.name == "payload") {
				t.Errorf("payload logged: %v\n%s", payload, buf.String())
			}
		})
	}
}

// TestLoggingQuery: a query's record says it is a query, with its type,
// the projection that answered it, its outcome and duration, and no
// command fields.
func TestLoggingQuery(t *testing.T) {
	type balanceOf struct{ Account string }
	cases := []struct {
		err     error
		level   string
		outcome string
	}{
		{nil, "INFO", "answered"},
		{aggregate.Reject(errors.New("not yours")), "INFO", "rejected"},
		{errors.New("database down"), "ERROR", "failed"},
	}
	for _, tc := range cases {
		t.Run(tc.outcome, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, nil))
			h := middleware.Logging(log)(func(context.Context, *middleware.Message) (middleware.Outcome, error) {
				return middleware.Outcome{Result: 42}, tc.err
			})
			m := &middleware.Message{Side: middleware.Query, Type: "balanceOf", Aggregate: "balances", Command: balanceOf{"secret-account"}, Metadata: middleware.Metadata{}}
			if _, err := h(context.Background(), m); err != tc.err {
				t.Fatalf("err %v, want the handler's %v", err, tc.err)
			}
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("one JSON record expected: %v\n%s", err, buf.String())
			}
			want := map[string]any{"level": tc.level, "msg": "interlock: query " + tc.outcome, "side": "query",
				"type": "balanceOf", "aggregate": "balances", "outcome": tc.outcome}
			for k, v := range want {
				if rec[k] != v {
					t.Errorf("%s = %v, want %v", k, rec[k], v)
				}
			}
			for _, k := range []string{"aggregate_id", "command_id", "correlation_id", "version"} {
				if _, ok := rec[k]; ok {
					t.Errorf("a query's record has %s: %v", k, rec)
				}
			}
			if _, ok := rec["duration"]; !ok {
				t.Error("no duration")
			}
			if strings.Contains(buf.String(), "secret-account") {
				t.Errorf("the query's payload was logged: %s", buf.String())
			}
		})
	}
	// Asked for, the payload is logged under "query", not "command".
	var buf bytes.Buffer
	h := middleware.Logging(slog.New(slog.NewJSONHandler(&buf, nil)), middleware.LogPayloads())(func(context.Context, *middleware.Message) (middleware.Outcome, error) {
		return middleware.Outcome{}, nil
	})
	if _, err := h(context.Background(), &middleware.Message{Side: middleware.Query, Type: "balanceOf", Command: balanceOf{"acct"}, Metadata: middleware.Metadata{}}); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec["command"]; ok || fmt.Sprint(rec["query"]) != "map[Account:acct]" {
		t.Errorf("a query's payload: %v, want it under \"query\"", rec)
	}
}
