// Command interlock is Interlock's own binary: the example domains of
// package bank (accounts, transfers and the transfer saga, plus the
// balances read model when a PostgreSQL DSN is configured) run as a
// service, with the standard commands of package service (serve, topics,
// events, aggregate, projections, schema, and bench, measuring the bank
// accounts), and one of its own: demo, the first-run tour on an embedded
// Kafka.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/service"
)

func main() {
	service.Main(build, commands()...)
}

// commands are the binary's own commands beside the standard ones.
func commands() []service.Option {
	return []service.Option{
		service.WithCommand("demo", "run the bank example on an embedded Kafka (or --brokers): the first run",
			func(ctx context.Context, args []string, stdout, _ io.Writer) error { return demo(ctx, stdout, args) }),
		service.WithBench(bankBench()),
	}
}

// build registers the example domains: the bank accounts, the transfers
// and their saga, and, with a PostgreSQL DSN, the balances read model.
func build(ctx context.Context, cfg *service.Config) (*interlock.Builder, error) {
	b := interlock.NewBuilder(cfg.Options()...).
		RegisterAggregate(bank.Accounts()).
		RegisterAggregate(bank.Transfers()).
		RegisterProjection(bank.TransferSaga())
	if cfg.PostgresDSN != "" {
		pool, err := pgxpool.New(ctx, cfg.PostgresDSN)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		cfg.Cleanup(pool.Close)
		b.RegisterProjection(bank.Balances("balances", pool))
	}
	return b, nil
}
