// Package service turns an Interlock application into a binary with the
// standard commands an operator needs: a user's main builds the
// application and hands it to Main, which runs the command line.
//
//	func main() {
//		service.Main(func(ctx context.Context, cfg *service.Config) (*interlock.Builder, error) {
//			return interlock.NewBuilder(cfg.Options()...).
//				RegisterAggregate(accounts).
//				RegisterProjection(balances), nil
//		})
//	}
//
// The commands:
//
//	serve                          run the application: processors, projections and HTTP
//	                               (/healthz, /readyz, /metrics) until SIGINT or SIGTERM, then drain
//	topics create|describe|verify  create the topics, show them, check their layout
//	events tail                    print events, decoded: --aggregate, --id, --type, --offset, --since, --follow
//	aggregate show TYPE ID         one aggregate's state and version, folded from its events
//	projections status [NAME]      progress per partition, lag, caught up or not
//	projections reset NAME         start a stopped projection over
//	projections rebuild NAME       how to build a new version beside the serving one
//	projections dlq list NAME      events parked in the dead-letter topic
//	projections dlq retry NAME KEY apply a key's parked events again
//	schema check                   check the schemas against the registry, for CI
//	healthcheck                    ask this host's serve whether it is ready (exit 0) or not (1)
//	bench                          measure the workload given WithBench (package bench): commands,
//	                               latency, restores and projectors against the broker's limit
//
// A binary adds its own commands with WithCommand, and gives bench the
// workload it measures with WithBench: the aggregate type and the commands
// to send (without one, bench fails and says so). bench has flags of its
// own (bench -h), not the settings below, but on its --brokers it uses
// the Kafka TLS and SASL settings of the environment and the
// configuration file, as the other commands do. The commands that read
// or change the cluster (topics, events, aggregate, projections) need
// brokers; serve alone runs an embedded Kafka without them. The
// projections commands start the application as a dispatcher only (its
// projections passive, following the running instances' progress), which
// creates missing topics.
//
// # Configuration
//
// Every command takes the settings below (those marked "serve:" only
// serve; the others ignore their variables and keys), each from a flag,
// else an environment variable, else the YAML file given by --config (a
// flat map of the YAML keys; unknown keys are errors), else its default.
// Config holds the result, and Config.Options the interlock options it
// implies.
//
// Secrets (the Redis password, the PostgreSQL DSN, the SASL password, the
// schema registry's password or token) have no flag of their own: they
// come from their environment variable, or from a file named by
// <VARIABLE>_FILE, the --...-file flag or the YAML key (a mounted
// Kubernetes Secret). They never appear in --help, in
// errors or in logs: the logger and the errors of Run replace them with
// [redacted].
//
//	| flag | environment | YAML key | default | what |
//	| --- | --- | --- | --- | --- |
//	| `--config` | `INTERLOCK_CONFIG` | — | none | YAML file of settings, a flat map of their YAML keys; flags and environment variables win over it |
//	| `--brokers` | `INTERLOCK_BROKERS` | `brokers` | none | comma-separated Kafka seed brokers (serve: none runs an embedded Kafka) |
//	| `--name` | `INTERLOCK_NAME` | `name` | `interlock` | application name: the prefix of its topics, groups and transactional IDs |
//	| `--partitions` | `INTERLOCK_PARTITIONS` | `partitions` | `6` | partitions of the topics Interlock creates |
//	| `--replication-factor` | `INTERLOCK_REPLICATION_FACTOR` | `replicationFactor` | `-1` | replication factor of the topics Interlock creates (-1: the broker's default) |
//	| `--log-level` | `INTERLOCK_LOG_LEVEL` | `logLevel` | `info` | debug, info, warn or error |
//	| `--instance-id` | `INTERLOCK_INSTANCE_ID` | `instanceId` | none | serve: stable instance ID, e.g. the pod name (default: hostname and a random suffix) |
//	| `--roles` | `INTERLOCK_ROLES` | `roles` | `dispatch,process,project` | serve: roles of the instance: dispatch, process, project |
//	| `--http` | `INTERLOCK_HTTP_ADDR` | `http` | `:8080` | serve: address of /metrics, /healthz and /readyz ("off": none) |
//	| `--drain-timeout` | `INTERLOCK_DRAIN_TIMEOUT` | `drainTimeout` | `30s` | serve: longest serve drains after SIGTERM (transactions finished, groups left); keep the pod's grace period longer |
//	| `--redis` | `INTERLOCK_REDIS_URL` | `redis` | none | serve: Redis snapshot store, redis[s]://[user@]host:port/db (default: in-process snapshots) |
//	| `--redis-key-prefix` | `INTERLOCK_REDIS_KEY_PREFIX` | `redisKeyPrefix` | none | serve: prefix of the snapshot store's keys (default: the application name) |
//	| `--redis-password-file` (a file) | `INTERLOCK_REDIS_PASSWORD`, `INTERLOCK_REDIS_PASSWORD_FILE` | `redisPasswordFile` (a file) | none | serve: secret: Redis password; only from the environment or a file |
//	| `--redis-tls-ca-file` | `INTERLOCK_REDIS_TLS_CA_FILE` | `redisTlsCaFile` | none | serve: PEM CA certificates to trust for Redis; implies TLS, also with redis:// (default for rediss://: the system's) |
//	| `--gateway-token-file` (a file) | `INTERLOCK_GATEWAY_TOKEN`, `INTERLOCK_GATEWAY_TOKEN_FILE` | `gatewayTokenFile` (a file) | none | serve: secret: bearer token of the HTTP JSON gateway on --http (POST /v1/commands/{type}, /v1/queries/{type}); none: no gateway; only from the environment or a file |
//	| `--gateway-max-body` | `INTERLOCK_GATEWAY_MAX_BODY` | `gatewayMaxBody` | `1048576` | serve: largest request body the gateway accepts |
//	| `--gateway-timeout` | `INTERLOCK_GATEWAY_TIMEOUT` | `gatewayTimeout` | `30s` | serve: longest the gateway waits for a command's outcome or a query's answer |
//	| `--postgres-dsn-file` (a file) | `INTERLOCK_POSTGRES_DSN`, `INTERLOCK_POSTGRES_DSN_FILE` | `postgresDsnFile` (a file) | none | secret: PostgreSQL connection string of the read models, postgres://user:password@host:port/db; only from the environment or a file |
//	| `--tls` | `INTERLOCK_TLS` | `tls` | `false` | connect to Kafka with TLS (implied by the other tls settings) |
//	| `--tls-ca-file` | `INTERLOCK_TLS_CA_FILE` | `tlsCaFile` | none | PEM CA certificates to trust (default: the system's) |
//	| `--tls-cert-file` | `INTERLOCK_TLS_CERT_FILE` | `tlsCertFile` | none | PEM client certificate, for mutual TLS |
//	| `--tls-key-file` | `INTERLOCK_TLS_KEY_FILE` | `tlsKeyFile` | none | PEM key of the client certificate |
//	| `--tls-server-name` | `INTERLOCK_TLS_SERVER_NAME` | `tlsServerName` | none | name to check in the brokers' certificates (default: the broker's host) |
//	| `--tls-insecure-skip-verify` | `INTERLOCK_TLS_INSECURE_SKIP_VERIFY` | `tlsInsecureSkipVerify` | `false` | do not check the brokers' certificates (tests only) |
//	| `--sasl-mechanism` | `INTERLOCK_SASL_MECHANISM` | `saslMechanism` | none | PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (default: no SASL) |
//	| `--sasl-username` | `INTERLOCK_SASL_USERNAME` | `saslUsername` | none | SASL user |
//	| `--sasl-password-file` (a file) | `INTERLOCK_SASL_PASSWORD`, `INTERLOCK_SASL_PASSWORD_FILE` | `saslPasswordFile` (a file) | none | secret: SASL password, or OAUTHBEARER's token; a file is read again at each authentication; only from the environment or a file |
//	| `--schema-registry` | `INTERLOCK_SCHEMA_REGISTRY_URL` | `schemaRegistry` | none | comma-separated URLs of a Confluent-compatible schema registry, tried in order (default: the built-in registry, the topic <name>._schemas) |
//	| `--schema-registry-username` | `INTERLOCK_SCHEMA_REGISTRY_USERNAME` | `schemaRegistryUsername` | none | schema registry basic-auth user, e.g. an API key |
//	| `--schema-registry-password-file` (a file) | `INTERLOCK_SCHEMA_REGISTRY_PASSWORD`, `INTERLOCK_SCHEMA_REGISTRY_PASSWORD_FILE` | `schemaRegistryPasswordFile` (a file) | none | secret: schema registry basic-auth password, e.g. an API secret; a file is read again at each request; only from the environment or a file |
//	| `--schema-registry-token-file` (a file) | `INTERLOCK_SCHEMA_REGISTRY_TOKEN`, `INTERLOCK_SCHEMA_REGISTRY_TOKEN_FILE` | `schemaRegistryTokenFile` (a file) | none | secret: schema registry bearer token; a file is read again at each request; only from the environment or a file |
//	| `--schema-registry-ca-file` | `INTERLOCK_SCHEMA_REGISTRY_CA_FILE` | `schemaRegistryCaFile` | none | PEM CA certificates to trust for an https schema registry (default: the system's) |
//	| `--schema-compatibility` | `INTERLOCK_SCHEMA_COMPATIBILITY` | `schemaCompatibility` | `BACKWARD_TRANSITIVE` | compatibility new schemas must keep with the registered ones: BACKWARD_TRANSITIVE, BACKWARD, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE |
//
// With --schema-registry the schemas live in that Confluent-compatible
// registry (interlock.WithSchemaRegistry with a schema/httpregistry
// client) instead of the built-in one, for every command: serve checks
// and registers them at start, schema check checks them, events tail and
// aggregate show read old events through them.
//
// Kafka TLS and SASL become franz-go options (kgo.DialTLSConfig, kgo.SASL
// with the sasl/plain, sasl/scram and sasl/oauth mechanisms). A SASL
// password or token read from a file is read again at each
// authentication, so a rotated secret needs no restart.
package service
