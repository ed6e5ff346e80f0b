package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/interlock-go/interlock/internal/benchtest"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/services"
	"github.com/interlock-go/interlock/service"
)

// TestBench runs this binary's bench, the bank accounts', with tiny counts
// and checks that its JSON has every field, with values consistent with
// one another, the projectors' included. Timing is the bench's business,
// not the test's: no value is compared to a target.
func TestBench(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"bench", "--quick", "--json",
		"--partitions", "3", "--accounts", "30", "--commands", "300", "--restore-events", "600",
		"--senders", "16", "--dispatchers", "8", "--probe", "300ms", "--sync-duration", "500ms",
		"--cache", "1000", "--timeout", "30s"}
	if kafkatest.Real() {
		args = append(args, "--brokers", strings.Join(kafkatest.Brokers(t), ","))
	}
	dsn := os.Getenv(services.EnvPostgres)
	if dsn != "" {
		args = append(args, "--postgres", dsn)
	}
	var out, progress bytes.Buffer
	if err := service.Run(ctx, args, &out, &progress, build, commands()...); err != nil {
		t.Fatalf("bench: %v\nprogress:\n%s", err, progress.String())
	}
	r := benchtest.Check(t, out.Bytes(), benchtest.Measured{KafkaProjection: true, PostgresProjection: dsn != ""})
	benchtest.CheckProgress(t, progress.String())
	if r.Num("partitions") != 3 || r.Num("commands_async.commands") != 300 || r.Num("commands_async.accounts") != 30 || r.Num("memory.cache_max_aggregates") != 1000 {
		t.Errorf("the report does not echo the flags:\n%s", out.String())
	}
	if got := r.Num("raw_consume.records"); got != 600 {
		t.Errorf("raw_consume read %v records, want the 600 written", got)
	}
}
