#!/usr/bin/env bash
# The chaos suite (internal/chaos): the bank as separate worker processes
# on the three-node Kafka cluster, with Redis and PostgreSQL, under faults
# (workers killed and scaled, a broker restarted, Redis flushed and cut
# off); then every invariant checked against the log. Prints a summary and
# exits non-zero on any violation.
#
#   scripts/chaos.sh [duration]   default 5m of load (CI runs 45s)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh up --cluster
eval "$(scripts/services.sh env)"
export INTERLOCK_REQUIRE_SERVICES=1 INTERLOCK_CHAOS_DURATION="${1:-5m}"
go test -tags chaos -count=1 -run TestChaos -v -timeout 60m ./internal/chaos
