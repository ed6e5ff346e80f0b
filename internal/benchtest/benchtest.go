// Package benchtest checks the output of a bench run (package bench) for
// the tests of every binary that runs one: every field is there, with
// values consistent with one another. Timing is the bench's business, not
// the tests': no value is compared to a target.
package benchtest

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// Measured says which of the optional measures the run made.
type Measured struct {
	// KafkaProjection and PostgresProjection: the projection phase's
	// projectors ran (the workload has them, and a DSN was given).
	KafkaProjection, PostgresProjection bool
}

// Fields is every field of the bench's JSON, by section ("" for the top
// level).
var Fields = map[string][]string{
	"":                  {"broker", "app", "partitions", "snapshots", "go", "gomaxprocs", "quick"},
	"raw_txn_produce":   {"records", "seconds", "per_sec", "cpu_us_per_record", "transactions", "batch_size", "warmup_records"},
	"raw_consume":       {"records", "seconds", "per_sec", "cpu_us_per_record", "runs"},
	"commands_async":    {"commands", "senders", "accounts", "seconds", "per_sec", "send_per_sec", "cpu_us_per_command", "transactions", "mean_batch"},
	"commands_sync":     {"max_rate", "max_rate_dispatchers", "offered_rate", "dispatches", "seconds", "p50_ms", "p99_ms", "p999_ms", "max_ms", "launch_lag_max_ms", "errors"},
	"restore_full":      {"events", "seconds", "per_sec", "cpu_us_per_event", "restores", "full_replays", "snapshots_loaded", "heap_live_bytes", "first_commands_ms"},
	"restore_watermark": {"events", "seconds", "per_sec", "cpu_us_per_event", "restores", "full_replays", "snapshots_loaded", "heap_live_bytes", "first_commands_ms"},
	"memory":            {"peak_heap_inuse_bytes", "cache_max_aggregates", "cache_max_bytes", "cached_peak", "cached_at_end", "evictions"},
	"projection":        {"kafka_to_kafka", "postgres"},
	"ratios":            {"commands_async_vs_raw_txn_produce", "restore_full_vs_raw_consume", "projection_kafka_vs_raw_consume", "projection_postgres_vs_raw_consume"},
	"targets":           {"async_ge_50pct_raw_txn_produce", "sync_p99_le_25ms_at_half_max", "restore_ge_70pct_raw_consume", "cache_within_bounds"},
}

// Report is a decoded bench JSON object: Num reads a number by its dotted
// path ("commands_async.per_sec").
type Report map[string]any

// Num returns the number at path, 0 when there is none.
func (r Report) Num(path string) float64 {
	var v any = map[string]any(r)
	for _, k := range strings.Split(path, ".") {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	n, _ := v.(float64)
	return n
}

// Check decodes out, the JSON a bench run printed, and checks that it is
// one object with every field, each number positive unless it may be zero
// (a measure not made may), and that the values agree with each other.
// It returns the report for the caller's own checks.
func Check(t testing.TB, out []byte, m Measured) Report {
	t.Helper()
	var r Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	mayBeZero := map[string]bool{
		"ratios.projection_kafka_vs_raw_consume":    !m.KafkaProjection,
		"ratios.projection_postgres_vs_raw_consume": !m.PostgresProjection,
		"commands_sync.errors":                      true,
		"restore_watermark.events":                  true,
		"restore_watermark.per_sec":                 true,
		"restore_watermark.cpu_us_per_event":        true, // usually no event replayed
		"restore_watermark.full_replays":            true,
		"restore_watermark.snapshots_loaded":        true, // counted only when loaded from the store
		"restore_full.snapshots_loaded":             true,
		"memory.evictions":                          true,
	}
	for section, keys := range Fields {
		obj := map[string]any(r)
		if section != "" {
			var ok bool
			if obj, ok = r[section].(map[string]any); !ok {
				t.Errorf("section %q missing or not an object", section)
				continue
			}
		}
		for _, k := range keys {
			path := strings.TrimPrefix(section+"."+k, ".")
			v, ok := obj[k]
			n, isNum := v.(float64)
			switch {
			case !ok:
				t.Errorf("%s is missing", path)
			case section == "targets" || path == "quick":
				if _, isBool := v.(bool); !isBool {
					t.Errorf("%s = %v, want a boolean", path, v)
				}
			case section == "projection":
				measured := map[string]bool{"kafka_to_kafka": m.KafkaProjection, "postgres": m.PostgresProjection}[k]
				for _, f := range []string{"records", "seconds", "per_sec", "cpu_us_per_record"} {
					got := r.Num(path + "." + f)
					if _, present := v.(map[string]any)[f]; !present || got < 0 || measured != (got > 0) {
						t.Errorf("%s.%s = %v, want a %s", path, f, got, map[bool]string{true: "positive number", false: "zero (not measured)"}[measured])
					}
				}
			case k == "broker" || k == "app" || k == "snapshots" || k == "go":
				if s, _ := v.(string); s == "" {
					t.Errorf("%s = %v, want a string", path, v)
				}
			case !isNum:
				t.Errorf("%s = %v (%T), want a number", path, v, v)
			case n < 0 || n == 0 && !mayBeZero[path]:
				t.Errorf("%s = %v, want a positive number", path, n)
			}
		}
	}

	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9*math.Max(math.Abs(want), 1) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	near("ratios.commands_async_vs_raw_txn_produce", r.Num("ratios.commands_async_vs_raw_txn_produce"), r.Num("commands_async.per_sec")/r.Num("raw_txn_produce.per_sec"))
	near("ratios.restore_full_vs_raw_consume", r.Num("ratios.restore_full_vs_raw_consume"), r.Num("restore_full.per_sec")/r.Num("raw_consume.per_sec"))
	near("raw_txn_produce.per_sec", r.Num("raw_txn_produce.per_sec"), r.Num("raw_txn_produce.records")/r.Num("raw_txn_produce.seconds"))
	near("raw_consume.per_sec", r.Num("raw_consume.per_sec"), r.Num("raw_consume.records")/r.Num("raw_consume.seconds"))
	near("commands_async.per_sec", r.Num("commands_async.per_sec"), r.Num("commands_async.commands")/r.Num("commands_async.seconds"))
	near("commands_async.mean_batch", r.Num("commands_async.mean_batch"), r.Num("commands_async.commands")/r.Num("commands_async.transactions"))
	near("restore_full.per_sec", r.Num("restore_full.per_sec"), r.Num("restore_full.events")/r.Num("restore_full.seconds"))
	// restore_full is the best of as many runs as raw_consume's reads.
	full, _ := r["restore_full"].(map[string]any)
	rates, _ := full["runs_per_sec"].([]any)
	best := 0.0
	for _, v := range rates {
		f, _ := v.(float64)
		best = max(best, f)
	}
	if n := r.Num("restore_full.runs"); n != r.Num("raw_consume.runs") || len(rates) != int(n) || best != r.Num("restore_full.per_sec") {
		t.Errorf("restore_full: %v runs at %v/s, reporting %v/s; want raw_consume's %v runs, reporting the best", n, rates, r.Num("restore_full.per_sec"), r.Num("raw_consume.runs"))
	}
	near("commands_sync.offered_rate", r.Num("commands_sync.offered_rate"), r.Num("commands_sync.max_rate")/2)
	if m.KafkaProjection {
		near("ratios.projection_kafka_vs_raw_consume", r.Num("ratios.projection_kafka_vs_raw_consume"), r.Num("projection.kafka_to_kafka.per_sec")/r.Num("raw_consume.per_sec"))
		if got, want := r.Num("projection.kafka_to_kafka.records"), r.Num("raw_consume.records"); got != want {
			t.Errorf("projection.kafka_to_kafka.records = %v, want every event of raw_consume (%v)", got, want)
		}
	}
	if m.PostgresProjection {
		if got, want := r.Num("projection.postgres.records"), r.Num("raw_consume.records"); got != want {
			t.Errorf("projection.postgres.records = %v, want every event of raw_consume (%v)", got, want)
		}
	}
	targets, _ := r["targets"].(map[string]any)
	for k, want := range map[string]bool{
		"async_ge_50pct_raw_txn_produce": r.Num("ratios.commands_async_vs_raw_txn_produce") >= 0.5,
		"restore_ge_70pct_raw_consume":   r.Num("ratios.restore_full_vs_raw_consume") >= 0.7,
		"sync_p99_le_25ms_at_half_max":   r.Num("commands_sync.p99_ms") <= 25 && r.Num("commands_sync.errors") == 0,
		"cache_within_bounds":            r.Num("memory.cached_at_end") <= r.Num("memory.cache_max_aggregates"),
	} {
		if got, _ := targets[k].(bool); got != want {
			t.Errorf("targets.%s = %v disagrees with the measurements", k, got)
		}
	}
	if got := r.Num("raw_txn_produce.records") + r.Num("raw_txn_produce.warmup_records"); got != r.Num("raw_consume.records") {
		t.Errorf("raw_txn_produce wrote %v records (with the warm-up) and raw_consume read %v", got, r.Num("raw_consume.records"))
	}
	if got, want := r.Num("raw_txn_produce.batch_size"), math.Round(r.Num("commands_async.mean_batch")); got != max(want, 1) {
		t.Errorf("raw_txn_produce batched %v records, want Interlock's mean batch %v", got, want)
	}
	if r.Num("commands_sync.errors") != 0 || !(r.Num("commands_sync.p50_ms") <= r.Num("commands_sync.p99_ms") &&
		r.Num("commands_sync.p99_ms") <= r.Num("commands_sync.p999_ms") && r.Num("commands_sync.p999_ms") <= r.Num("commands_sync.max_ms")) {
		t.Errorf("commands_sync: %v errors, latencies p50 %v p99 %v p99.9 %v max %v", r.Num("commands_sync.errors"),
			r.Num("commands_sync.p50_ms"), r.Num("commands_sync.p99_ms"), r.Num("commands_sync.p999_ms"), r.Num("commands_sync.max_ms"))
	}
	// A full replay restores each partition once, reading every event
	// written (and the triggers' own); from the watermark, nothing written
	// before the first owner flushed.
	if r.Num("restore_full.events") < r.Num("raw_consume.records") || r.Num("restore_full.full_replays") != r.Num("partitions") || r.Num("restore_full.restores") != r.Num("partitions") {
		t.Errorf("restore_full: %v events in %v restores, %v full replays; want every one of the %v events, one full replay per partition (%v)",
			r.Num("restore_full.events"), r.Num("restore_full.restores"), r.Num("restore_full.full_replays"), r.Num("raw_consume.records"), r.Num("partitions"))
	}
	if r.Num("restore_watermark.events") >= r.Num("restore_full.events") || r.Num("restore_watermark.full_replays") != 0 || r.Num("restore_watermark.snapshots_loaded") == 0 {
		t.Errorf("restore_watermark: %v events, %v full replays, %v snapshots loaded; want fewer events than the full replay (%v), no full replay, and snapshots loaded",
			r.Num("restore_watermark.events"), r.Num("restore_watermark.full_replays"), r.Num("restore_watermark.snapshots_loaded"), r.Num("restore_full.events"))
	}
	return r
}

// Phases are the phases whose progress lines a run prints.
var Phases = []string{"raw_txn_produce", "raw_consume", "commands_async", "commands_sync", "restore_watermark", "restore_full", "projection"}

// CheckProgress checks that progress, what a run printed on stderr, has a
// line for every phase.
func CheckProgress(t testing.TB, progress string) {
	t.Helper()
	for _, phase := range Phases {
		if !strings.Contains(progress, "bench: "+phase) {
			t.Errorf("no progress line for %s:\n%s", phase, progress)
		}
	}
}
