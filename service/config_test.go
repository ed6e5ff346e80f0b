package service

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/testcert"
)

// env is a fake environment for resolve.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// parse resolves the settings of a serve command line in environment e.
func parse(t *testing.T, e env, args ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	vals := addFlags(fs, true)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return resolve(fs, vals, e.get, io.Discard)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTableDocumented: the configuration table in the package doc and in
// the configuration reference is the one the flags are built from, and
// every row is a real flag of every standard command, with the default the
// table says.
func TestTableDocumented(t *testing.T) {
	table := Table()
	ref, err := os.ReadFile("../docs/reference/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ref), table) {
		t.Errorf("docs/reference/configuration.md does not contain the configuration table: run go test ./docs -update")
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var inDoc strings.Builder
	for _, line := range strings.Split(string(doc), "\n") {
		if l, ok := strings.CutPrefix(line, "//\t|"); ok {
			inDoc.WriteString("|" + l + "\n")
		}
	}
	if inDoc.String() != table {
		t.Errorf("doc.go's table differs from Table():\n%s\nwant:\n%s", inDoc.String(), table)
	}
	rows := strings.Split(strings.TrimSpace(table), "\n")[2:]
	if len(rows) != len(settings) {
		t.Fatalf("%d rows for %d settings", len(rows), len(settings))
	}
	for _, c := range commands {
		fs := flag.NewFlagSet(c.path, flag.ContinueOnError)
		addFlags(fs, c.path == "serve")
		for i, row := range rows {
			cols := strings.Split(row, " | ")
			name := strings.Trim(strings.Fields(cols[0])[1], "`-")
			f := fs.Lookup(name)
			if settings[i].serve && c.path != "serve" {
				if f != nil || !strings.HasPrefix(cols[4], "serve: ") {
					t.Errorf("%s: --%s is serve's, the table should say so and the command have no such flag", c.path, name)
				}
				continue
			}
			if f == nil {
				t.Errorf("%s: the table's flag --%s does not exist", c.path, name)
				continue
			}
			def := strings.Trim(cols[3], "`")
			if def == "none" {
				def = ""
			}
			if f.DefValue != def {
				t.Errorf("%s: --%s defaults to %q, the table says %q", c.path, name, f.DefValue, def)
			}
			if !strings.Contains(cols[1], settings[i].env) || !strings.Contains(f.Usage, settings[i].env) {
				t.Errorf("%s: --%s: the table or the flag's help does not name %s", c.path, name, settings[i].env)
			}
		}
	}
}

// TestPrecedence: a flag wins over the environment, which wins over the
// YAML file, which wins over the default.
func TestPrecedence(t *testing.T) {
	yamlFile := writeFile(t, "c.yaml", "name: from-file\nbrokers: [file-1:9092, file-2:9092]\npartitions: 3\nhttp: off\nroles: dispatch\n")
	cases := []struct {
		name string
		env  env
		args []string
		want func(*Config) string
		is   string
	}{
		{"default", env{}, nil, func(c *Config) string { return c.Name }, "interlock"},
		{"file", env{}, []string{"--config", yamlFile}, func(c *Config) string { return c.Name }, "from-file"},
		{"file from env", env{"INTERLOCK_CONFIG": yamlFile}, nil, func(c *Config) string { return c.Name }, "from-file"},
		{"env over file", env{"INTERLOCK_NAME": "from-env"}, []string{"--config", yamlFile}, func(c *Config) string { return c.Name }, "from-env"},
		{"flag over env", env{"INTERLOCK_NAME": "from-env"}, []string{"--config", yamlFile, "--name", "from-flag"}, func(c *Config) string { return c.Name }, "from-flag"},
		{"flag equal to the default still wins", env{"INTERLOCK_NAME": "from-env"}, []string{"--name", "interlock"}, func(c *Config) string { return c.Name }, "interlock"},
		{"list in YAML", env{}, []string{"--config", yamlFile}, func(c *Config) string { return strings.Join(c.Brokers, ";") }, "file-1:9092;file-2:9092"},
		{"brokers from env", env{"INTERLOCK_BROKERS": "a:1, b:2"}, []string{"--config", yamlFile}, func(c *Config) string { return strings.Join(c.Brokers, ";") }, "a:1;b:2"},
		{"number in YAML", env{}, []string{"--config", yamlFile}, func(c *Config) string { return fmt.Sprint(c.Partitions) }, "3"},
		{"off in YAML", env{}, []string{"--config", yamlFile}, func(c *Config) string { return c.HTTPAddr }, ""},
		{"http default", env{}, nil, func(c *Config) string { return c.HTTPAddr }, ":8080"},
		{"http from env", env{"INTERLOCK_HTTP_ADDR": "127.0.0.1:9100"}, nil, func(c *Config) string { return c.HTTPAddr }, "127.0.0.1:9100"},
		{"http flag", env{"INTERLOCK_HTTP_ADDR": "127.0.0.1:9100"}, []string{"--http", ":9200"}, func(c *Config) string { return c.HTTPAddr }, ":9200"},
		{"http off", env{}, []string{"--http", "off"}, func(c *Config) string { return c.HTTPAddr }, ""},
		{"drain default", env{}, nil, func(c *Config) string { return c.DrainTimeout.String() }, "30s"},
		{"drain from env", env{"INTERLOCK_DRAIN_TIMEOUT": "50s"}, nil, func(c *Config) string { return c.DrainTimeout.String() }, "50s"},
		{"roles", env{}, []string{"--config", yamlFile}, func(c *Config) string { return fmt.Sprint(c.Roles) }, fmt.Sprint(interlock.RoleDispatch)},
		{"all roles by default", env{}, nil, func(c *Config) string { return fmt.Sprint(c.Roles) }, fmt.Sprint(interlock.RoleDispatch | interlock.RoleProcess | interlock.RoleProject)},
		{"bool flag", env{}, []string{"--tls"}, func(c *Config) string { return fmt.Sprint(c.TLS.Enabled) }, "true"},
		{"bool env", env{"INTERLOCK_TLS": "true"}, nil, func(c *Config) string { return fmt.Sprint(c.TLS.Enabled) }, "true"},
		{"bool flag over env", env{"INTERLOCK_TLS": "true"}, []string{"--tls=false"}, func(c *Config) string { return fmt.Sprint(c.TLS.Enabled) }, "false"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parse(t, c.env, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.want(cfg); got != c.is {
				t.Errorf("got %q, want %q", got, c.is)
			}
		})
	}
}

// TestServeSettingsIgnoredElsewhere: a command other than serve ignores
// serve's settings in the environment: roles keep their default, a
// password file is not read.
func TestServeSettingsIgnoredElsewhere(t *testing.T) {
	fs := flag.NewFlagSet("topics create", flag.ContinueOnError)
	vals := addFlags(fs, false)
	e := env{"INTERLOCK_ROLES": "cook", "INTERLOCK_REDIS_PASSWORD_FILE": "/nonexistent/pw", "INTERLOCK_HTTP_ADDR": "x"}
	cfg, err := resolve(fs, vals, e.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Roles != interlock.RoleDispatch|interlock.RoleProcess|interlock.RoleProject || cfg.RedisPassword != "" || cfg.HTTPAddr != ":8080" {
		t.Errorf("roles %v, Redis password %q, HTTP %q", cfg.Roles, cfg.RedisPassword, cfg.HTTPAddr)
	}
	if fs.Lookup("roles") != nil || fs.Lookup("redis") != nil {
		t.Error("topics create has serve's flags")
	}
}

// TestBadSettings: each bad value is an error naming the flag.
func TestBadSettings(t *testing.T) {
	cases := []struct {
		env  env
		args []string
		want string
	}{
		{env{}, []string{"--roles", "dispatch,cook"}, "--roles"},
		{env{"INTERLOCK_PARTITIONS": "zero"}, nil, "--partitions"},
		{env{}, []string{"--replication-factor", "0"}, "--replication-factor"},
		{env{}, []string{"--log-level", "loud"}, "--log-level"},
		{env{"INTERLOCK_DRAIN_TIMEOUT": "soon"}, nil, "--drain-timeout"},
		{env{}, []string{"--gateway-timeout", "0s"}, "--gateway-timeout"},
		{env{}, []string{"--gateway-max-body", "-1"}, "--gateway-max-body"},
		{env{"INTERLOCK_TLS": "maybe"}, nil, "--tls"},
		{env{}, []string{"--sasl-mechanism", "GSSAPI", "--sasl-username", "u"}, "--sasl-mechanism"},
		{env{"INTERLOCK_SASL_PASSWORD": "p"}, []string{"--sasl-mechanism", "PLAIN"}, "needs --sasl-username"},
		{env{}, []string{"--sasl-mechanism", "PLAIN", "--sasl-username", "u"}, "needs a password"},
		{env{}, []string{"--tls-cert-file", "c.pem"}, "go together"},
		{env{}, []string{"--tls-ca-file", "/nonexistent/ca.pem"}, "--tls-ca-file"},
		{env{}, []string{"--config", "/nonexistent/c.yaml"}, "config file"},
		{env{}, []string{"--redis-password-file", "/nonexistent/pw"}, "/nonexistent/pw"},
		{env{}, []string{"--schema-compatibility", "sideways"}, "--schema-compatibility"},
		{env{}, []string{"--schema-registry-username", "u"}, "without --schema-registry"},
		{env{"INTERLOCK_SCHEMA_REGISTRY_TOKEN": "s3cr3t-token"}, nil, "without --schema-registry"},
		{env{}, []string{"--schema-registry", "http://r:8081", "--schema-registry-username", "u"}, "go together"},
		{env{"INTERLOCK_SCHEMA_REGISTRY_PASSWORD": "s3cr3t-password", "INTERLOCK_SCHEMA_REGISTRY_TOKEN": "s3cr3t-token"},
			[]string{"--schema-registry", "http://r:8081", "--schema-registry-username", "u"}, "choose one"},
		{env{}, []string{"--schema-registry", "ftp://r"}, "--schema-registry"},
		{env{}, []string{"--schema-registry", "http://u:hunter2@r:8081"}, "use BasicAuth"},
		{env{}, []string{"--schema-registry", "https://r", "--schema-registry-ca-file", "/nonexistent/ca.pem"}, "--schema-registry-ca-file"},
	}
	for _, c := range cases {
		_, err := parse(t, c.env, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("env %v, args %q: %v, want an error about %s", c.env, c.args, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("args %q: the error shows the password: %v", c.args, err)
		}
	}
}

// TestYAMLRefusesUnknownKeysAndSecrets: a typo is an error, and so is a
// secret written in the file instead of a file holding it.
func TestYAMLRefusesUnknownKeysAndSecrets(t *testing.T) {
	for _, content := range []string{"nmae: x\n", "saslPassword: hunter2\n", "redisPassword: hunter2\n", "tls: {a: b}\n"} {
		_, err := parse(t, env{}, "--config", writeFile(t, "c.yaml", content))
		if err == nil {
			t.Errorf("%q: no error", content)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the error shows the value: %v", content, err)
		}
	}
}

// TestSecretSources: a secret comes from its variable, else from the file
// the flag, <VAR>_FILE or the YAML key names (the flag first).
func TestSecretSources(t *testing.T) {
	fromFlag := writeFile(t, "a", "from-flag-file\n")
	fromEnvFile := writeFile(t, "b", "from-env-file")
	fromYAML := writeFile(t, "c", "from-yaml-file\n")
	yamlFile := writeFile(t, "c.yaml", "saslPasswordFile: "+fromYAML+"\n")
	cases := []struct {
		env  env
		args []string
		want string
	}{
		{env{"INTERLOCK_SASL_PASSWORD": "from-env"}, nil, "from-env"},
		{env{"INTERLOCK_SASL_PASSWORD_FILE": fromEnvFile}, nil, "from-env-file"},
		{env{"INTERLOCK_SASL_PASSWORD": "from-env", "INTERLOCK_SASL_PASSWORD_FILE": fromEnvFile}, nil, "from-env"},
		{env{}, []string{"--config", yamlFile}, "from-yaml-file"},
		{env{"INTERLOCK_SASL_PASSWORD_FILE": fromEnvFile}, []string{"--config", yamlFile}, "from-env-file"},
		{env{"INTERLOCK_SASL_PASSWORD": "from-env"}, []string{"--sasl-password-file", fromFlag}, "from-flag-file"},
	}
	for _, c := range cases {
		cfg, err := parse(t, c.env, c.args...)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.SASL.Password != c.want {
			t.Errorf("env %v, args %q: password %q, want %q", c.env, c.args, cfg.SASL.Password, c.want)
		}
	}
	cfg, err := parse(t, env{"INTERLOCK_POSTGRES_DSN": "postgres://u:pw@h/db", "INTERLOCK_REDIS_PASSWORD": "rpw"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PostgresDSN != "postgres://u:pw@h/db" || cfg.RedisPassword != "rpw" {
		t.Errorf("DSN %q, Redis password %q", cfg.PostgresDSN, cfg.RedisPassword)
	}
}

// TestRegistrySecretsRotate: the schema registry's token or password,
// when it came from a file, is read again before each request, so a
// rotated secret (a short-lived token its issuer refreshes in a mounted
// file) is used without a restart; one from a variable stays as given.
func TestRegistrySecretsRotate(t *testing.T) {
	ctx := context.Background()
	const text = `{"type":"record","name":"a.B","fields":[{"name":"x","type":"long"}]}`
	for _, c := range []struct {
		name, secret, auth, variable string
		env                          env
	}{
		{"token", "new-t0ken", "Bearer new-t0ken", "INTERLOCK_SCHEMA_REGISTRY_TOKEN", env{}},
		{"password", "new-passw0rd", "Basic " + base64.StdEncoding.EncodeToString([]byte("key:new-passw0rd")),
			"INTERLOCK_SCHEMA_REGISTRY_PASSWORD", env{"INTERLOCK_SCHEMA_REGISTRY_USERNAME": "key"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake := srfake.New(srfake.WithAuth(c.auth))
			t.Cleanup(fake.Close)
			file := writeFile(t, "secret", "old-secret\n")
			e := maps.Clone(c.env)
			e["INTERLOCK_SCHEMA_REGISTRY_URL"], e[c.variable+"_FILE"] = fake.URL(), file
			cfg, err := parse(t, e)
			if err != nil {
				t.Fatal(err)
			}
			reg, err := cfg.SchemaRegistry.registry(cfg.secrets)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := reg.Register(ctx, "s", text); err == nil || !strings.Contains(err.Error(), "not authorized") {
				t.Fatalf("with the first secret: %v, want refused", err)
			}
			if err := os.WriteFile(file, []byte(c.secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := reg.Register(ctx, "s", text); err != nil {
				t.Fatalf("after the file was rotated: %v", err)
			}
			checkHidden(t, cfg, "old-secret", c.secret)
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			if _, err := reg.Versions(ctx, "s"); err == nil || !strings.Contains(err.Error(), c.name+" file: "+file+": no such file") {
				t.Fatalf("after the file was removed: %v, want an error naming it", err)
			}
		})
	}
}

// The secrets of TestSecretsNeverPrinted: distinctive, so any leak shows.
const (
	saslSecret     = "sasl-Sekr1t-7731"
	redisSecret    = "redis-Sekr1t-9182"
	pgPassword     = "pg-Sekr1t-4410"
	pgDSN          = "postgres://ada:" + pgPassword + "@db.internal:5432/bank"
	gwToken        = "gw-Sekr1t-5518"
	registrySecret = "sr-Sekr1t-0451"
)

// TestSecretsNeverPrinted: secrets given by the environment do not appear
// in --help, in the usage, in errors (of the configuration, of the build
// function, of Kafka) or in logs.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Setenv("INTERLOCK_SASL_PASSWORD", saslSecret)
	t.Setenv("INTERLOCK_SASL_USERNAME", "ada")
	t.Setenv("INTERLOCK_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("INTERLOCK_REDIS_PASSWORD", redisSecret)
	t.Setenv("INTERLOCK_POSTGRES_DSN", pgDSN)
	t.Setenv("INTERLOCK_GATEWAY_TOKEN", gwToken)
	t.Setenv("INTERLOCK_SCHEMA_REGISTRY_URL", "http://127.0.0.1:1")
	t.Setenv("INTERLOCK_SCHEMA_REGISTRY_USERNAME", "ada")
	t.Setenv("INTERLOCK_SCHEMA_REGISTRY_PASSWORD", registrySecret)
	check := func(what, s string) {
		t.Helper()
		for _, sec := range []string{saslSecret, redisSecret, pgPassword, gwToken, registrySecret} {
			if strings.Contains(s, sec) {
				t.Errorf("%s shows a secret:\n%s", what, s)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// --help of every command, and the usage.
	for _, c := range append(commands, &command{path: "help"}) {
		var out, errOut bytes.Buffer
		err := Run(ctx, append(strings.Fields(c.path), "-h"), &out, &errOut, bankBuild)
		if c.path != "help" && !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s -h: %v", c.path, err)
		}
		check(c.path+" -h", out.String()+errOut.String())
		if c.path != "help" && !strings.Contains(errOut.String(), "INTERLOCK_SASL_PASSWORD") {
			t.Errorf("%s -h does not mention INTERLOCK_SASL_PASSWORD:\n%s", c.path, errOut.String())
		}
	}
	// An error and a log of the build function that print the secrets.
	var out, errOut bytes.Buffer
	leaky := func(ctx context.Context, cfg *Config) (*interlock.Builder, error) {
		cfg.Logger.Info("connecting", "dsn", cfg.PostgresDSN, "err", errors.New("auth failed for "+cfg.SASL.Password), "redis", cfg.RedisPassword, "token", cfg.Gateway.Token)
		cfg.Logger.Error("connecting to " + cfg.PostgresDSN + " with " + cfg.Gateway.Token)
		return nil, fmt.Errorf("cannot connect to %s (password %s, redis %s, token %s, registry %s)", cfg.PostgresDSN, cfg.SASL.Password, cfg.RedisPassword, cfg.Gateway.Token, cfg.SchemaRegistry.Password)
	}
	err := Run(ctx, []string{"serve", "--http", "off"}, &out, &errOut, leaky)
	if err == nil || !strings.Contains(err.Error(), "cannot connect to postgres://ada:"+redacted+"@db.internal") {
		t.Errorf("the build function's error: %v", err)
	}
	check("the error", err.Error())
	check("the log", errOut.String())
	if !strings.Contains(errOut.String(), redacted) || !strings.Contains(errOut.String(), "db.internal") {
		t.Errorf("the log lost more than the secrets:\n%s", errOut.String())
	}
	// The configuration itself, printed or logged by the build function.
	errOut.Reset()
	printing := func(ctx context.Context, cfg *Config) (*interlock.Builder, error) {
		cfg.Logger.Info("configuration", "cfg", cfg, "value", *cfg)
		return nil, fmt.Errorf("bad configuration: %v / %+v / %s", cfg, *cfg, cfg)
	}
	err = Run(ctx, []string{"serve", "--http", "off"}, &out, &errOut, printing)
	check("a printed Config", err.Error())
	check("a logged Config", errOut.String())
	if !strings.Contains(err.Error(), "SASL:{Mechanism:SCRAM-SHA-512 Username:ada Password:"+redacted) ||
		!strings.Contains(err.Error(), "Gateway:{Token:"+redacted) ||
		!strings.Contains(err.Error(), "SchemaRegistry:{URLs:[http://127.0.0.1:1] Username:ada Password:"+redacted) {
		t.Errorf("a printed Config: %v", err)
	}
	// An argument too many.
	err = Run(ctx, []string{"topics", "verify", "extra"}, &out, &errOut, bankBuild)
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), `topics verify takes no arguments, got ["extra"]`) {
		t.Errorf("an argument too many: %v", err)
	}
	// A bad setting beside the secrets.
	err = Run(ctx, []string{"topics", "verify", "--partitions", "x", "--brokers", "127.0.0.1:1"}, &out, &errOut, bankBuild)
	if !errors.Is(err, ErrUsage) {
		t.Errorf("bad partitions: %v", err)
	}
	check("the configuration error", err.Error())
	// Kafka refusing the SASL password (a kfake cluster with SASL).
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "ada", "the-right-one"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out.Reset()
	errOut.Reset()
	ctx2, cancel2 := context.WithTimeout(ctx, 3*time.Second)
	defer cancel2()
	err = Run(ctx2, []string{"topics", "create", "--brokers", c.ListenAddrs()[0]}, &out, &errOut, bankBuild)
	if err == nil {
		t.Fatal("topics create with a wrong SASL password succeeded")
	}
	check("Kafka's error", err.Error())
	check("the log of a refused login", errOut.String())
}

// bankBuild is a build function of the bank's accounts.
func bankBuild(_ context.Context, cfg *Config) (*interlock.Builder, error) {
	return interlock.NewBuilder(cfg.Options()...).RegisterAggregate(bank.Accounts()), nil
}

// TestSASLMechanisms: each mechanism is built from the settings, and its
// first message carries the user (and, for PLAIN, the password); a
// password file is read again at each authentication.
func TestSASLMechanisms(t *testing.T) {
	ctx := context.Background()
	pwFile := writeFile(t, "pw", "first-Sekr1t\n")
	cases := []struct {
		mechanism, user string
		env             env
		name            string
		first           func(string) bool
	}{
		{"PLAIN", "ada", env{"INTERLOCK_SASL_PASSWORD": "pw1"}, "PLAIN", func(m string) bool { return m == "\x00ada\x00pw1" }},
		{"plain", "ada", env{"INTERLOCK_SASL_PASSWORD_FILE": pwFile}, "PLAIN", func(m string) bool { return m == "\x00ada\x00first-Sekr1t" }},
		{"SCRAM-SHA-256", "bob", env{"INTERLOCK_SASL_PASSWORD": "pw"}, "SCRAM-SHA-256", func(m string) bool { return strings.HasPrefix(m, "n,,n=bob,r=") }},
		{"SCRAM-SHA-512", "bob", env{"INTERLOCK_SASL_PASSWORD": "pw"}, "SCRAM-SHA-512", func(m string) bool { return strings.HasPrefix(m, "n,,n=bob,r=") }},
		{"OAUTHBEARER", "", env{"INTERLOCK_SASL_PASSWORD": "tok3n"}, "OAUTHBEARER", func(m string) bool { return strings.Contains(m, "auth=Bearer tok3n") }},
	}
	for _, c := range cases {
		args := []string{"--sasl-mechanism", c.mechanism}
		if c.user != "" {
			args = append(args, "--sasl-username", c.user)
		}
		cfg, err := parse(t, c.env, args...)
		if err != nil {
			t.Fatalf("%s: %v", c.mechanism, err)
		}
		opts, err := cfg.kafkaOptions()
		if err != nil || len(opts) != 1 {
			t.Fatalf("%s: %d options, %v", c.mechanism, len(opts), err)
		}
		m, err := cfg.SASL.mechanism(cfg.secrets)
		if err != nil {
			t.Fatal(err)
		}
		if m.Name() != c.name {
			t.Errorf("%s: mechanism %s", c.mechanism, m.Name())
		}
		_, first, err := m.Authenticate(ctx, "broker:9092")
		if err != nil || !c.first(string(first)) {
			t.Errorf("%s: first message %q, %v", c.mechanism, first, err)
		}
	}
	// The file is read again: a rotated password is used at once.
	cfg, err := parse(t, env{"INTERLOCK_SASL_PASSWORD_FILE": pwFile}, "--sasl-mechanism", "PLAIN", "--sasl-username", "ada")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := cfg.SASL.mechanism(cfg.secrets)
	if err := os.WriteFile(pwFile, []byte("second-Sekr1t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, first, err := m.Authenticate(ctx, "b"); err != nil || string(first) != "\x00ada\x00second-Sekr1t" {
		t.Errorf("after rotation: %q, %v", first, err)
	}
	// The new password is hidden from then on, like the first.
	checkHidden(t, cfg, "first-Sekr1t", "second-Sekr1t")
}

// checkHidden fails t unless cfg's logger and errors hide each secret.
func checkHidden(t *testing.T, cfg *Config, secrets ...string) {
	t.Helper()
	var log bytes.Buffer
	c := *cfg
	c.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{ReplaceAttr: c.redactAttr}))
	for _, sec := range secrets {
		c.Logger.Info("msg", "err", errors.New("refused "+sec), "said", sec)
		if err := c.redact(fmt.Errorf("refused %s", sec)); strings.Contains(err.Error(), sec) || strings.Contains(log.String(), sec) {
			t.Errorf("secret %q printed: error %q, log %s", sec, err, log.String())
		}
	}
}

// TestTLSAndSASLOnKafka runs topics create against an embedded Kafka
// with TLS and SCRAM-SHA-512: the CA file and the password from a file
// get it in; a wrong password or no CA does not.
func TestTLSAndSASLOnKafka(t *testing.T) {
	caPEM, serverTLS := selfSigned(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "ada", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ca := writeFile(t, "ca.pem", string(caPEM))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(password string, args ...string) (string, error) {
		t.Setenv("INTERLOCK_SASL_PASSWORD_FILE", writeFile(t, "pw", password))
		var out, errOut bytes.Buffer
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := Run(rctx, append([]string{"topics", "create", "--brokers", c.ListenAddrs()[0], "--name", "tls",
			"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "ada"}, args...), &out, &errOut, bankBuild)
		return out.String(), err
	}
	out, err := run("s3cret", "--tls-ca-file", ca)
	if err != nil {
		t.Fatalf("TLS and SCRAM with the right CA and password: %v", err)
	}
	if !strings.Contains(out, "tls.bank-account.events\t6 partitions") {
		t.Errorf("topics create printed:\n%s", out)
	}
	if _, err := run("wrong", "--tls-ca-file", ca); err == nil {
		t.Error("a wrong password got in")
	}
	if _, err := run("s3cret", "--tls"); err == nil {
		t.Error("a server certificate of an unknown CA was trusted")
	}
}

// TestMutualTLSOnKafka runs topics create against an embedded Kafka that
// requires a client certificate: the certificate and key files get it in,
// none does not; --tls-server-name is the name checked in the broker's
// certificate.
func TestMutualTLSOnKafka(t *testing.T) {
	certs := testcert.New(t)
	cert, err := tls.X509KeyPair(certs.CertPEM, certs.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: certs.Pool, MinVersion: tls.VersionTLS12,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ca, certFile, keyFile := writeFile(t, "ca.pem", string(certs.CAPEM)), writeFile(t, "cert.pem", string(certs.CertPEM)), writeFile(t, "key.pem", string(certs.KeyPEM))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := Run(rctx, append([]string{"topics", "create", "--brokers", c.ListenAddrs()[0], "--name", "mtls", "--tls-ca-file", ca}, args...), &out, &errOut, bankBuild)
		return out.String(), err
	}
	out, err := run("--tls-cert-file", certFile, "--tls-key-file", keyFile)
	if err != nil || !strings.Contains(out, "mtls.bank-account.events\t6 partitions") {
		t.Fatalf("mutual TLS with the client certificate: %v\n%s", err, out)
	}
	if _, err := run("--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-server-name", "localhost"); err != nil {
		t.Errorf("--tls-server-name localhost (a name of the certificate): %v", err)
	}
	if _, err := run("--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-server-name", "kafka.example.com"); err == nil || !strings.Contains(err.Error(), "kafka.example.com") {
		t.Errorf("--tls-server-name kafka.example.com (not in the certificate): %v, want a refusal naming it", err)
	}
	if _, err := run(); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("a client without a certificate: %v, want a refusal", err)
	}
}

// selfSigned returns a CA certificate (PEM) and a server TLS
// configuration with a certificate it signed for 127.0.0.1.
func selfSigned(t *testing.T) ([]byte, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "interlock test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

func TestPrefixed(t *testing.T) {
	for _, c := range []struct{ msg, want string }{
		{"interlock: topic layout", "interlock: topic layout"},
		{"no command given", "interlock: no command given"},
		{"interlocked: x", "interlock: interlocked: x"},
	} {
		if got := prefixed("interlock", errors.New(c.msg)); got != c.want {
			t.Errorf("%q: %q, want %q", c.msg, got, c.want)
		}
	}
}

// TestRedisURLPasswordRedacted: the Redis URL is not a secret setting, but
// a password written in it is hidden like one, as written (escaped) and
// unescaped, wherever the configuration or an error is printed.
func TestRedisURLPasswordRedacted(t *testing.T) {
	const raw, escaped = "url/Sekr1t-4471", "url%2FSekr1t-4471"
	var logs bytes.Buffer
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	vals := addFlags(fs, true)
	cfg, err := resolve(fs, vals, env{"INTERLOCK_REDIS_URL": "rediss://ada:" + escaped + "@redis.internal:6380/0"}.get, &logs)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger.Info("configuration", "config", cfg, "err", errors.New("dialing redis://ada:"+escaped+"@redis.internal: password "+raw+" refused"))
	err = cfg.redact(fmt.Errorf("connecting to %s with %s", cfg.RedisURL, raw))
	for what, s := range map[string]string{"String": cfg.String(), "the log": logs.String(), "an error": err.Error()} {
		if strings.Contains(s, raw) || strings.Contains(s, escaped) {
			t.Errorf("%s shows the URL's password:\n%s", what, s)
		}
		if !strings.Contains(s, "redis.internal") {
			t.Errorf("%s lost the server's address:\n%s", what, s)
		}
	}
	if want := "rediss://ada:" + redacted + "@redis.internal:6380/0"; !strings.Contains(cfg.String(), want) {
		t.Errorf("String() = %s, want it to hold %s", cfg.String(), want)
	}
	for _, tc := range []struct {
		url  string
		want []string
	}{
		{"redis://redis.internal:6379/0", nil},
		{"redis://ada@redis.internal:6379/0", nil},
		{"redis://:pw@redis.internal:6379/0", []string{"pw"}},
		{"redis://ada:p%40ss@redis.internal:6379/0", []string{"p%40ss", "p@ss"}},
	} {
		if got := urlPassword(tc.url); !slices.Equal(got, tc.want) {
			t.Errorf("urlPassword(%q) = %q, want %q", tc.url, got, tc.want)
		}
	}
}

// TestSecretParts: what is hidden of a secret: a URL's password as written
// and unescaped, a key=value DSN's password, else the whole secret.
func TestSecretParts(t *testing.T) {
	for _, c := range []struct {
		secret string
		want   []string
	}{
		{"postgres://u:p%40ss@db:5432/x", []string{"p%40ss", "p@ss"}},
		{"postgres://u:plain@db/x", []string{"plain"}},
		{"host=db user=u password=s3cret dbname=x", []string{"s3cret"}},
		{"just-a-token", []string{"just-a-token"}},
	} {
		if got := secretParts(c.secret); !slices.Equal(got, c.want) {
			t.Errorf("secretParts(%q) = %q, want %q", c.secret, got, c.want)
		}
	}
}

// TestSecretListBounded: the configured secrets and the last values read
// from rotated files stay hidden; the oldest rotated ones make room.
func TestSecretListBounded(t *testing.T) {
	l := newSecretList([]string{"configured-Sekr1t"})
	for i := range maxRotated + 8 {
		l.add(fmt.Sprintf("token-%03d", i))
		l.add(fmt.Sprintf("token-%03d", i)) // read again, unchanged
	}
	hidden := func(s string) bool { return l.replace("x "+s) == "x "+redacted }
	if !hidden("configured-Sekr1t") {
		t.Error("the configured secret is no longer hidden")
	}
	for i := range maxRotated + 8 {
		if want := i >= 8; hidden(fmt.Sprintf("token-%03d", i)) != want {
			t.Errorf("token %d hidden %v, want %v", i, !want, want)
		}
	}
}
