// Package services tells tests where the real services are: Kafka, Redis
// and PostgreSQL, as scripts/services.sh env exports them. A test whose
// service is not configured skips, loudly, unless INTERLOCK_REQUIRE_SERVICES=1,
// as in CI, where it fails.
package services

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// Environment variables read by the test harness.
const (
	EnvBrokers        = "INTERLOCK_TEST_BROKERS"
	EnvClusterBrokers = "INTERLOCK_TEST_CLUSTER_BROKERS"
	EnvRedis          = "INTERLOCK_TEST_REDIS_URL"
	EnvPostgres       = "INTERLOCK_TEST_POSTGRES_DSN"
	// EnvKafkaJars is the directory of the Kafka jars, for tests that
	// start a Kafka of their own (internal/securekafka).
	EnvKafkaJars = "INTERLOCK_TEST_KAFKA_JARS"
	EnvRequire   = "INTERLOCK_REQUIRE_SERVICES"
)

// Required reports whether missing services fail tests (CI) instead of
// skipping them.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

var warned sync.Map

// Lookup returns the value of env, which locates service. When it is unset
// the test fails if services are required, and otherwise skips, with a
// notice on stderr once per service so a plain `go test ./...` says what it
// did not test.
func Lookup(t testing.TB, env, service string) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	msg := fmt.Sprintf("%s is not configured (%s is unset): start it with scripts/services.sh up and eval \"$(scripts/services.sh env)\"", service, env)
	if Required() {
		t.Fatalf("%s=1 but %s", EnvRequire, msg)
	}
	if _, done := warned.LoadOrStore(env, true); !done {
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING the tests that need %s: %s ***\n\n", service, msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}

// Binary returns the path of the program name, a service the test starts
// itself (redis-server), found on PATH. When it is missing the test fails
// if services are required, and otherwise skips, with a notice on stderr
// once per program, as Lookup does.
func Binary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s is not on PATH (%v): scripts/services.sh up installs it", name, err)
	if Required() {
		t.Fatalf("%s=1 but %s", EnvRequire, msg)
	}
	if _, done := warned.LoadOrStore("bin:"+name, true); !done {
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING the tests that need %s: %s ***\n\n", name, msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}
