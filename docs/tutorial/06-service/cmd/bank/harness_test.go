package main

import (
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/pgtest"
	"github.com/interlock-go/interlock/internal/redistest"
)

// This file belongs to the repository, not to the tutorial: it gives the
// tests the services CI runs. Without INTERLOCK_TEST_REDIS_URL or
// INTERLOCK_TEST_POSTGRES_DSN, the tests that need them are skipped (in CI
// they fail).

// testBrokers returns the Kafka of INTERLOCK_TEST_BROKERS, or an embedded
// one that lives as long as the test: unlike serve's own embedded Kafka,
// it outlives a restart of the service.
func testBrokers(t *testing.T) string {
	return strings.Join(kafkatest.Brokers(t), ",")
}

// testName returns an application name of the test's own, so tests can
// share a Kafka.
func testName(t *testing.T) string { return kafkatest.Name(t) }

// testRedis returns a client of the test Redis, its URL, and a key prefix
// of the test's own, whose keys are deleted when the test ends.
func testRedis(t *testing.T) (*redis.Client, string, string) {
	c, prefix := redistest.Client(t)
	return c, redistest.URL(t), prefix
}

// testPostgresDSN returns a connection string of the test PostgreSQL whose
// search_path is a schema of the test's own, dropped when it ends.
func testPostgresDSN(t *testing.T) string {
	_, schema := pgtest.Pool(t)
	dsn := os.Getenv("INTERLOCK_TEST_POSTGRES_DSN")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}
