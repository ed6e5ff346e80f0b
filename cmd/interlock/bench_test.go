package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/services"
)

// TestBench runs the bench with tiny counts and checks that its JSON has
// every field, with values consistent with one another. Timing is the
// bench's business, not the test's: no value is compared to a target.
func TestBench(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"--quick", "--json",
		"--partitions", "3", "--accounts", "30", "--commands", "300", "--restore-events", "600",
		"--senders", "16", "--dispatchers", "8", "--probe", "300ms", "--sync-duration", "500ms",
		"--cache", "1000", "--timeout", "30s"}
	if kafkatest.Real() {
		args = append(args, "--brokers", strings.Join(kafkatest.Brokers(t), ","))
	}
	if dsn := os.Getenv(services.EnvPostgres); dsn != "" {
		args = append(args, "--postgres", dsn)
	}
	var out, progress bytes.Buffer
	if err := bench(ctx, &out, &progress, args); err != nil {
		t.Fatalf("bench: %v\nprogress:\n%s", err, progress.String())
	}

	// Every field is present and, but for those that may be zero, positive.
	var fields map[string]any
	if err := json.Unmarshal(out.Bytes(), &fields); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out.String())
	}
	mayBeZero := map[string]bool{
		"ratios.projection_postgres_vs_raw_consume": os.Getenv(services.EnvPostgres) == "",
		"commands_sync.errors":                      true,
		"restore_watermark.events":                  true,
		"restore_watermark.per_sec":                 true,
		"restore_watermark.full_replays":            true,
		"restore_watermark.snapshots_loaded":        true, // counted only when loaded from the store
		"restore_full.snapshots_loaded":             true,
		"memory.evictions":                          true,
		"quick":                                     true,
	}
	want := map[string][]string{
		"":                  {"broker", "app", "partitions", "snapshots", "go", "gomaxprocs", "quick"},
		"raw_txn_produce":   {"records", "seconds", "per_sec", "transactions", "batch_size", "warmup_records"},
		"raw_consume":       {"records", "seconds", "per_sec", "runs"},
		"commands_async":    {"commands", "senders", "accounts", "seconds", "per_sec", "send_per_sec", "transactions", "mean_batch"},
		"commands_sync":     {"max_rate", "max_rate_dispatchers", "offered_rate", "dispatches", "seconds", "p50_ms", "p99_ms", "p999_ms", "max_ms", "launch_lag_max_ms", "errors"},
		"restore_full":      {"events", "seconds", "per_sec", "restores", "full_replays", "snapshots_loaded", "heap_live_bytes"},
		"restore_watermark": {"events", "seconds", "per_sec", "restores", "full_replays", "snapshots_loaded", "heap_live_bytes"},
		"memory":            {"peak_heap_inuse_bytes", "cache_max_aggregates", "cache_max_bytes", "cached_peak", "cached_at_end", "evictions"},
		"ratios":            {"commands_async_vs_raw_txn_produce", "restore_full_vs_raw_consume", "projection_kafka_vs_raw_consume", "projection_postgres_vs_raw_consume"},
		"targets":           {"async_ge_50pct_raw_txn_produce", "sync_p99_le_25ms_at_half_max", "restore_ge_70pct_raw_consume", "cache_within_bounds"},
	}
	for section, keys := range want {
		obj := fields
		if section != "" {
			var ok bool
			if obj, ok = fields[section].(map[string]any); !ok {
				t.Errorf("section %q missing or not an object", section)
				continue
			}
		}
		for _, k := range keys {
			path := strings.TrimPrefix(section+"."+k, ".")
			v, ok := obj[k]
			switch n, isNum := v.(float64); {
			case !ok:
				t.Errorf("%s is missing", path)
			case section == "targets":
				if _, isBool := v.(bool); !isBool {
					t.Errorf("%s = %v, want a boolean", path, v)
				}
			case isNum && (n < 0 || n == 0 && !mayBeZero[path]):
				t.Errorf("%s = %v, want a positive number", path, n)
			case !isNum && k != "broker" && k != "app" && k != "snapshots" && k != "go" && k != "quick":
				t.Errorf("%s = %v (%T), want a number", path, v, v)
			}
		}
	}

	// The values agree with each other and with what was asked.
	var r benchReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	projected := []throughput{r.Projection.KafkaToKafka}
	if os.Getenv(services.EnvPostgres) != "" {
		projected = append(projected, r.Projection.Postgres)
	}
	for i, p := range projected {
		if p.Records != r.RawConsume.Records || p.Seconds <= 0 || p.PerSec <= 0 {
			t.Errorf("projection %d: %+v, want every event of raw_consume (%d)", i, p, r.RawConsume.Records)
		}
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9*math.Max(math.Abs(want), 1) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	near("ratios.commands_async_vs_raw_txn_produce", r.Ratios.AsyncVsRawProduce, r.CommandsAsync.PerSec/r.RawTxnProduce.PerSec)
	near("ratios.restore_full_vs_raw_consume", r.Ratios.RestoreVsRawConsume, r.RestoreFull.PerSec/r.RawConsume.PerSec)
	near("raw_txn_produce.per_sec", r.RawTxnProduce.PerSec, float64(r.RawTxnProduce.Records)/r.RawTxnProduce.Seconds)
	near("raw_consume.per_sec", r.RawConsume.PerSec, float64(r.RawConsume.Records)/r.RawConsume.Seconds)
	near("commands_async.per_sec", r.CommandsAsync.PerSec, float64(r.CommandsAsync.Commands)/r.CommandsAsync.Seconds)
	near("commands_async.mean_batch", r.CommandsAsync.MeanBatch, float64(r.CommandsAsync.Commands)/float64(r.CommandsAsync.Transactions))
	near("restore_full.per_sec", r.RestoreFull.PerSec, float64(r.RestoreFull.Events)/r.RestoreFull.Seconds)
	near("commands_sync.offered_rate", r.CommandsSync.OfferedRate, r.CommandsSync.MaxRate/2)
	if r.Targets.AsyncHalfOfRaw != (r.Ratios.AsyncVsRawProduce >= 0.5) || r.Targets.Restore70OfRaw != (r.Ratios.RestoreVsRawConsume >= 0.7) ||
		r.Targets.SyncP99Under25ms != (r.CommandsSync.P99Ms <= 25) || r.Targets.CacheWithinBounds != (r.Memory.CachedAtEnd <= 1000) {
		t.Errorf("targets %+v disagree with the measurements", r.Targets)
	}

	if r.Partitions != 3 || r.CommandsAsync.Commands != 300 || r.CommandsAsync.Accounts != 30 || r.Memory.CacheAggregates != 1000 {
		t.Errorf("the report does not echo the flags: %+v", r)
	}
	if got := r.RawTxnProduce.Records + int64(r.RawTxnProduce.WarmupRecords); got != 600 || r.RawConsume.Records != 600 {
		t.Errorf("raw_txn_produce wrote %d records (with the warm-up) and raw_consume read %d, want 600 each", got, r.RawConsume.Records)
	}
	if r.RawTxnProduce.BatchSize != int(math.Round(r.CommandsAsync.MeanBatch)) {
		t.Errorf("raw_txn_produce batched %d records, want Interlock's mean batch %.1f", r.RawTxnProduce.BatchSize, r.CommandsAsync.MeanBatch)
	}
	s := r.CommandsSync
	if s.Errors != 0 || !(s.P50Ms <= s.P99Ms && s.P99Ms <= s.P999Ms && s.P999Ms <= s.MaxMs) {
		t.Errorf("commands_sync: %d errors, latencies p50 %v p99 %v p99.9 %v max %v", s.Errors, s.P50Ms, s.P99Ms, s.P999Ms, s.MaxMs)
	}
	// A full replay reads every event written (and the triggers' own);
	// from the watermark, nothing written before the first owner flushed.
	if r.RestoreFull.Events < 600 || r.RestoreFull.FullReplays != 3 || r.RestoreFull.Restores != 3 {
		t.Errorf("restore_full: %+v, want every one of the 600 events replayed in 3 full replays", r.RestoreFull)
	}
	if r.RestoreMark.Events >= r.RestoreFull.Events || r.RestoreMark.FullReplays != 0 || r.RestoreMark.SnapshotsLoaded == 0 {
		t.Errorf("restore_watermark: %+v, want fewer events than the full replay (%d), no full replay, and snapshots loaded", r.RestoreMark, r.RestoreFull.Events)
	}
	if r.Memory.CachedAtEnd > int64(r.Memory.CacheAggregates) {
		t.Errorf("memory: %d aggregates cached, over the bound of %d", r.Memory.CachedAtEnd, r.Memory.CacheAggregates)
	}
	for _, phase := range []string{"raw_txn_produce", "raw_consume", "commands_async", "commands_sync", "restore_watermark", "restore_full"} {
		if !strings.Contains(progress.String(), "bench: "+phase+":") {
			t.Errorf("no progress line for %s:\n%s", phase, progress.String())
		}
	}
}

// TestBenchTable checks that the table names every phase and target.
func TestBenchTable(t *testing.T) {
	var out bytes.Buffer
	r := &benchReport{Broker: "b", App: "a", Partitions: 6}
	if err := printBench(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"raw_txn_produce", "raw_consume", "commands_async", "commands_sync max", "restore_full", "restore_watermark", "memory: peak heap", "commands_async / raw_txn_produce", "restore_full / raw_consume", "sync p99"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--partitions", "0"}, "--partitions 0"},
		{[]string{"--accounts", "2", "--partitions", "6"}, "need at least one per partition"},
		{[]string{"--restore-events", "10", "--accounts", "100"}, "need at least two per account"},
		{[]string{"--batch", "-1"}, "--batch -1"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		if _, err := parseBench(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseBench(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	c, err := parseBench([]string{"--quick", "--commands", "7"})
	if err != nil {
		t.Fatal(err)
	}
	if c.commands != 7 || c.restoreEvents != 50_000 || c.syncDuration != 3*time.Second {
		t.Errorf("--quick with --commands 7: %+v, want the explicit count kept and the others quick", c)
	}
}
