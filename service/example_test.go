package service_test

import (
	"context"

	"github.com/interlock-go/interlock"
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
