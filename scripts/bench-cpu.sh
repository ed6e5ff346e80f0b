#!/usr/bin/env bash
# interlock bench against the project's single Kafka node, with the
# broker's CPU per command (commands_async) and per record (raw_txn_produce)
# beside the bench's own: the broker's CPU time (/proc/<pid>/stat) is
# sampled at each progress line of the bench, so a phase's share is the
# difference between the lines that open and close it (about ±0.1 s).
# The bench's table or JSON goes to stdout, the CPU lines to stderr.
#
#   scripts/bench-cpu.sh [--json] [--quick] [--commands N] [any other bench flag]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh up >&2
eval "$(scripts/services.sh env)"
pid=$(head -n 1 "${INTERLOCK_SERVICES_DIR:-$HOME/.cache/interlock-services}/kafka/single/kafka.pid")
[ -r "/proc/$pid/stat" ] || { echo "bench-cpu: no Kafka process $pid" >&2; exit 1; }
bin=$(mktemp -d)/interlock
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/interlock
ticks=$(getconf CLK_TCK)
# Each progress line, prefixed by the broker's CPU ticks so far.
"$bin" bench --brokers "$INTERLOCK_TEST_BROKERS" "$@" 2> >(while IFS= read -r line; do
	echo "$(awk '{print $14+$15}' "/proc/$pid/stat") $line"
done | awk -v hz="$ticks" '
	{ print substr($0, index($0, " ") + 1) > "/dev/stderr" }
	/ commands_async: [0-9]+ commands with/ { a = $1; n = $4 }
	/ commands_async: [0-9.]+ commands\/s/ { printf "bench-cpu: broker %.1f µs per command in commands_async\n", ($1 - a) / hz / n * 1e6 > "/dev/stderr" }
	/ raw_txn_produce: [0-9]+ records in/ { r = $1; m = $4 }
	/ raw_txn_produce: [0-9.]+ records\/s/ { printf "bench-cpu: broker %.1f µs per record in raw_txn_produce\n", ($1 - r) / hz / m * 1e6 > "/dev/stderr" }
')
wait
