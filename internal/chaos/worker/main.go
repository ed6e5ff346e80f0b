// Command worker is a process of the chaos suite: the bank (accounts,
// transfers and their saga, the PostgreSQL balances read model) as a
// processor and projector, with snapshots in Redis, until SIGTERM or
// SIGKILL. The suite starts, kills and restarts several of them.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/snapshot"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run() error {
	brokers := flag.String("brokers", "", "Kafka seed brokers, comma-separated")
	name := flag.String("name", "", "application name")
	instance := flag.String("instance", "", "stable instance ID")
	redisURL := flag.String("redis", "", "Redis URL of the snapshot store")
	partitions := flag.Int("partitions", 6, "partitions of the topics")
	flag.Parse()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	store, err := snapshot.NewRedis(ctx, snapshot.RedisConfig{URL: *redisURL, KeyPrefix: *name})
	if err != nil {
		return err
	}
	defer store.Close()
	pool, err := pgxpool.New(ctx, os.Getenv("CHAOS_POSTGRES_DSN"))
	if err != nil {
		return err
	}
	defer pool.Close()
	app, err := interlock.NewBuilder(
		interlock.WithBrokers(strings.Split(*brokers, ",")...),
		interlock.WithName(*name),
		interlock.WithInstanceID(*instance),
		interlock.WithPartitions(int32(*partitions)),
		interlock.WithReplicationFactor(3),
		interlock.WithRoles(interlock.RoleProcess|interlock.RoleProject),
		interlock.WithSnapshotStore(store),
		interlock.WithFlushInterval(500*time.Millisecond),
		interlock.WithSessionTimeout(6*time.Second),
		interlock.WithTransactionTimeout(5*time.Second),
		interlock.WithLogger(log),
	).RegisterAggregate(bank.Accounts()).RegisterAggregate(bank.Transfers()).
		RegisterProjection(bank.TransferSaga()).
		RegisterProjection(bank.Balances("balances", pool)).Build()
	if err != nil {
		return err
	}
	return app.Run(ctx)
}
