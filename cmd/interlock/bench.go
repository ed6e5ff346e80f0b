package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/bench"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/projections"
)

// bankBench is the workload of this binary's bench: bank accounts opened
// by their owners, then deposits of 1; its projectors export every event
// to another topic and keep the balances read model.
func bankBench() bench.Workload {
	return bench.Workload{
		Aggregate: bank.Accounts(),
		Setup: func(id ulid.ULID, i int) any {
			return bank.OpenAccount{Command: interlock.To(id), Owner: fmt.Sprintf("owner-%d", i)}
		},
		Command: func(id ulid.ULID) any {
			return bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1}
		},
		Export: bankExport,
		ReadModel: func(pool *pgxpool.Pool) projections.Runner {
			return bank.Balances("bench-balances", pool)
		},
	}
}

// bankExport writes each bank event as a JSON record of topic, exactly
// once.
func bankExport(topic string) projections.Runner {
	p := projections.New("bench-export", projections.Kafka())
	projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[bank.MoneyDeposited]) error {
		out.Produce(&kgo.Record{Topic: topic, Key: []byte(e.AggregateID.String()), Value: fmt.Appendf(nil, `{"amount":%d}`, e.Data.Amount)})
		return nil
	})
	projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[bank.AccountOpened]) error {
		out.Produce(&kgo.Record{Topic: topic, Key: []byte(e.AggregateID.String()), Value: []byte(`{"opened":true}`)})
		return nil
	})
	return p
}
