#!/usr/bin/env bash
# The whole test suite: starts the real services (Kafka 4.x, a three-node
# Kafka cluster for failover tests, Redis, PostgreSQL) with
# scripts/services.sh, then runs vet and every test with the
# race detector against them, and the Kafka tests once more on the embedded
# Kafka (kfake). A test whose service is missing fails here; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "starting services (scripts/services.sh up --cluster --fresh)"
scripts/services.sh up --cluster --fresh
eval "$(scripts/services.sh env)"
echo "Kafka ${INTERLOCK_TEST_KAFKA_VERSION:-?} at $INTERLOCK_TEST_BROKERS, three-node cluster at $INTERLOCK_TEST_CLUSTER_BROKERS" >&2
echo "Redis at $INTERLOCK_TEST_REDIS_URL, PostgreSQL at ${INTERLOCK_TEST_POSTGRES_DSN%%\?*}" >&2
export INTERLOCK_REQUIRE_SERVICES=1

step "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...

step "tests against the real services (Kafka at $INTERLOCK_TEST_BROKERS)"
go test -race -count=1 -timeout 15m "$@" ./...

step "Kafka tests against the embedded Kafka (kfake)"
INTERLOCK_TEST_BROKERS= INTERLOCK_TEST_CLUSTER_BROKERS= INTERLOCK_REQUIRE_SERVICES=0 go test -race -count=1 -timeout 10m "$@" .

step "fuzzers, about 10 s each (a failing input is saved under testdata/fuzz and fails every later run)"
# Counts of executions, not durations: a -fuzztime duration can end a
# healthy run with "context deadline exceeded" (a known go test race).
for target in schema:FuzzAvroDecode:300000 schema:FuzzAvroDecodeResolved:400000 schema:FuzzCompatible:30000 \
	schema/kafkaregistry:FuzzApply:100000 consumer:FuzzDecodeFrame:250000 producer:FuzzParseHeaders:400000 gateway:FuzzRequests:50000; do
	IFS=: read -r pkg fuzzer count <<<"$target"
	go test -run '^$' -fuzz "^${fuzzer}\$" -fuzztime "${count}x" "./${pkg}"
done

step "chaos suite, short form (scripts/chaos.sh runs it longer)"
INTERLOCK_CHAOS_DURATION=45s go test -tags chaos -count=1 -run TestChaos -timeout 15m ./internal/chaos

step "demo"
go run ./cmd/interlock demo --brokers "$INTERLOCK_TEST_BROKERS" >/dev/null
go run ./cmd/interlock demo >/dev/null
echo "all green" >&2
