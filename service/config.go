package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.yaml.in/yaml/v3"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/httpregistry"
)

// Config is the configuration every subcommand shares, resolved from
// flags, environment variables and the YAML file (see the package doc for
// the table). The build function reads it to build the application:
// Options gives the interlock options it implies.
type Config struct {
	// Brokers are the Kafka seed brokers; none means an embedded Kafka
	// (serve only).
	Brokers []string
	// Name is the application name, the prefix of its topics.
	Name string
	// InstanceID is the stable instance ID; empty: Interlock's default.
	InstanceID string
	// Roles are the roles serve plays.
	Roles interlock.Role
	// Partitions and ReplicationFactor are those of the topics created.
	Partitions        int32
	ReplicationFactor int16
	// HTTPAddr is where serve answers HTTP; empty: no HTTP.
	HTTPAddr string
	// DrainTimeout bounds serve's drain after its ctx ends.
	DrainTimeout time.Duration
	// RedisURL locates the Redis snapshot store; empty: in-process
	// snapshots. RedisPassword, a secret, overrides the URL's.
	RedisURL      string
	RedisPassword string
	// RedisKeyPrefix starts the snapshot store's keys.
	RedisKeyPrefix string
	// RedisTLSCAFile holds the PEM CA certificates to trust for Redis;
	// set, it turns TLS on.
	RedisTLSCAFile string
	// PostgresDSN, a secret, is the connection string of the read models'
	// PostgreSQL; empty when not configured.
	PostgresDSN string
	// Gateway is serve's HTTP JSON gateway (package gateway), on when it
	// has a token.
	Gateway GatewayConfig
	// TLS and SASL secure the Kafka connections.
	TLS  TLSConfig
	SASL SASLConfig
	// SchemaRegistry is the external schema registry; none configured:
	// the built-in one.
	SchemaRegistry SchemaRegistryConfig
	// Compatibility is the rule new schemas must follow against the
	// registered ones (interlock.WithCompatibility).
	Compatibility schema.Compatibility
	// Logger is the service's structured logger (JSON on stderr), which
	// never prints the secrets above.
	Logger *slog.Logger

	opts     []interlock.Option
	kafka    []kgo.Opt // TLS and SASL
	cleanups []func()
	secrets  *secretList
}

// GatewayConfig configures serve's HTTP JSON gateway.
type GatewayConfig struct {
	// Token, a secret, is the bearer token every request must carry; empty:
	// no gateway.
	Token string
	// MaxBody bounds a request's body, in bytes.
	MaxBody int64
	// Timeout bounds the wait for a command's outcome or a query's answer.
	Timeout time.Duration
}

// TLSConfig is how Kafka connections use TLS.
type TLSConfig struct {
	// Enabled turns TLS on; the files below imply it.
	Enabled bool
	// CAFile holds PEM CA certificates to trust (default: the system's).
	CAFile string
	// CertFile and KeyFile hold a PEM client certificate and its key, for
	// mutual TLS.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string
	// InsecureSkipVerify skips the brokers' certificate checks: for tests
	// only.
	InsecureSkipVerify bool
}

// SASLConfig is how Kafka connections authenticate.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, or
	// empty for none.
	Mechanism string
	// Username is the SASL user (not used by OAUTHBEARER).
	Username string
	// Password is the SASL password, or OAUTHBEARER's token: a secret.
	Password string
	// PasswordFile, when set, is read again at each authentication, so a
	// rotated password or a refreshed token is picked up without a
	// restart.
	PasswordFile string
}

// SchemaRegistryConfig is a Confluent-compatible schema registry
// (package schema/httpregistry) that keeps the application's schemas
// instead of the built-in registry.
type SchemaRegistryConfig struct {
	// URLs are the registry's URLs, tried in order; none: the built-in
	// registry.
	URLs []string
	// Username and Password, a secret, authenticate with HTTP basic auth
	// (e.g. an API key and secret).
	Username, Password string
	// Token, a secret, authenticates with "Authorization: Bearer".
	Token string
	// PasswordFile and TokenFile, when set, are read again before each
	// request to the registry, so a rotated secret or a refreshed
	// short-lived token is picked up without a restart.
	PasswordFile, TokenFile string
	// CAFile holds PEM CA certificates to trust for https URLs.
	CAFile string
}

// Options returns the interlock options the configuration implies:
// brokers, name, instance ID, roles, partitions, replication factor,
// logger, Kafka TLS and SASL, the schema registry and compatibility
// level, and what the command adds (the Redis
// snapshot store, serve's metrics observer). Pass them to
// interlock.NewBuilder.
func (c *Config) Options() []interlock.Option {
	return append([]interlock.Option(nil), c.opts...)
}

// Cleanup registers f to run when the command ends (after the application
// is closed), for what the build function opened: a database pool, a
// client. Cleanups run in reverse order.
func (c *Config) Cleanup(f func()) { c.cleanups = append(c.cleanups, f) }

func (c *Config) close() {
	for i := len(c.cleanups) - 1; i >= 0; i-- {
		c.cleanups[i]()
	}
	c.cleanups = nil
}

// setting is one row of the configuration table: a flag, its environment
// variable and its YAML key. A secret has no flag of its own (a flag's
// value shows in ps, shell history and --help): it comes from its
// variable, or from a file named by <variable>_FILE, --<flag> or
// <yaml key>, which is what the flag and the key are.
type setting struct {
	flag, env, yaml, def, help string
	// arg names the flag's value in --help.
	arg            string
	secret, isBool bool
	// serve marks a setting only serve uses: the other commands have no
	// flag for it (and ignore its variable and key).
	serve bool
}

// settings is the configuration table. The package doc and the
// configuration reference (docs/reference/configuration.md)
// show it as Table prints it; a test keeps them equal.
var settings = []setting{
	{flag: "config", env: "INTERLOCK_CONFIG", arg: "file", help: "YAML file of settings, a flat map of their YAML keys; flags and environment variables win over it"},
	{flag: "brokers", env: "INTERLOCK_BROKERS", yaml: "brokers", arg: "host:port,...", help: "comma-separated Kafka seed brokers (serve: none runs an embedded Kafka)"},
	{flag: "name", env: "INTERLOCK_NAME", yaml: "name", def: "interlock", arg: "name", help: "application name: the prefix of its topics, groups and transactional IDs"},
	{flag: "partitions", env: "INTERLOCK_PARTITIONS", yaml: "partitions", def: "6", arg: "n", help: "partitions of the topics Interlock creates"},
	{flag: "replication-factor", env: "INTERLOCK_REPLICATION_FACTOR", yaml: "replicationFactor", def: "-1", arg: "n", help: "replication factor of the topics Interlock creates (-1: the broker's default)"},
	{flag: "log-level", env: "INTERLOCK_LOG_LEVEL", yaml: "logLevel", def: "info", arg: "level", help: "debug, info, warn or error"},
	{flag: "instance-id", env: "INTERLOCK_INSTANCE_ID", yaml: "instanceId", arg: "id", serve: true, help: "stable instance ID, e.g. the pod name (default: hostname and a random suffix)"},
	{flag: "roles", env: "INTERLOCK_ROLES", yaml: "roles", def: "dispatch,process,project", arg: "roles", serve: true, help: "roles of the instance: dispatch, process, project"},
	{flag: "http", env: "INTERLOCK_HTTP_ADDR", yaml: "http", def: ":8080", arg: "addr", serve: true, help: "address of /metrics, /healthz and /readyz (\"off\": none)"},
	{flag: "drain-timeout", env: "INTERLOCK_DRAIN_TIMEOUT", yaml: "drainTimeout", def: "30s", arg: "duration", serve: true, help: "longest serve drains after SIGTERM (transactions finished, groups left); keep the pod's grace period longer"},
	{flag: "redis", env: "INTERLOCK_REDIS_URL", yaml: "redis", arg: "url", serve: true, help: "Redis snapshot store, redis[s]://[user@]host:port/db (default: in-process snapshots)"},
	{flag: "redis-key-prefix", env: "INTERLOCK_REDIS_KEY_PREFIX", yaml: "redisKeyPrefix", arg: "prefix", serve: true, help: "prefix of the snapshot store's keys (default: the application name)"},
	{flag: "redis-password-file", env: "INTERLOCK_REDIS_PASSWORD", yaml: "redisPasswordFile", arg: "file", serve: true, secret: true, help: "Redis password"},
	{flag: "redis-tls-ca-file", env: "INTERLOCK_REDIS_TLS_CA_FILE", yaml: "redisTlsCaFile", arg: "file", serve: true, help: "PEM CA certificates to trust for Redis; implies TLS, also with redis:// (default for rediss://: the system's)"},
	{flag: "gateway-token-file", env: "INTERLOCK_GATEWAY_TOKEN", yaml: "gatewayTokenFile", arg: "file", serve: true, secret: true, help: "bearer token of the HTTP JSON gateway on --http (POST /v1/commands/{type}, /v1/queries/{type}); none: no gateway"},
	{flag: "gateway-max-body", env: "INTERLOCK_GATEWAY_MAX_BODY", yaml: "gatewayMaxBody", def: "1048576", arg: "bytes", serve: true, help: "largest request body the gateway accepts"},
	{flag: "gateway-timeout", env: "INTERLOCK_GATEWAY_TIMEOUT", yaml: "gatewayTimeout", def: "30s", arg: "duration", serve: true, help: "longest the gateway waits for a command's outcome or a query's answer"},
	{flag: "postgres-dsn-file", env: "INTERLOCK_POSTGRES_DSN", yaml: "postgresDsnFile", arg: "file", secret: true, help: "PostgreSQL connection string of the read models, postgres://user:password@host:port/db"},
	{flag: "tls", env: "INTERLOCK_TLS", yaml: "tls", def: "false", isBool: true, help: "connect to Kafka with TLS (implied by the other tls settings)"},
	{flag: "tls-ca-file", env: "INTERLOCK_TLS_CA_FILE", yaml: "tlsCaFile", arg: "file", help: "PEM CA certificates to trust (default: the system's)"},
	{flag: "tls-cert-file", env: "INTERLOCK_TLS_CERT_FILE", yaml: "tlsCertFile", arg: "file", help: "PEM client certificate, for mutual TLS"},
	{flag: "tls-key-file", env: "INTERLOCK_TLS_KEY_FILE", yaml: "tlsKeyFile", arg: "file", help: "PEM key of the client certificate"},
	{flag: "tls-server-name", env: "INTERLOCK_TLS_SERVER_NAME", yaml: "tlsServerName", arg: "name", help: "name to check in the brokers' certificates (default: the broker's host)"},
	{flag: "tls-insecure-skip-verify", env: "INTERLOCK_TLS_INSECURE_SKIP_VERIFY", yaml: "tlsInsecureSkipVerify", def: "false", isBool: true, help: "do not check the brokers' certificates (tests only)"},
	{flag: "sasl-mechanism", env: "INTERLOCK_SASL_MECHANISM", yaml: "saslMechanism", arg: "mechanism", help: "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (default: no SASL)"},
	{flag: "sasl-username", env: "INTERLOCK_SASL_USERNAME", yaml: "saslUsername", arg: "user", help: "SASL user"},
	{flag: "sasl-password-file", env: "INTERLOCK_SASL_PASSWORD", yaml: "saslPasswordFile", arg: "file", secret: true, help: "SASL password, or OAUTHBEARER's token; a file is read again at each authentication"},
	{flag: "schema-registry", env: "INTERLOCK_SCHEMA_REGISTRY_URL", yaml: "schemaRegistry", arg: "url,...", help: "comma-separated URLs of a Confluent-compatible schema registry, tried in order (default: the built-in registry, the topic <name>._schemas)"},
	{flag: "schema-registry-username", env: "INTERLOCK_SCHEMA_REGISTRY_USERNAME", yaml: "schemaRegistryUsername", arg: "user", help: "schema registry basic-auth user, e.g. an API key"},
	{flag: "schema-registry-password-file", env: "INTERLOCK_SCHEMA_REGISTRY_PASSWORD", yaml: "schemaRegistryPasswordFile", arg: "file", secret: true, help: "schema registry basic-auth password, e.g. an API secret; a file is read again at each request"},
	{flag: "schema-registry-token-file", env: "INTERLOCK_SCHEMA_REGISTRY_TOKEN", yaml: "schemaRegistryTokenFile", arg: "file", secret: true, help: "schema registry bearer token; a file is read again at each request"},
	{flag: "schema-registry-ca-file", env: "INTERLOCK_SCHEMA_REGISTRY_CA_FILE", yaml: "schemaRegistryCaFile", arg: "file", help: "PEM CA certificates to trust for an https schema registry (default: the system's)"},
	{flag: "schema-compatibility", env: "INTERLOCK_SCHEMA_COMPATIBILITY", yaml: "schemaCompatibility", def: "BACKWARD_TRANSITIVE", arg: "level", help: "compatibility new schemas must keep with the registered ones: BACKWARD_TRANSITIVE, BACKWARD, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE"},
}

// Table returns the configuration table in Markdown, as the package doc
// and docs/reference/configuration.md show it.
func Table() string {
	var b strings.Builder
	b.WriteString("| flag | environment | YAML key | default | what |\n| --- | --- | --- | --- | --- |\n")
	for _, s := range settings {
		flagCol, envCol, yamlCol, def := "`--"+s.flag+"`", "`"+s.env+"`", "—", s.def
		if s.yaml != "" {
			yamlCol = "`" + s.yaml + "`"
		}
		if s.secret {
			flagCol = "`--" + s.flag + "` (a file)"
			envCol = "`" + s.env + "`, `" + s.env + "_FILE`"
			yamlCol += " (a file)"
		}
		if def == "" {
			def = "none"
		} else {
			def = "`" + def + "`"
		}
		help := s.help
		if s.secret {
			help = "secret: " + help + "; only from the environment or a file"
		}
		if s.serve {
			help = "serve: " + help
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", flagCol, envCol, yamlCol, def, help)
	}
	return b.String()
}

// stringValue is a flag that remembers whether it was set.
type stringValue struct {
	v      string
	isBool bool
}

func (s *stringValue) String() string {
	if s == nil {
		return ""
	}
	return s.v
}
func (s *stringValue) Set(v string) error { s.v = v; return nil }
func (s *stringValue) IsBoolFlag() bool   { return s.isBool }

// addFlags registers the settings' flags on fs: all of them for serve,
// the others' for the other commands.
func addFlags(fs *flag.FlagSet, serve bool) map[string]*stringValue {
	vals := map[string]*stringValue{}
	for _, s := range settings {
		if s.serve && !serve {
			continue
		}
		v := &stringValue{v: s.def, isBool: s.isBool}
		help := s.help + " (env " + s.env + ")"
		if s.secret {
			// The flag names a file; the value itself is never a default.
			v.v = ""
			help = "file holding the " + s.help + " (or env " + s.env + ", " + s.env + "_FILE)"
		}
		fs.Var(v, s.flag, help)
		vals[s.flag] = v
	}
	return vals
}

// resolve computes the configuration: a flag given on the command line
// wins, then the environment, then the YAML file, then the default.
func resolve(fs *flag.FlagSet, vals map[string]*stringValue, getenv func(string) string, stderr io.Writer) (*Config, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	get := map[string]string{}
	file := getenv("INTERLOCK_CONFIG")
	if set["config"] {
		file = vals["config"].v
	}
	var fromFile map[string]string
	if file != "" {
		var err error
		if fromFile, err = readYAML(file); err != nil {
			return nil, err
		}
	}
	var secrets []string
	for _, s := range settings {
		if s.flag == "config" {
			continue
		}
		if s.serve && fs.Lookup(s.flag) == nil {
			// Not this command's: its variable and key are ignored (a
			// file they name is not read).
			if !s.secret {
				get[s.flag] = s.def
			}
			continue
		}
		v := s.def
		if s.secret {
			v = ""
		}
		if y, ok := fromFile[s.yaml]; ok {
			v = y
		}
		if e := getenv(s.env); e != "" && !s.secret {
			v = e
		}
		if s.secret {
			// The value from its variable, else from the file that the
			// flag, <VAR>_FILE or the YAML key names, in that order.
			path := v
			if e := getenv(s.env + "_FILE"); e != "" {
				path = e
			}
			if set[s.flag] {
				path = vals[s.flag].v // set: the flag exists
			}
			v = ""
			switch e := getenv(s.env); {
			case set[s.flag] || (e == "" && path != ""):
				b, err := os.ReadFile(path)
				if err != nil {
					return nil, fmt.Errorf("the %s file: %w", s.help, pathErr(err))
				}
				v = strings.TrimRight(string(b), "\r\n")
				get[s.flag+"#path"] = path
			default:
				v = e
			}
			if v != "" {
				secrets = append(secrets, secretParts(v)...)
			}
			get[s.flag] = v
			continue
		}
		if set[s.flag] {
			v = vals[s.flag].v
		}
		get[s.flag] = v
	}
	return build(get, secrets, stderr)
}

// pathErr drops the operation from a file error: "open x: no such file".
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// readYAML reads a flat YAML map of settings. Unknown keys are errors (a
// typo would otherwise go unnoticed), and so are secrets' values: a YAML
// file names the files that hold them.
func readYAML(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	known := map[string]bool{}
	for _, s := range settings {
		if s.yaml != "" {
			known[s.yaml] = true
		}
	}
	out := map[string]string{}
	var errs []error
	for k, v := range raw {
		if !known[k] {
			errs = append(errs, fmt.Errorf("config file %s: unknown key %q", path, k))
			continue
		}
		switch v := v.(type) {
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			out[k] = strings.Join(parts, ",")
		case map[string]any:
			errs = append(errs, fmt.Errorf("config file %s: key %q: want a value, not a map", path, k))
		case nil:
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out, errors.Join(errs...)
}

// build turns the resolved settings into a Config.
func build(get map[string]string, secrets []string, stderr io.Writer) (*Config, error) {
	c := &Config{
		Name: get["name"], InstanceID: get["instance-id"],
		RedisURL: get["redis"], RedisPassword: get["redis-password-file"], RedisKeyPrefix: get["redis-key-prefix"],
		RedisTLSCAFile: get["redis-tls-ca-file"],
		PostgresDSN:    get["postgres-dsn-file"], secrets: newSecretList(append(secrets, urlPassword(get["redis"])...)),
		TLS: TLSConfig{
			CAFile: get["tls-ca-file"], CertFile: get["tls-cert-file"], KeyFile: get["tls-key-file"],
			ServerName: get["tls-server-name"],
		},
		SASL: SASLConfig{
			Mechanism: strings.ToUpper(get["sasl-mechanism"]), Username: get["sasl-username"],
			Password: get["sasl-password-file"], PasswordFile: get["sasl-password-file#path"],
		},
		SchemaRegistry: SchemaRegistryConfig{
			Username: get["schema-registry-username"], Password: get["schema-registry-password-file"],
			Token: get["schema-registry-token-file"], CAFile: get["schema-registry-ca-file"],
			PasswordFile: get["schema-registry-password-file#path"], TokenFile: get["schema-registry-token-file#path"],
		},
	}
	var errs []error
	bad := func(name, v, want string) {
		errs = append(errs, fmt.Errorf("--%s %q: %s", name, v, want))
	}
	for _, b := range strings.Split(get["brokers"], ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	for _, u := range strings.Split(get["schema-registry"], ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.SchemaRegistry.URLs = append(c.SchemaRegistry.URLs, u)
		}
	}
	if lvl, err := schema.ParseCompatibility(get["schema-compatibility"]); err != nil {
		bad("schema-compatibility", get["schema-compatibility"], "use BACKWARD_TRANSITIVE, BACKWARD, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE")
	} else {
		c.Compatibility = lvl
	}
	for _, r := range strings.Split(get["roles"], ",") {
		switch strings.TrimSpace(r) {
		case "dispatch":
			c.Roles |= interlock.RoleDispatch
		case "process":
			c.Roles |= interlock.RoleProcess
		case "project":
			c.Roles |= interlock.RoleProject
		case "":
		default:
			bad("roles", get["roles"], "use dispatch, process, project")
		}
	}
	if n, err := strconv.ParseInt(get["partitions"], 10, 32); err != nil || n < 1 {
		bad("partitions", get["partitions"], "want a positive number")
	} else {
		c.Partitions = int32(n)
	}
	if n, err := strconv.ParseInt(get["replication-factor"], 10, 16); err != nil || n == 0 || n < -1 {
		bad("replication-factor", get["replication-factor"], "want -1 or a positive number")
	} else {
		c.ReplicationFactor = int16(n)
	}
	if c.HTTPAddr = get["http"]; c.HTTPAddr == "off" {
		c.HTTPAddr = ""
	}
	if d, err := time.ParseDuration(get["drain-timeout"]); err != nil || d <= 0 {
		bad("drain-timeout", get["drain-timeout"], "want a positive duration (30s)")
	} else {
		c.DrainTimeout = d
	}
	c.Gateway.Token = get["gateway-token-file"]
	if n, err := strconv.ParseInt(get["gateway-max-body"], 10, 64); err != nil || n < 1 {
		bad("gateway-max-body", get["gateway-max-body"], "want a positive number of bytes")
	} else {
		c.Gateway.MaxBody = n
	}
	if d, err := time.ParseDuration(get["gateway-timeout"]); err != nil || d <= 0 {
		bad("gateway-timeout", get["gateway-timeout"], "want a positive duration (30s)")
	} else {
		c.Gateway.Timeout = d
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(get["log-level"])); err != nil {
		bad("log-level", get["log-level"], "use debug, info, warn or error")
	}
	for _, name := range []string{"tls", "tls-insecure-skip-verify"} {
		v, err := strconv.ParseBool(get[name])
		if err != nil {
			bad(name, get[name], "want true or false")
		}
		if name == "tls" {
			c.TLS.Enabled = v
		} else {
			c.TLS.InsecureSkipVerify = v
		}
	}
	c.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: c.redactAttr}))
	kafka, err := c.kafkaOptions()
	if err != nil {
		errs = append(errs, err)
	}
	c.kafka = kafka
	reg, err := c.SchemaRegistry.registry(c.secrets)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, c.redact(errors.Join(errs...))
	}
	c.opts = []interlock.Option{
		interlock.WithName(c.Name), interlock.WithLogger(c.Logger), interlock.WithRoles(c.Roles),
		interlock.WithPartitions(c.Partitions), interlock.WithReplicationFactor(c.ReplicationFactor),
		interlock.WithCompatibility(c.Compatibility),
	}
	if reg != nil {
		c.opts = append(c.opts, interlock.WithSchemaRegistry(reg))
	}
	if len(c.Brokers) > 0 {
		c.opts = append(c.opts, interlock.WithBrokers(c.Brokers...))
	}
	if c.InstanceID != "" {
		c.opts = append(c.opts, interlock.WithInstanceID(c.InstanceID))
	}
	if len(kafka) > 0 {
		c.opts = append(c.opts, interlock.WithClientOptions(kafka...))
	}
	return c, nil
}

// kafkaOptions returns the franz-go options of the TLS and SASL settings.
func (c *Config) kafkaOptions() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	t := c.TLS
	if t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify {
		cfg, err := t.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if c.SASL.Mechanism != "" {
		m, err := c.SASL.mechanism(c.secrets)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// registry returns the schema registry client, or nil when no URL is set.
// It does not connect: the application's start does.
func (r SchemaRegistryConfig) registry(secrets *secretList) (*httpregistry.Registry, error) {
	if len(r.URLs) == 0 {
		if r.Username != "" || r.Password != "" || r.Token != "" || r.CAFile != "" {
			return nil, errors.New("the schema registry's user, password, token or CA file is set without --schema-registry")
		}
		return nil, nil
	}
	opts := []httpregistry.Opt{httpregistry.URLs(r.URLs...)}
	switch {
	case (r.Username == "") != (r.Password == ""):
		return nil, errors.New("--schema-registry-username and its password (INTERLOCK_SCHEMA_REGISTRY_PASSWORD, INTERLOCK_SCHEMA_REGISTRY_PASSWORD_FILE or --schema-registry-password-file) go together")
	case r.Username != "" && r.Token != "":
		return nil, errors.New("the schema registry has a user and a bearer token: choose one")
	case r.Username != "":
		opts = append(opts, httpregistry.BasicAuthFunc(r.Username, secrets.from(r.Password, r.PasswordFile, "schema registry password")))
	case r.Token != "":
		opts = append(opts, httpregistry.BearerTokenFunc(secrets.from(r.Token, r.TokenFile, "schema registry token")))
	}
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--schema-registry-ca-file: %w", pathErr(err))
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--schema-registry-ca-file %s: no PEM certificate in it", r.CAFile)
		}
		opts = append(opts, httpregistry.TLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}))
	}
	reg, err := httpregistry.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("--schema-registry: %w", err)
	}
	return reg, nil
}

// config builds the crypto/tls configuration.
func (t TLSConfig) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the operator's explicit choice, for tests
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca-file: %w", pathErr(err))
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca-file %s: no PEM certificate in it", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-file, --tls-key-file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// secretList holds the secrets to hide in what is printed. It grows when a
// secret file is read again and holds a new value (rotated): the old
// values stay hidden too, the configured ones always, the values read
// since the last maxRotated of them (a token refreshed every hour would
// otherwise make every log line pay for every token ever used).
type secretList struct {
	mu      sync.RWMutex
	vals    []string
	initial int // vals[:initial] are the configured secrets
}

const maxRotated = 32

func newSecretList(vals []string) *secretList { return &secretList{vals: vals, initial: len(vals)} }

// add hides what secretParts says of s from now on.
func (l *secretList) add(s string) {
	parts := secretParts(s)
	l.mu.RLock()
	known := true
	for _, p := range parts {
		known = known && slices.Contains(l.vals, p)
	}
	l.mu.RUnlock()
	if known {
		return // the usual case: read again, not rotated
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range parts {
		if !slices.Contains(l.vals, p) {
			l.vals = append(l.vals, p)
		}
	}
	if n := len(l.vals) - l.initial - maxRotated; n > 0 {
		l.vals = slices.Delete(l.vals, l.initial, l.initial+n)
	}
}

// replace returns s with every secret replaced.
func (l *secretList) replace(s string) string {
	if l == nil {
		return s
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, sec := range l.vals {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	return s
}

// from returns a function that returns the secret: read again from file
// at each call when it came from one (what is named in the error), and
// hidden in what is printed from then on; else value.
func (l *secretList) from(value, file, what string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		if file == "" {
			return value, nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s file: %w", what, pathErr(err))
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v != "" && l != nil {
			l.add(v)
		}
		return v, nil
	}
}

// mechanism builds the SASL mechanism. The password is read from its file
// at each authentication when it came from one.
func (s SASLConfig) mechanism(secrets *secretList) (sasl.Mechanism, error) {
	password := secrets.from(s.Password, s.PasswordFile, "SASL password")
	if s.Mechanism != "OAUTHBEARER" && s.Username == "" {
		return nil, fmt.Errorf("--sasl-mechanism %s needs --sasl-username", s.Mechanism)
	}
	if s.Password == "" {
		return nil, fmt.Errorf("--sasl-mechanism %s needs a password: INTERLOCK_SASL_PASSWORD, INTERLOCK_SASL_PASSWORD_FILE or --sasl-password-file", s.Mechanism)
	}
	switch s.Mechanism {
	case "PLAIN":
		return plain.Plain(func(ctx context.Context) (plain.Auth, error) {
			p, err := password(ctx)
			return plain.Auth{User: s.Username, Pass: p}, err
		}), nil
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		auth := func(ctx context.Context) (scram.Auth, error) {
			p, err := password(ctx)
			return scram.Auth{User: s.Username, Pass: p}, err
		}
		if s.Mechanism == "SCRAM-SHA-256" {
			return scram.Sha256(auth), nil
		}
		return scram.Sha512(auth), nil
	case "OAUTHBEARER":
		return oauth.Oauth(func(ctx context.Context) (oauth.Auth, error) {
			p, err := password(ctx)
			return oauth.Auth{Token: p}, err
		}), nil
	}
	return nil, fmt.Errorf("--sasl-mechanism %q: use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", s.Mechanism)
}

// redacted replaces secrets in what is printed.
const redacted = "[redacted]"

// redactString replaces every secret in s.
func (c *Config) redactString(s string) string { return c.secrets.replace(s) }

// secretParts returns what to hide of secret s: the password of a URL
// (postgres://user:password@host/db) or of a key=value DSN, so logs still
// say which server; s itself when it holds no such password.
func secretParts(s string) []string {
	out := urlPassword(s)
	if i := strings.Index(s, "password="); i >= 0 {
		p := s[i+len("password="):]
		if j := strings.IndexAny(p, " &"); j >= 0 {
			p = p[:j]
		}
		if p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = append(out, s)
	}
	return out
}

// urlPassword returns the password of a URL setting that is not a secret
// as a whole (redis://user:password@host), as written and unescaped; none
// when it has none.
func urlPassword(s string) []string {
	i := strings.Index(s, "://")
	if i < 0 {
		return nil
	}
	rest := s[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return nil
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok || pw == "" {
		return nil
	}
	out := []string{pw}
	if u, err := url.PathUnescape(pw); err == nil && u != pw {
		out = append(out, u)
	}
	return out
}

// redact returns err with its secrets replaced.
func (c *Config) redact(err error) error {
	if err == nil || c == nil {
		return err
	}
	msg := err.Error()
	if r := c.redactString(msg); r != msg {
		return &redactedError{msg: r, err: err}
	}
	return err
}

// redactedError is an error whose message had secrets: it prints without
// them and still matches what it wraps (errors.Is).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactAttr is the logger's ReplaceAttr: string and error values lose
// their secrets.
func (c *Config) redactAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(c.redactString(a.Value.String()))
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			a.Value = slog.StringValue(c.redactString(v.Error()))
		case fmt.Stringer:
			a.Value = slog.StringValue(c.redactString(v.String()))
		}
	}
	return a
}

// String describes the configuration without its secrets (they print as
// [redacted], or "" when unset), so printing a Config with %v or %+v
// shows no password.
func (c Config) String() string {
	hide := func(s string) string {
		if s == "" {
			return `""`
		}
		return redacted
	}
	return fmt.Sprintf("{Brokers:%v Name:%s InstanceID:%s Roles:%d Partitions:%d ReplicationFactor:%d HTTPAddr:%s DrainTimeout:%v RedisURL:%s RedisPassword:%s RedisKeyPrefix:%s RedisTLSCAFile:%s PostgresDSN:%s Gateway:{Token:%s MaxBody:%d Timeout:%v} TLS:%+v SASL:{Mechanism:%s Username:%s Password:%s PasswordFile:%s} SchemaRegistry:{URLs:%v Username:%s Password:%s Token:%s CAFile:%s} Compatibility:%v}",
		c.Brokers, c.Name, c.InstanceID, c.Roles, c.Partitions, c.ReplicationFactor, c.HTTPAddr, c.DrainTimeout, c.redactString(c.RedisURL), hide(c.RedisPassword),
		c.RedisKeyPrefix, c.RedisTLSCAFile, hide(c.PostgresDSN), hide(c.Gateway.Token), c.Gateway.MaxBody, c.Gateway.Timeout, c.TLS,
		c.SASL.Mechanism, c.SASL.Username, hide(c.SASL.Password), c.SASL.PasswordFile,
		c.SchemaRegistry.URLs, c.SchemaRegistry.Username, hide(c.SchemaRegistry.Password), hide(c.SchemaRegistry.Token), c.SchemaRegistry.CAFile,
		c.Compatibility)
}

// LogValue logs the configuration as String prints it: without secrets.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }
