#!/usr/bin/env bash
# scripts/services.sh: start, stop and describe the real services that
# Interlock's tests run against, on this machine, without Docker:
#
#   Apache Kafka 4.x (KRaft, combined broker+controller, transaction.version 2),
#     from Maven Central jars (scripts/kafka/pom.xml), one node on 127.0.0.1:9092
#     or, with --cluster, three nodes on 127.0.0.1:19092-19094 (RF 3, min ISR 2);
#   Redis 7 and PostgreSQL from Debian's packages (installed with apt-get when
#     missing), on 127.0.0.1:6379 and 127.0.0.1:5432.
#
# Usage:
#   scripts/services.sh up [--cluster] [--fresh] [kafka|redis|postgres|cluster ...]
#       Start services (default: kafka redis postgres; --cluster adds the
#       three-node cluster; "up cluster" starts the cluster alone). Idempotent:
#       services already running are only checked. Waits until Kafka answers
#       metadata and a transactional produce + read_committed consume works.
#       --fresh: a Kafka node this call starts starts on empty storage (for
#       test runs: after an unclean stop, a broker holding thousands of old
#       test partitions spends minutes recovering them before it listens).
#   scripts/services.sh down [--clean] [SERVICE ...]
#       Stop what this script started (default: everything, cluster included).
#       --clean also deletes their data (the downloaded jars stay cached).
#   scripts/services.sh status        each service, and whether it answers
#   scripts/services.sh env           export lines for the tests:
#       eval "$(scripts/services.sh env)"
#   scripts/services.sh stop-node N   stop cluster node N (1-3) with SIGTERM
#   scripts/services.sh kill-node N   stop cluster node N with SIGKILL
#   scripts/services.sh start-node N  restart node N; waits until it is back
#                                     and every partition is in sync again
#
# Settings (environment):
#   INTERLOCK_SERVICES_DIR   cache and data ($HOME/.cache/interlock-services)
#   INTERLOCK_KAFKA_VERSION  org.apache.kafka:kafka_2.13 version (4.4.0)
#   INTERLOCK_KAFKA_PORT     single node client port (9092); its controller
#                            listens on INTERLOCK_KAFKA_CONTROLLER_PORT (port+1)
#   INTERLOCK_KAFKA_CLUSTER_PORT  first cluster client port (19092): nodes use
#                            base, base+1, base+2; controllers base+100..+102
#   INTERLOCK_KAFKA_HEAP     single node heap (768m); cluster nodes:
#                            INTERLOCK_KAFKA_CLUSTER_HEAP (512m)
#   INTERLOCK_KAFKA_WAIT     seconds to wait for Kafka to be ready (90)
#   INTERLOCK_REDIS_PORT     6379
#   INTERLOCK_POSTGRES_PORT  5432 (user interlock, password interlock,
#                            database interlock_test)
#   INTERLOCK_POSTGRES_DIR   PostgreSQL data (default: under the cache dir; as
#                            root, when the postgres user cannot reach it,
#                            /var/lib/postgresql/interlock-services)
set -euo pipefail

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE=${INTERLOCK_SERVICES_DIR:-${HOME:-/root}/.cache/interlock-services}
KAFKA_VERSION=${INTERLOCK_KAFKA_VERSION:-4.4.0}
KAFKA_PORT=${INTERLOCK_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${INTERLOCK_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
CLUSTER_PORT=${INTERLOCK_KAFKA_CLUSTER_PORT:-19092}
KAFKA_HEAP=${INTERLOCK_KAFKA_HEAP:-768m}
CLUSTER_HEAP=${INTERLOCK_KAFKA_CLUSTER_HEAP:-512m}
KAFKA_WAIT=${INTERLOCK_KAFKA_WAIT:-90}
REDIS_PORT=${INTERLOCK_REDIS_PORT:-6379}
PG_PORT=${INTERLOCK_POSTGRES_PORT:-5432}
PG_USER=interlock
PG_PASSWORD=interlock
PG_DB=interlock_test

KAFKA_HOME=$BASE/kafka
JARS=$KAFKA_HOME/jars-$KAFKA_VERSION
CHECK_DIR=$KAFKA_HOME/check-$KAFKA_VERSION
SINGLE=$KAFKA_HOME/single
CLUSTER=$KAFKA_HOME/cluster
REDIS_DIR=$BASE/redis

log() { printf '[services] %s\n' "$*" >&2; }
die() {
	printf '[services] ERROR: %s\n' "$*" >&2
	exit 1
}
# show_log FILE: the end of a log file, after a failure.
show_log() {
	if [ -s "$1" ]; then
		printf '[services] ---- last lines of %s ----\n' "$1" >&2
		tail -n 25 "$1" | sed 's/\x1b\[[0-9;]*m//g' >&2 || true
		printf '[services] ----\n' >&2
	fi
}
is_root() { [ "$(id -u)" = 0 ]; }

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_free_or_die PORT WHAT LOGFILE
port_free_or_die() {
	if port_open "$1"; then
		local who
		who=$(ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/\1/p' | head -n 1 || true)
		die "port 127.0.0.1:$1 (for $2) is already taken by another process${who:+ ($who)}; stop it or choose another port with the INTERLOCK_*_PORT variables (log: $3)"
	fi
}

# alive PIDFILE PATTERN: the pid in PIDFILE runs, and its command line
# contains PATTERN (so a reused pid is never taken for ours).
alive() {
	local pid
	[ -s "$1" ] || return 1
	pid=$(head -n 1 "$1")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}
pid_of() { head -n 1 "$1"; }

# wait_gone PID SECONDS: wait until the process has exited.
wait_gone() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

apt_install() {
	is_root || die "$1 is not installed and this user cannot install it: run 'sudo apt-get install -y $1'"
	log "installing $1 from Debian (apt-get; first run only)..."
	local alog=$BASE/apt-$1.log
	if ! { apt-get install -y -q "$1" || { apt-get update -q && apt-get install -y -q "$1"; }; } >"$alog" 2>&1; then
		show_log "$alog"
		die "apt-get install $1 failed (log: $alog)"
	fi
}

# ---------------------------------------------------------------- Kafka

need_java() {
	command -v java >/dev/null 2>&1 || die "java not found: Kafka 4 needs Java 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
	command -v javac >/dev/null 2>&1 || die "javac not found: the Kafka readiness check is compiled with the JDK (Debian: apt-get install -y openjdk-17-jdk-headless)"
	local v
	v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
	[ "${v%%.*}" -ge 17 ] 2>/dev/null || die "Java ${v:-?} found, but Kafka 4 needs Java 17 or newer (java is $(command -v java))"
}

kafka_jars() {
	[ -f "$JARS/.complete" ] && return 0
	need_java
	command -v mvn >/dev/null 2>&1 || die "mvn not found: Maven fetches the Kafka jars from Maven Central (Debian: apt-get install -y maven)"
	mkdir -p "$KAFKA_HOME"
	local mlog=$KAFKA_HOME/maven.log tmp=$JARS.tmp.$$
	log "downloading Kafka $KAFKA_VERSION jars via Maven (first run only)..."
	rm -rf "$tmp"
	if ! mvn -B -q -Dstyle.color=never -f "$SCRIPTS_DIR/kafka/pom.xml" \
		dependency:copy-dependencies -Dkafka.version="$KAFKA_VERSION" \
		-DincludeScope=runtime -DoutputDirectory="$tmp" >"$mlog" 2>&1 ||
		! ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1; then
		show_log "$mlog"
		rm -rf "$tmp"
		die "Maven could not download org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its dependencies from Maven Central (log: $mlog)"
	fi
	touch "$tmp/.complete"
	rm -rf "$JARS"
	mv "$tmp" "$JARS"
}

# The readiness check (scripts/kafka/KafkaCheck.java), compiled once.
kafka_check_build() {
	local src=$SCRIPTS_DIR/kafka/KafkaCheck.java
	if [ ! -f "$CHECK_DIR/KafkaCheck.class" ] || [ "$src" -nt "$CHECK_DIR/KafkaCheck.class" ]; then
		need_java
		mkdir -p "$CHECK_DIR"
		local clog=$KAFKA_HOME/javac.log
		javac -nowarn -cp "$JARS/*" -d "$CHECK_DIR" "$src" >"$clog" 2>&1 || {
			show_log "$clog"
			die "could not compile $src (log: $clog)"
		}
	fi
}

# kafka_check MODE BOOTSTRAP BROKERS TIMEOUT_S [isr]: runs KafkaCheck.
kafka_check() {
	local logs=$KAFKA_HOME/check-logs
	mkdir -p "$logs"
	java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$JARS/*:$CHECK_DIR" \
		-Dlog4j2.configurationFile="$SCRIPTS_DIR/kafka/log4j2.xml" \
		-Dkafka.logs.dir="$logs" -Dinterlock.log.name=check \
		KafkaCheck "$1" "$2" "$3" "$(($4 * 1000))" "${@:5}"
}

cluster_id() { # DIR
	if [ ! -s "$1/cluster.id" ]; then
		mkdir -p "$1"
		# A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.
		head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$1/cluster.id"
	fi
	cat "$1/cluster.id"
}

# write_props DIR NODE_ID CLIENT_PORT CONTROLLER_PORT VOTERS RF MIN_ISR
write_props() {
	local dir=$1 id=$2 port=$3 cport=$4 voters=$5 rf=$6 isr=$7
	mkdir -p "$dir/data" "$dir/logs"
	cat >"$dir/server.properties" <<EOF
# Written by scripts/services.sh at each start; edits are lost.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
# A produce into a partition whose previous transaction's markers are not yet
# written waits this long (default 20 ms); processors begin their next
# transaction right after a commit, so it sets command latency (BENCHMARKS.md).
add.partitions.to.txn.retry.backoff.ms=1
unclean.leader.election.enable=false
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
}

# kafka_launch DIR HEAP CLUSTER_ID: formats the storage once, starts the node.
kafka_launch() {
	local dir=$1 heap=$2 cid=$3
	if [ -n "${FRESH:-}" ] && [ -d "$dir/data" ]; then
		log "kafka: --fresh: emptying $dir/data"
		rm -rf "$dir/data"
		mkdir -p "$dir/data"
	fi
	if [ ! -f "$dir/data/meta.properties" ]; then
		local flog=$dir/logs/format.log
		if ! java -Xmx256m -cp "$JARS/*" -Dlog4j2.configurationFile="$SCRIPTS_DIR/kafka/log4j2.xml" \
			-Dkafka.logs.dir="$dir/logs" -Dinterlock.log.name=format \
			kafka.tools.StorageTool format --ignore-formatted -t "$cid" -c "$dir/server.properties" \
			--feature transaction.version=2 >"$flog" 2>&1; then
			show_log "$flog"
			die "kafka-storage format failed for $dir (log: $flog)"
		fi
	fi
	: >"$dir/kafka.out"
	rm -f "$dir/kafka.pid"
	if [ -f "$dir/logs/server.log" ]; then mv -f "$dir/logs/server.log" "$dir/logs/server.log.previous"; fi
	# setsid: the node outlives this shell and its job control; the inner
	# shell writes its own pid, then becomes java (exec), so the pid is java's.
	(
		ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
		cd "$dir"
		# shellcheck disable=SC2016 # expanded by the inner shell
		exec setsid bash -c 'echo $$ >"$0/kafka.pid"; exec "$@"' "$dir" \
			java -Xms128m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
			-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExitOnOutOfMemoryError \
			-Djava.awt.headless=true -Dkafka.logs.dir="$dir/logs" \
			-Dlog4j2.configurationFile="$SCRIPTS_DIR/kafka/log4j2.xml" \
			-cp "$JARS/*" kafka.Kafka "$dir/server.properties"
	) </dev/null >>"$dir/kafka.out" 2>&1 9>&- &
	local i
	for ((i = 0; i < 50; i++)); do
		[ -s "$dir/kafka.pid" ] && return 0
		sleep 0.1
	done
	die "Kafka node in $dir did not start (log: $dir/kafka.out)"
}

# kafka_wait_port DIR PORT: until the node listens; fails early if it died,
# says every 15 s what it is doing, and shows its log when it gives up.
kafka_wait_port() {
	local dir=$1 port=$2 start=$SECONDS next=$((SECONDS + 15))
	while ! port_open "$port"; do
		if ! alive "$dir/kafka.pid" kafka.Kafka; then
			show_log "$dir/logs/server.log"
			show_log "$dir/kafka.out"
			die "Kafka node in $dir exited during start-up (logs: $dir/logs/server.log, $dir/kafka.out)"
		fi
		if ((SECONDS - start >= KAFKA_WAIT)); then
			show_log "$dir/logs/server.log"
			show_log "$dir/kafka.out"
			die "Kafka did not listen on 127.0.0.1:$port within ${KAFKA_WAIT}s; its storage holds $(partition_dirs "$dir") partition directories (an unclean stop makes it recover each: 'up --fresh' starts on empty storage) (log: $dir/logs/server.log)"
		fi
		if ((SECONDS >= next)); then
			next=$((SECONDS + 15))
			log "kafka: node $dir not listening yet after $((SECONDS - start))s ($(partition_dirs "$dir") partition directories; last log line: $(tail -n 1 "$dir/logs/server.log" 2>/dev/null | cut -c1-160))"
		fi
		sleep 0.2
	done
}

partition_dirs() { find "$1/data" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }

kafka_stop_dir() { # DIR SIGNAL
	local dir=$1 pid
	alive "$dir/kafka.pid" "$dir/server.properties" || {
		rm -f "$dir/kafka.pid"
		return 0
	}
	pid=$(pid_of "$dir/kafka.pid")
	kill "-$2" "$pid" 2>/dev/null || true
	if ! wait_gone "$pid" 30; then
		log "Kafka node $dir did not stop within 30s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" 10 || true
	fi
	rm -f "$dir/kafka.pid"
}

up_kafka() {
	if alive "$SINGLE/kafka.pid" "$SINGLE/server.properties"; then
		local port
		port=$(cat "$SINGLE/port" 2>/dev/null || echo "$KAFKA_PORT")
		kafka_check_build
		if kafka_check probe "127.0.0.1:$port" 1 10 >/dev/null 2>&1; then
			log "kafka: already running on 127.0.0.1:$port (pid $(pid_of "$SINGLE/kafka.pid"))"
			KAFKA_STARTED=
			return 0
		fi
		die "kafka: running (pid $(pid_of "$SINGLE/kafka.pid")) but not answering on 127.0.0.1:$port; try 'scripts/services.sh down kafka' (log: $SINGLE/logs/server.log)"
	fi
	port_free_or_die "$KAFKA_PORT" "Kafka" "$SINGLE/logs/server.log"
	port_free_or_die "$KAFKA_CONTROLLER_PORT" "the Kafka controller" "$SINGLE/logs/server.log"
	need_java
	kafka_jars
	kafka_check_build
	write_props "$SINGLE" 1 "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "1@127.0.0.1:$KAFKA_CONTROLLER_PORT" 1 1
	echo "$KAFKA_PORT" >"$SINGLE/port"
	log "kafka: starting Kafka $KAFKA_VERSION (KRaft) on 127.0.0.1:$KAFKA_PORT..."
	kafka_launch "$SINGLE" "$KAFKA_HEAP" "$(cluster_id "$SINGLE")"
	KAFKA_STARTED=1
}

# Second half of up_kafka, so Redis and PostgreSQL start while Kafka boots.
up_kafka_wait() {
	[ -n "${KAFKA_STARTED:-}" ] || return 0
	local start=$SECONDS out left
	kafka_wait_port "$SINGLE" "$KAFKA_PORT"
	left=$((KAFKA_WAIT - (SECONDS - start)))
	if ! out=$(kafka_check ready "127.0.0.1:$KAFKA_PORT" 1 $((left > 10 ? left : 10)) 2>&1); then
		printf '%s\n' "$out" >&2
		show_log "$SINGLE/logs/server.log"
		die "Kafka on 127.0.0.1:$KAFKA_PORT did not become ready (metadata + transactions) within ${KAFKA_WAIT}s (logs: $SINGLE/logs/server.log, $SINGLE/kafka.out)"
	fi
	log "kafka: ready on 127.0.0.1:$KAFKA_PORT ($out)"
}

node_dir() { echo "$CLUSTER/node$1"; }
cluster_port() { cat "$CLUSTER/port" 2>/dev/null || echo "$CLUSTER_PORT"; }
cluster_bootstrap() {
	local p
	p=$(cluster_port)
	echo "127.0.0.1:$p,127.0.0.1:$((p + 1)),127.0.0.1:$((p + 2))"
}

cluster_write_props() { # N
	local p n=$1
	p=$(cluster_port)
	write_props "$(node_dir "$n")" "$n" $((p + n - 1)) $((p + 99 + n)) \
		"1@127.0.0.1:$((p + 100)),2@127.0.0.1:$((p + 101)),3@127.0.0.1:$((p + 102))" 3 2
}

up_cluster() {
	local n running=0 dir
	for n in 1 2 3; do
		alive "$(node_dir "$n")/kafka.pid" "$(node_dir "$n")/server.properties" && running=$((running + 1))
	done
	if [ "$running" = 3 ]; then
		log "cluster: already running on $(cluster_bootstrap)"
		return 0
	fi
	need_java
	kafka_jars
	kafka_check_build
	mkdir -p "$CLUSTER"
	if [ "$running" = 0 ]; then
		echo "$CLUSTER_PORT" >"$CLUSTER/port"
	else
		FRESH= # a node that rejoins a running quorum keeps its metadata log
	fi
	local p
	p=$(cluster_port)
	log "cluster: starting three Kafka $KAFKA_VERSION nodes on $(cluster_bootstrap)..."
	for n in 1 2 3; do
		dir=$(node_dir "$n")
		alive "$dir/kafka.pid" "$dir/server.properties" && continue
		port_free_or_die $((p + n - 1)) "Kafka cluster node $n" "$dir/logs/server.log"
		port_free_or_die $((p + 99 + n)) "Kafka cluster controller $n" "$dir/logs/server.log"
		cluster_write_props "$n"
		kafka_launch "$dir" "$CLUSTER_HEAP" "$(cluster_id "$CLUSTER")"
	done
	local start=$SECONDS out left
	for n in 1 2 3; do
		kafka_wait_port "$(node_dir "$n")" $((p + n - 1))
	done
	left=$((KAFKA_WAIT - (SECONDS - start)))
	if ! out=$(kafka_check ready "$(cluster_bootstrap)" 3 $((left > 10 ? left : 10)) 2>&1); then
		printf '%s\n' "$out" >&2
		die "the Kafka cluster on $(cluster_bootstrap) did not become ready within ${KAFKA_WAIT}s (logs: $CLUSTER/node*/logs/server.log)"
	fi
	log "cluster: ready on $(cluster_bootstrap) ($out)"
}

node_arg() {
	case "${1:-}" in
	1 | 2 | 3) ;;
	*) die "expected a cluster node number 1, 2 or 3, got '${1:-}'" ;;
	esac
	[ -f "$(node_dir "$1")/server.properties" ] || die "the cluster has not been started: run 'scripts/services.sh up cluster' first"
}

stop_node() { # N SIGNAL
	node_arg "$1"
	local dir
	dir=$(node_dir "$1")
	if ! alive "$dir/kafka.pid" "$dir/server.properties"; then
		log "cluster: node $1 is not running"
		return 0
	fi
	log "cluster: stopping node $1 (pid $(pid_of "$dir/kafka.pid"), SIG$2)..."
	kafka_stop_dir "$dir" "$2"
	log "cluster: node $1 stopped"
}

start_node() { # N
	node_arg "$1"
	local dir out p
	dir=$(node_dir "$1")
	p=$(cluster_port)
	if alive "$dir/kafka.pid" "$dir/server.properties"; then
		log "cluster: node $1 is already running"
		return 0
	fi
	kafka_jars
	kafka_check_build
	port_free_or_die $((p + $1 - 1)) "Kafka cluster node $1" "$dir/logs/server.log"
	cluster_write_props "$1"
	log "cluster: starting node $1 on 127.0.0.1:$((p + $1 - 1))..."
	kafka_launch "$dir" "$CLUSTER_HEAP" "$(cluster_id "$CLUSTER")"
	kafka_wait_port "$dir" $((p + $1 - 1))
	if ! out=$(kafka_check ready "$(cluster_bootstrap)" 3 "$KAFKA_WAIT" isr 2>&1); then
		printf '%s\n' "$out" >&2
		die "cluster node $1 did not rejoin within ${KAFKA_WAIT}s (log: $dir/logs/server.log)"
	fi
	log "cluster: node $1 is back, all partitions in sync ($out)"
}

# ---------------------------------------------------------------- Redis

redis_ping() { # PORT
	if command -v redis-cli >/dev/null 2>&1; then
		[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
	else
		local reply
		reply=$(exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3) 2>/dev/null
		[ "$reply" = "+PONG" ]
	fi
}

up_redis() {
	local rlog=$REDIS_DIR/redis.log port
	if alive "$REDIS_DIR/redis.pid" redis-server; then
		port=$(cat "$REDIS_DIR/port" 2>/dev/null || echo "$REDIS_PORT")
		redis_ping "$port" || die "redis: running (pid $(pid_of "$REDIS_DIR/redis.pid")) but not answering PING on 127.0.0.1:$port (log: $rlog)"
		log "redis: already running on 127.0.0.1:$port"
		return 0
	fi
	if ! command -v redis-server >/dev/null 2>&1; then
		apt_install redis-server
		# Where services may start on install, stop the one the package started.
		if [ -x /etc/init.d/redis-server ] && pgrep -x redis-server >/dev/null 2>&1; then
			/etc/init.d/redis-server stop >/dev/null 2>&1 || true
		fi
	fi
	local v
	v=$(redis-server --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
	[ "${v%%.*}" -ge 7 ] 2>/dev/null || log "redis: WARNING: redis-server ${v:-?} found, Redis 7 expected"
	mkdir -p "$REDIS_DIR"
	port_free_or_die "$REDIS_PORT" "Redis" "$rlog"
	log "redis: starting Redis ${v:-?} on 127.0.0.1:$REDIS_PORT..."
	echo "$REDIS_PORT" >"$REDIS_DIR/port"
	rm -f "$REDIS_DIR/redis.pid"
	if ! redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
		--pidfile "$REDIS_DIR/redis.pid" --logfile "$rlog" --dir "$REDIS_DIR" \
		--save '' --appendonly no --protected-mode yes 9>&-; then
		show_log "$rlog"
		die "redis-server did not start (log: $rlog)"
	fi
	local i
	for ((i = 0; i < 100; i++)); do
		redis_ping "$REDIS_PORT" && {
			log "redis: ready on 127.0.0.1:$REDIS_PORT"
			return 0
		}
		sleep 0.1
	done
	show_log "$rlog"
	die "Redis did not answer on 127.0.0.1:$REDIS_PORT within 10s (log: $rlog)"
}

down_redis() {
	if alive "$REDIS_DIR/redis.pid" redis-server; then
		local pid
		pid=$(pid_of "$REDIS_DIR/redis.pid")
		log "redis: stopping (pid $pid)..."
		kill -TERM "$pid" 2>/dev/null || true
		wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$REDIS_DIR/redis.pid"
}

# ---------------------------------------------------------------- PostgreSQL

pg_bin() {
	local d
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		echo "$d"
	elif command -v initdb >/dev/null 2>&1; then
		dirname "$(command -v initdb)"
	fi
}

# PostgreSQL refuses to run as root: as root it runs as the package's
# "postgres" user, whose data must then be where that user can reach it. When
# it cannot reach the cache dir (e.g. under /root), the data goes to
# /var/lib/postgresql/interlock-services-<checksum of the cache dir path>.
pg_dir() {
	if [ -n "${INTERLOCK_POSTGRES_DIR:-}" ]; then
		echo "$INTERLOCK_POSTGRES_DIR"
		return
	fi
	mkdir -p "$BASE"
	if is_root && id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$BASE"; then
		echo "/var/lib/postgresql/interlock-services-$(printf '%s' "$BASE" | cksum | cut -d' ' -f1)"
	else
		echo "$BASE/postgres"
	fi
}

as_pg() {
	if is_root; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_login() { # PORT: the test DSN works (password login over TCP)
	PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=3 psql -X -q -t -A -h 127.0.0.1 -p "$1" -U "$PG_USER" -d "$PG_DB" -c 'select 1' >/dev/null 2>&1
}

pg_running() { # DIR
	[ -f "$1/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

up_postgres() {
	local installed_now=
	PGBIN=$(pg_bin)
	if [ -z "$PGBIN" ]; then
		apt_install postgresql
		installed_now=1
		PGBIN=$(pg_bin)
		[ -n "$PGBIN" ] || die "postgresql installed, but initdb was not found under /usr/lib/postgresql/*/bin (log: $BASE/apt-postgresql.log)"
	fi
	if [ -n "$installed_now" ] && command -v pg_lsclusters >/dev/null 2>&1; then
		# Where services may start on install, stop the cluster the package started.
		pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r ver name; do
			pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
		done
	fi
	if is_root && ! id postgres >/dev/null 2>&1; then
		die "running as root, but there is no 'postgres' user to run PostgreSQL as (it is created by Debian's postgresql package: apt-get install -y postgresql)"
	fi
	local dir plog port
	dir=$(pg_dir)
	plog=$dir/postgres.log
	mkdir -p "$dir"
	is_root && chown postgres: "$dir"
	if pg_running "$dir"; then
		port=$(cat "$dir/port" 2>/dev/null || echo "$PG_PORT")
		pg_login "$port" || die "postgres: running but the test DSN does not log in on 127.0.0.1:$port (log: $plog)"
		log "postgres: already running on 127.0.0.1:$port"
		return 0
	fi
	port_free_or_die "$PG_PORT" "PostgreSQL" "$plog"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		log "postgres: initdb in $dir/data (first run only)..."
		rm -rf "$dir/data"
		if ! as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -E UTF8 --no-locale --no-sync \
			--auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1; then
			show_log "$dir/initdb.log"
			die "initdb failed (log: $dir/initdb.log)"
		fi
		as_pg mkdir -p "$dir/run"
		cat >>"$dir/data/postgresql.conf" <<EOF

# scripts/services.sh: a throwaway test server on loopback.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/run'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
	fi
	log "postgres: starting PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT..."
	echo "$PG_PORT" >"$dir/port"
	if ! as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$plog" -w -t 60 -o "-p $PG_PORT" start >/dev/null 2>&1 9>&-; then
		show_log "$plog"
		die "PostgreSQL did not start on 127.0.0.1:$PG_PORT (log: $plog)"
	fi
	# The test role and database (idempotent), as superuser over the socket.
	local slog=$dir/setup.log
	if ! psql -X -q -v ON_ERROR_STOP=1 -h "$dir/run" -p "$PG_PORT" -U postgres -d postgres >"$slog" 2>&1 <<EOF; then
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
EOF
		show_log "$slog"
		die "could not create the PostgreSQL role $PG_USER and database $PG_DB (log: $slog)"
	fi
	pg_login "$PG_PORT" || die "PostgreSQL started, but the test DSN does not log in (log: $plog)"
	log "postgres: ready on 127.0.0.1:$PG_PORT (database $PG_DB, user $PG_USER)"
}

down_postgres() {
	PGBIN=$(pg_bin)
	[ -n "$PGBIN" ] || return 0
	local dir
	dir=$(pg_dir)
	if pg_running "$dir"; then
		log "postgres: stopping..."
		as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			log "postgres: pg_ctl stop failed (log: $dir/postgres.log)"
	fi
}

# ---------------------------------------------------------------- commands

lock() {
	mkdir -p "$BASE"
	exec 9>"$BASE/.lock"
	flock -w 300 9 || die "another scripts/services.sh holds $BASE/.lock"
}

parse_services() { # default... -- args: sets SERVICES, CLUSTER_FLAG, CLEAN
	SERVICES=()
	local a
	for a in "$@"; do
		case "$a" in
		--cluster) CLUSTER_FLAG=1 ;;
		--clean) CLEAN=1 ;;
		--fresh) FRESH=1 ;;
		kafka | redis | postgres | cluster) SERVICES+=("$a") ;;
		*) die "unknown service or option '$a' (services: kafka, redis, postgres, cluster)" ;;
		esac
	done
}

has() { # NAME: in SERVICES
	local s
	for s in "${SERVICES[@]}"; do [ "$s" = "$1" ] && return 0; done
	return 1
}

cmd_up() {
	CLUSTER_FLAG=
	FRESH=
	parse_services "$@"
	if [ ${#SERVICES[@]} = 0 ]; then
		SERVICES=(kafka redis postgres)
	fi
	[ -n "$CLUSTER_FLAG" ] && SERVICES+=(cluster)
	lock
	local t0=$SECONDS
	KAFKA_STARTED=
	if has kafka; then up_kafka; fi
	if has redis; then up_redis; fi
	if has postgres; then up_postgres; fi
	if has kafka; then up_kafka_wait; fi
	if has cluster; then up_cluster; fi
	log "up: done in $((SECONDS - t0))s; for the tests: eval \"\$(scripts/services.sh env)\""
}

cmd_down() {
	CLEAN=
	parse_services "$@"
	if [ ${#SERVICES[@]} = 0 ]; then
		SERVICES=(cluster kafka redis postgres)
	fi
	lock
	local n pids=() dir pid
	if has cluster; then
		# All nodes at once: stopped one by one, the last would wait for a lost quorum.
		for n in 1 2 3; do
			dir=$(node_dir "$n")
			if alive "$dir/kafka.pid" "$dir/server.properties"; then
				pid=$(pid_of "$dir/kafka.pid")
				kill -TERM "$pid" 2>/dev/null || true
				pids+=("$pid")
			fi
		done
		if [ ${#pids[@]} -gt 0 ]; then
			log "cluster: stopping ${#pids[@]} node(s)..."
			for pid in "${pids[@]}"; do
				wait_gone "$pid" 20 || kill -KILL "$pid" 2>/dev/null || true
			done
		fi
		rm -f "$CLUSTER"/node*/kafka.pid
		[ -n "$CLEAN" ] && rm -rf "$CLUSTER"
	fi
	if has kafka; then
		if alive "$SINGLE/kafka.pid" "$SINGLE/server.properties"; then
			log "kafka: stopping (pid $(pid_of "$SINGLE/kafka.pid"))..."
			kafka_stop_dir "$SINGLE" TERM
		fi
		[ -n "$CLEAN" ] && rm -rf "$SINGLE"
	fi
	if has redis; then
		down_redis
		[ -n "$CLEAN" ] && rm -rf "$REDIS_DIR"
	fi
	if has postgres; then
		down_postgres
		if [ -n "$CLEAN" ]; then rm -rf "$(pg_dir)"; fi
	fi
	if [ -n "$CLEAN" ]; then rm -rf "$KAFKA_HOME/check-logs"; fi
	log "down: done${CLEAN:+ (data removed; jars stay in $KAFKA_HOME)}"
}

cmd_status() {
	local ok=0 out port dir n
	if alive "$SINGLE/kafka.pid" "$SINGLE/server.properties"; then
		port=$(cat "$SINGLE/port" 2>/dev/null || echo "$KAFKA_PORT")
		if [ -d "$CHECK_DIR" ] && out=$(kafka_check probe "127.0.0.1:$port" 1 10 2>&1); then
			echo "kafka     127.0.0.1:$port  running (pid $(pid_of "$SINGLE/kafka.pid")), answers: Kafka $KAFKA_VERSION $out"
		else
			echo "kafka     127.0.0.1:$port  running (pid $(pid_of "$SINGLE/kafka.pid")), NOT answering (log: $SINGLE/logs/server.log)"
			ok=1
		fi
	else
		echo "kafka     not running"
		ok=1
	fi
	local up=()
	for n in 1 2 3; do
		dir=$(node_dir "$n")
		alive "$dir/kafka.pid" "$dir/server.properties" && up+=("$n")
	done
	if [ ${#up[@]} -gt 0 ]; then
		if out=$(kafka_check probe "$(cluster_bootstrap)" 1 10 2>&1); then
			echo "cluster   $(cluster_bootstrap)  nodes running: ${up[*]}, answers: $out"
		else
			echo "cluster   $(cluster_bootstrap)  nodes running: ${up[*]}, NOT answering (logs: $CLUSTER/node*/logs/server.log)"
			ok=1
		fi
	else
		echo "cluster   not running"
	fi
	if alive "$REDIS_DIR/redis.pid" redis-server; then
		port=$(cat "$REDIS_DIR/port" 2>/dev/null || echo "$REDIS_PORT")
		if redis_ping "$port"; then
			echo "redis     127.0.0.1:$port  running (pid $(pid_of "$REDIS_DIR/redis.pid")), answers PING"
		else
			echo "redis     127.0.0.1:$port  running, NOT answering (log: $REDIS_DIR/redis.log)"
			ok=1
		fi
	else
		echo "redis     not running"
		ok=1
	fi
	PGBIN=$(pg_bin)
	dir=$(pg_dir)
	if [ -n "$PGBIN" ] && pg_running "$dir"; then
		port=$(cat "$dir/port" 2>/dev/null || echo "$PG_PORT")
		if pg_login "$port"; then
			echo "postgres  127.0.0.1:$port  running (data $dir/data), answers: $PG_USER@$PG_DB logs in"
		else
			echo "postgres  127.0.0.1:$port  running, NOT answering for $PG_USER@$PG_DB (log: $dir/postgres.log)"
			ok=1
		fi
	else
		echo "postgres  not running"
		ok=1
	fi
	return "$ok"
}

cmd_env() {
	local port dir n cl=0
	if alive "$SINGLE/kafka.pid" "$SINGLE/server.properties"; then
		port=$(cat "$SINGLE/port" 2>/dev/null || echo "$KAFKA_PORT")
		echo "export INTERLOCK_TEST_BROKERS=127.0.0.1:$port"
		echo "export INTERLOCK_TEST_KAFKA_VERSION=$KAFKA_VERSION"
	else
		echo "unset INTERLOCK_TEST_BROKERS INTERLOCK_TEST_KAFKA_VERSION  # kafka: not running"
	fi
	if [ -f "$JARS/.complete" ]; then
		echo "export INTERLOCK_TEST_KAFKA_JARS=$JARS"
	else
		echo "unset INTERLOCK_TEST_KAFKA_JARS  # kafka jars: not downloaded"
	fi
	for n in 1 2 3; do
		dir=$(node_dir "$n")
		if alive "$dir/kafka.pid" "$dir/server.properties"; then cl=1; fi
	done
	if [ "$cl" = 1 ]; then
		echo "export INTERLOCK_TEST_CLUSTER_BROKERS=$(cluster_bootstrap)"
	else
		echo "unset INTERLOCK_TEST_CLUSTER_BROKERS  # cluster: not running"
	fi
	if alive "$REDIS_DIR/redis.pid" redis-server; then
		port=$(cat "$REDIS_DIR/port" 2>/dev/null || echo "$REDIS_PORT")
		echo "export INTERLOCK_TEST_REDIS_URL=redis://127.0.0.1:$port/0"
	else
		echo "unset INTERLOCK_TEST_REDIS_URL  # redis: not running"
	fi
	PGBIN=$(pg_bin)
	dir=$(pg_dir)
	if [ -n "$PGBIN" ] && pg_running "$dir"; then
		port=$(cat "$dir/port" 2>/dev/null || echo "$PG_PORT")
		echo "export INTERLOCK_TEST_POSTGRES_DSN='postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$PG_DB?sslmode=disable'"
	else
		echo "unset INTERLOCK_TEST_POSTGRES_DSN  # postgres: not running"
	fi
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

main() {
	local cmd=${1:-}
	[ $# -gt 0 ] && shift
	case "$cmd" in
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	status) cmd_status ;;
	env) cmd_env ;;
	stop-node) lock && stop_node "${1:-}" TERM ;;
	kill-node) lock && stop_node "${1:-}" KILL ;;
	start-node) lock && start_node "${1:-}" ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
