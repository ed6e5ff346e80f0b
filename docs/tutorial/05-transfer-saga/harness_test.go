package bank_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/pgtest"
)

// testOptions are the options of every application a test starts. They
// point it at this repository's test Kafka: the one CI runs when
// INTERLOCK_TEST_BROKERS is set, an embedded one otherwise. In your own
// module return nil instead: with no brokers, Interlock starts an embedded
// Kafka in the test's process.
func testOptions(t *testing.T) []interlock.Option {
	return []interlock.Option{
		interlock.WithBrokers(kafkatest.Brokers(t)...),
		interlock.WithName(kafkatest.Name(t)),
		interlock.WithPartitions(3),
		interlock.WithLogger(slog.New(slog.DiscardHandler)),
		interlock.WithSessionTimeout(10 * time.Second),
		interlock.WithTransactionTimeout(5 * time.Second),
	}
}

// testPool returns a pool on the PostgreSQL of INTERLOCK_TEST_POSTGRES_DSN,
// in a schema of the test's own, dropped when it ends. Without that
// variable the test is skipped (in CI it fails). In your own module, open
// a pool on a test database with pgxpool.New.
func testPool(t *testing.T) *pgxpool.Pool {
	pool, _ := pgtest.Pool(t)
	return pool
}
