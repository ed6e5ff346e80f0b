// Package bench measures an Interlock application against the limit of
// the Kafka it runs on, in one run on one broker: franz-go's own
// transactional produce and read_committed consume of the event bytes
// Interlock writes, then the application's commands (async with Send,
// sync with Dispatch: latency at half the max rate), restores of its
// aggregates (full replay and from the snapshot watermark), the memory
// the cache bounds, and projectors.
//
// What it measures is a Workload: the user's aggregate type, the command
// that creates each aggregate and the command the timed phases send.
// Run runs it with a command line of flags; a service binary gets it as
// its bench command with service.WithBench:
//
//	service.Main(build, service.WithBench(bench.Workload{
//		Aggregate: bank.Accounts(),
//		Setup:     func(id ulid.ULID, i int) any { return bank.OpenAccount{Command: interlock.To(id), Owner: "bench"} },
//		Command:   func(id ulid.ULID) any { return bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1} },
//	}))
//
// A run on --brokers connects with the franz-go options of
// WithClientOptions (TLS, SASL); the service's bench passes those of its
// environment and configuration file.
//
// The phases, in the order they run (each prints a progress line on
// stderr; the table or --json goes to stdout):
//
//	commands_async     --commands commands sent with Send from --senders goroutines to --aggregates
//	                   aggregates set up first (untimed); the processor's mean batch
//	commands_sync      Dispatch: the max rate of --dispatchers in a closed loop, then latency
//	                   percentiles at half that rate, in an open loop
//	memory             peak heap and cached aggregates during commands_async, against WithCache's bounds
//	raw_txn_produce    --restore-events events, as the processor writes them for Setup then Command,
//	                   produced by franz-go in transactions of the processor's mean batch: the limit
//	raw_consume        a read_committed read of those events: the limit of restore
//	restore_watermark  a new owner restores from the snapshot store: timed until it is ready
//	restore_full       a new owner replays every event: timed until it is ready; then, apart,
//	                   one command per partition
//	projection         the workload's Export and ReadModel projectors over those events, when it has them
//
// Timing belongs to the bench, not to tests: BENCHMARKS.md records runs.
package bench
