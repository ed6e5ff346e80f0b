package interlock

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/kafkaregistry"
	"github.com/interlock-go/interlock/snapshot"
)

// Option configures an application. Each option's doc states its default.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Role is a part an application instance plays.
type Role uint8

const (
	// RoleDispatch lets the instance Dispatch and Send commands.
	RoleDispatch Role = 1 << iota
	// RoleProcess makes the instance a command processor: it joins the
	// processors' group and handles the commands of the partitions it owns.
	RoleProcess
	// RoleProject runs the registered projections: each joins its own
	// group and applies the events of the partitions it owns. Without it
	// an instance can still Ask a projection's queries.
	RoleProject
)

type config struct {
	brokers            []string
	name               string
	partitions         int32
	replicationFactor  int16
	logger             *slog.Logger
	codec              schema.Codec
	instanceID         string
	dataDir            string
	roles              Role
	transactionTimeout time.Duration
	sessionTimeout     time.Duration
	clientOpts         []kgo.Opt
	store              snapshot.Store
	maxCached          int
	maxCachedBytes     int64
	flushInterval      time.Duration
	idempotencyWindow  int
	observers          []any
	// openRegistry opens the schema registry (nil: none); builtin is
	// set while it is the default one, which needs the final name.
	openRegistry func(ctx context.Context, clientOpts []kgo.Opt) (schema.Registry, error)
	builtin      bool
	compat       schema.Compatibility
	upcasters    []schema.Upcaster
}

func defaults() config {
	host, _ := os.Hostname()
	if host == "" {
		host = "interlock"
	}
	return config{
		name:               "interlock",
		partitions:         6,
		replicationFactor:  -1,
		logger:             slog.Default(),
		codec:              schema.Avro(),
		instanceID:         host + "-" + ulid.Make().String()[20:],
		roles:              RoleDispatch | RoleProcess | RoleProject,
		transactionTimeout: 10 * time.Second,
		sessionTimeout:     45 * time.Second,
		maxCached:          100_000,
		maxCachedBytes:     1 << 30,
		flushInterval:      5 * time.Second,
		idempotencyWindow:  20,
		builtin:            true,
	}
}

func (c *config) validate() error {
	switch {
	case !topicPart.MatchString(c.name):
		return fmt.Errorf("name %q: use letters, digits, dots, dashes and underscores", c.name)
	case c.partitions < 1:
		return fmt.Errorf("partitions %d: need at least 1", c.partitions)
	case c.replicationFactor == 0 || c.replicationFactor < -1:
		return fmt.Errorf("replication factor %d: use -1 (broker default) or at least 1", c.replicationFactor)
	case c.instanceID == "":
		return fmt.Errorf("instance ID is empty")
	case c.roles == 0:
		return fmt.Errorf("no role: use RoleDispatch, RoleProcess, RoleProject or several")
	case c.transactionTimeout >= c.sessionTimeout:
		return fmt.Errorf("transaction timeout %v must be below the session timeout %v", c.transactionTimeout, c.sessionTimeout)
	case c.maxCached < 1 || c.maxCachedBytes < 1:
		return fmt.Errorf("cache bounds %d aggregates, %d bytes: both must be positive", c.maxCached, c.maxCachedBytes)
	case c.flushInterval <= 0:
		return fmt.Errorf("flush interval %v must be positive", c.flushInterval)
	case c.idempotencyWindow < 1:
		return fmt.Errorf("idempotency window %d: must be at least 1", c.idempotencyWindow)
	}
	return nil
}

// WithBrokers sets the Kafka seed brokers (host:port). Default: none, which
// runs an embedded in-process Kafka (franz-go kfake), for development and
// tests only.
func WithBrokers(brokers ...string) Option {
	return optionFunc(func(c *config) { c.brokers = brokers })
}

// WithName sets the application name, the prefix of its topics
// (<name>.<aggregate>.commands, <name>.<aggregate>.events, <name>.replies)
// and of its consumer group and transactional IDs. Default "interlock".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithPartitions sets the partition count of the topics Interlock creates
// (commands and events of each aggregate, replies). Existing topics keep
// theirs. Default 6. It bounds how many processors share the work.
func WithPartitions(n int32) Option {
	return optionFunc(func(c *config) { c.partitions = n })
}

// WithReplicationFactor sets the replication factor of the topics Interlock
// creates. Default -1: the broker's default.replication.factor.
func WithReplicationFactor(n int16) Option {
	return optionFunc(func(c *config) { c.replicationFactor = n })
}

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithCodec sets the codec of command and event payloads. Default
// schema.Avro() (Avro in the Confluent wire format); schema.JSON() is the
// alternative.
func WithCodec(codec schema.Codec) Option {
	return optionFunc(func(c *config) { c.codec = codec })
}

// WithInstanceID sets this instance's stable ID. It names the processor's
// transactional ID (so a restarted instance fences its zombie predecessor)
// and chooses the replies partition its dispatcher reads. Set it from the pod
// name in Kubernetes. Default: the hostname plus a random suffix, unique per
// process.
func WithInstanceID(id string) Option {
	return optionFunc(func(c *config) { c.instanceID = id })
}

// WithDataDir makes the embedded Kafka keep its data in dir, so state
// survives restarts. Ignored when brokers are set. Default: in memory.
func WithDataDir(dir string) Option {
	return optionFunc(func(c *config) { c.dataDir = dir })
}

// WithRoles sets the roles of this instance. Default
// RoleDispatch|RoleProcess|RoleProject.
func WithRoles(r Role) Option {
	return optionFunc(func(c *config) { c.roles = r })
}

// WithTransactionTimeout sets the Kafka transaction timeout
// (transaction.timeout.ms) of the processor: how long a crashed processor's
// open transaction blocks its partitions before the broker aborts it. It
// must be below the session timeout. Default 10s.
func WithTransactionTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.transactionTimeout = d })
}

// WithSessionTimeout sets the processors' group session timeout
// (session.timeout.ms). Default 45s.
func WithSessionTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.sessionTimeout = d })
}

// WithClientOptions adds franz-go options to every Kafka client Interlock
// creates: TLS (kgo.DialTLSConfig), SASL (kgo.SASL), client ID, and so on.
// Default: none beyond Interlock's own settings.
func WithClientOptions(opts ...kgo.Opt) Option {
	return optionFunc(func(c *config) { c.clientOpts = append(c.clientOpts, opts...) })
}

// WithSnapshotStore sets where processors keep snapshots and watermarks:
// snapshot.NewRedis for production. Default: an in-process
// snapshot.NewMemory(), which speeds up partitions moving between
// processors of one process only; a restarted process replays the log.
func WithSnapshotStore(s snapshot.Store) Option {
	return optionFunc(func(c *config) { c.store = s })
}

// WithCache bounds the aggregates a processor holds in memory, by count and
// by the size of their encoded snapshots. Only aggregates safe in the
// snapshot store are evicted, so while the store is down (or for aggregate
// types that never snapshot) memory can exceed the bounds. Default 100 000
// aggregates and 1 GiB.
func WithCache(maxAggregates int, maxBytes int64) Option {
	return optionFunc(func(c *config) { c.maxCached, c.maxCachedBytes = maxAggregates, maxBytes })
}

// WithFlushInterval sets the longest a changed aggregate waits for its
// snapshot, whatever its strategy. It bounds how far a partition's
// watermark lags, and so how many events a new owner replays. Default 5s.
func WithFlushInterval(d time.Duration) Option {
	return optionFunc(func(c *config) { c.flushInterval = d })
}

// WithIdempotencyWindow sets how many of each aggregate's last commands
// (those that emitted events) are remembered by command ID, so that a retry
// with the same ID gets the first outcome instead of being applied again.
// The record lives with the aggregate: in memory, in its snapshot, and in
// the log (each event names its command, the last one carries the result),
// so it survives restarts and the loss of the snapshot store. A retry after
// more than n other commands changed the aggregate is applied again.
// Default 20.
func WithIdempotencyWindow(n int) Option {
	return optionFunc(func(c *config) { c.idempotencyWindow = n })
}

// WithObserver adds an observer of the processor and the projections: a
// value implementing one or more of consumer.BatchObserver (every
// transaction: commands by outcome, committed or not, duration),
// consumer.RestoreObserver (every partition restore: events replayed,
// duration), consumer.BadRecordObserver (every record the processor cannot
// use, with a fixed reason) and projections.ParkObserver (every poison
// event a projection parks in its dead-letter topic). Its methods run on
// the processor's and the projectors' goroutines: keep them quick and safe
// for concurrent use. Package metrics provides one for Prometheus.
// Default: none.
func WithObserver(o any) Option {
	return optionFunc(func(c *config) { c.observers = append(c.observers, o) })
}

// WithSchemaRegistry keeps the schemas of commands and events in reg, a
// Confluent-compatible registry (schema/httpregistry) or any
// schema.Registry. At start every command and event type's schema is
// checked against what is registered under its subject (<topic>-<record
// name>) at the compatibility level (WithCompatibility) and registered; an
// incompatible change refuses to start. Records carry the registry's
// schema IDs, and old events are read through their writer's schema.
// Default: the built-in registry, the compacted topic <name>._schemas on
// the application's own Kafka.
func WithSchemaRegistry(reg schema.Registry) Option {
	return optionFunc(func(c *config) {
		c.builtin = false
		c.openRegistry = func(context.Context, []kgo.Opt) (schema.Registry, error) { return reg, nil }
	})
}

// WithoutSchemaRegistry keeps no registry: schema IDs are the schemas'
// fingerprints, and nothing checks a change of a type against the events
// already written. For tests and throwaway data. Default: off (the
// built-in registry, see WithSchemaRegistry).
func WithoutSchemaRegistry() Option {
	return optionFunc(func(c *config) { c.builtin, c.openRegistry = false, nil })
}

// WithCompatibility sets the rule new schemas must follow against the
// registered ones. Default schema.BackwardTransitive: new code reads every
// old event (plain schema.Backward checks only the latest version, so a
// chain of changes can strand the oldest events).
func WithCompatibility(level schema.Compatibility) Option {
	return optionFunc(func(c *config) { c.compat = level })
}

// WithUpcasters adds upcasters (schema.Upcast): typed functions from an
// event's old type to its new one, for changes schema resolution cannot
// express (a renamed event type, a split field). They are applied wherever
// events are read: restores, projections, ReadEvents and LoadAggregate.
// Default: none.
func WithUpcasters(ups ...schema.Upcaster) Option {
	return optionFunc(func(c *config) { c.upcasters = append(c.upcasters, ups...) })
}

// builtinRegistry opens the registry in the compacted topic
// <name>._schemas.
func builtinRegistry(name string, replication int16) func(context.Context, []kgo.Opt) (schema.Registry, error) {
	return func(ctx context.Context, clientOpts []kgo.Opt) (schema.Registry, error) {
		return kafkaregistry.New(ctx, kafkaregistry.Topic(name+"._schemas"), kafkaregistry.ClientOpts(clientOpts...),
			kafkaregistry.ReplicationFactor(replication))
	}
}
