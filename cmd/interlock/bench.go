package main

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"

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
		Export: func(topic string) projections.Runner { return bank.Export("bench-export", topic) },
		ReadModel: func(pool *pgxpool.Pool) projections.Runner {
			return bank.Balances("bench-balances", pool)
		},
	}
}
