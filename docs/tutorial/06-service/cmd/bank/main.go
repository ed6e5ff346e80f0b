// Command bank runs the tutorial's bank as a service, with the standard
// commands of package service: serve, topics, events, aggregate,
// projections and schema. Its settings come from flags, INTERLOCK_*
// variables or a YAML file; see docs/tutorial/06-service.md.
package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/interlock-go/interlock"
	bank "github.com/interlock-go/interlock/docs/tutorial/05-transfer-saga"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/service"
	"github.com/interlock-go/interlock/snapshot"
)

func main() {
	service.Main(build)
}

// build builds the bank from the service's configuration: the aggregates
// with their snapshot strategy, the transfer saga, the middleware, and the
// read model when a PostgreSQL DSN is configured.
func build(ctx context.Context, cfg *service.Config) (*interlock.Builder, error) {
	b := interlock.NewBuilder(cfg.Options()...).
		RegisterAggregate(bank.Accounts(), interlock.Snapshots(snapshot.EveryN(100))).
		RegisterAggregate(bank.Transfers(), interlock.Snapshots(snapshot.EveryN(100))).
		RegisterProjection(bank.TransferSaga()).
		Use(middleware.Logging(cfg.Logger)).
		UseHandle(bank.FraudCheck(bank.DepositLimit)).
		UseDispatch(middleware.RetryConflicts[bank.WithdrawMoney](middleware.Backoff{Attempts: 3}, nil))

	if cfg.PostgresDSN != "" {
		// pgxpool connects on first use, so commands that never query
		// (topics create, in the Helm chart's Job) need no database.
		pool, err := pgxpool.New(ctx, cfg.PostgresDSN)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		cfg.Cleanup(pool.Close)
		b.RegisterProjection(bank.ReadModel(pool))
	}
	return b, nil
}
