// Package chaos is the bank-invariant chaos suite (issue 10): the bank
// runs as separate worker processes on the three-node Kafka cluster, with
// Redis snapshots and a PostgreSQL read model, while clients transfer money
// (through the saga) and deposit with retries, and faults are injected:
// workers killed with SIGKILL and restarted, workers scaled from one to
// three and back, a broker stopped and restarted, Redis flushed and cut
// off. Afterwards it checks the invariants against the log itself and
// prints a summary; any violation fails it.
//
// Run it with scripts/chaos.sh (INTERLOCK_CHAOS_DURATION sets the length
// of the load, 45 s by default); scripts/test.sh runs the short form. The
// test carries the build tag chaos, so `go test ./...` does not run it
// next to the other tests that stop cluster brokers.
package chaos
