package service_test

import (
	"context"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/bench"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/service"
)

// A service's main: it builds the application from the configuration and
// hands it to Main, which gives the binary the standard commands (serve,
// topics, events, aggregate, projections, schema). Compiled, not run: Main
// reads the process's arguments and exits.
func ExampleMain() {
	service.Main(func(ctx context.Context, cfg *service.Config) (*interlock.Builder, error) {
		// cfg.Options: brokers, name, instance ID, roles, TLS, SASL, logger.
		return interlock.NewBuilder(cfg.Options()...).
			RegisterAggregate(bank.Accounts()).
			RegisterAggregate(bank.Transfers()).
			RegisterProjection(bank.TransferSaga()), nil
	})
}

// A service's main that gives its bench command a workload: bench then
// measures the service's own aggregate, setting up each aggregate with
// Setup and sending Command in the timed phases. Compiled, not run: Main
// reads the process's arguments and exits.
func ExampleWithBench() {
	workload := bench.Workload{
		Aggregate: bank.Accounts(),
		Setup: func(id ulid.ULID, i int) any {
			return bank.OpenAccount{Command: interlock.To(id), Owner: fmt.Sprintf("owner-%d", i)}
		},
		Command: func(id ulid.ULID) any {
			return bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1}
		},
	}
	service.Main(func(ctx context.Context, cfg *service.Config) (*interlock.Builder, error) {
		return interlock.NewBuilder(cfg.Options()...).RegisterAggregate(bank.Accounts()), nil
	}, service.WithBench(workload))
	// Then: go run . bench --quick [--brokers host:port] [--json]
}
