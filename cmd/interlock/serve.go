package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/snapshot"
)

// serve runs the example domains as a service until SIGINT or SIGTERM.
func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	brokers := fs.String("brokers", os.Getenv("INTERLOCK_BROKERS"), "comma-separated Kafka seed brokers (env INTERLOCK_BROKERS; empty: an embedded Kafka)")
	name := fs.String("name", envOr("INTERLOCK_NAME", "interlock"), "application name: the topic prefix (env INTERLOCK_NAME)")
	instance := fs.String("instance-id", os.Getenv("INTERLOCK_INSTANCE_ID"), "stable instance ID, e.g. the pod name (env INTERLOCK_INSTANCE_ID; default: hostname and a random suffix)")
	roles := fs.String("roles", envOr("INTERLOCK_ROLES", "dispatch,process"), "roles of this instance: dispatch, process (env INTERLOCK_ROLES)")
	redisURL := fs.String("redis", "", "Redis URL of the snapshot store, redis://[user@]host:port/db (env INTERLOCK_REDIS_URL; its password from INTERLOCK_REDIS_PASSWORD; default: in-process snapshots)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *redisURL == "" {
		*redisURL = os.Getenv("INTERLOCK_REDIS_URL")
	}
	opts := []interlock.Option{
		interlock.WithName(*name),
		interlock.WithLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil))),
	}
	if *brokers != "" {
		opts = append(opts, interlock.WithBrokers(strings.Split(*brokers, ",")...))
	}
	if *instance != "" {
		opts = append(opts, interlock.WithInstanceID(*instance))
	}
	var r interlock.Role
	for _, s := range strings.Split(*roles, ",") {
		switch strings.TrimSpace(s) {
		case "dispatch":
			r |= interlock.RoleDispatch
		case "process":
			r |= interlock.RoleProcess
		default:
			return fmt.Errorf("serve: unknown role %q (use dispatch, process)", s)
		}
	}
	opts = append(opts, interlock.WithRoles(r))
	if *redisURL != "" {
		store, err := snapshot.NewRedis(ctx, snapshot.RedisConfig{URL: *redisURL, Password: os.Getenv("INTERLOCK_REDIS_PASSWORD")})
		if err != nil {
			return fmt.Errorf("serve: snapshot store: %w", err)
		}
		defer store.Close()
		opts = append(opts, interlock.WithSnapshotStore(store))
	}
	app, err := interlock.NewBuilder(opts...).RegisterAggregate(bank.Accounts()).Build()
	if err != nil {
		return err
	}
	return app.Run(ctx)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
