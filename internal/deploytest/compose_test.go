package deploytest

import (
	"context"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// repoRoot is the repository root, relative to this package's directory
// (where go test runs).
const repoRoot = "../.."

// loadCompose loads docker-compose.yml as `docker compose` would: validated
// against the compose-spec schema, normalized, and checked for consistency
// (for example, every named volume a service mounts is declared). The process
// environment is deliberately not consulted, so the result does not depend on
// the machine.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %q: %v", name, err)
	}
	return s
}

// env returns a service's environment variable, failing the test if unset.
func env(t *testing.T, s types.ServiceConfig, key string) string {
	t.Helper()
	v, ok := s.Environment[key]
	if !ok || v == nil || *v == "" {
		t.Fatalf("service %q: environment %s is not set", s.Name, key)
	}
	return *v
}

// listeners parses a Kafka listener list ("NAME://host:port,...") into a map
// from listener name to host:port.
func listeners(t *testing.T, list string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for l := range strings.SplitSeq(list, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(l), "://")
		if !ok || name == "" {
			t.Fatalf("listener %q: want NAME://host:port", l)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			t.Fatalf("listener %q: %v", l, err)
		}
		m[name] = addr
	}
	return m
}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"kafka", "redis", "postgres", "interlock"} {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %q is missing: %v", name, err)
		}
	}
}

// TestComposeRedis: the snapshot cache runs without persistence (it needs
// none) and never evicts a snapshot.
func TestComposeRedis(t *testing.T) {
	r := service(t, loadCompose(t), "redis")
	args := map[string]string{}
	for i := 0; i+1 < len(r.Command); i++ {
		if strings.HasPrefix(r.Command[i], "--") {
			args[r.Command[i]] = r.Command[i+1]
		}
	}
	if len(r.Command) == 0 || r.Command[0] != "redis-server" || args["--save"] != "" || args["--appendonly"] != "no" || args["--maxmemory-policy"] != "noeviction" {
		t.Errorf("redis command %q: want redis-server --save \"\" --appendonly no --maxmemory-policy noeviction", r.Command)
	}
	if _, set := args["--save"]; !set {
		t.Errorf("redis command %q: persistence (--save) is not turned off", r.Command)
	}
}

func TestComposeKafka(t *testing.T) {
	p := loadCompose(t)
	k := service(t, p, "kafka")

	repo, tag, _ := strings.Cut(k.Image, ":")
	if repo != "apache/kafka" && repo != "docker.io/apache/kafka" {
		t.Errorf("kafka image %q: want the official apache/kafka image", k.Image)
	}
	if !strings.HasPrefix(tag, "4.") {
		t.Errorf("kafka image %q: want a pinned 4.x tag", k.Image)
	}

	if got := env(t, k, "KAFKA_PROCESS_ROLES"); got != "broker,controller" {
		t.Errorf("KAFKA_PROCESS_ROLES = %q, want broker,controller (KRaft combined mode)", got)
	}
	for _, key := range []string{"KAFKA_NODE_ID", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_CONTROLLER_LISTENER_NAMES"} {
		env(t, k, key)
	}
	// One broker: anything above 1 leaves consumer groups and transactions
	// unable to start.
	for _, key := range []string{
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
		"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
		"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
	} {
		if got := env(t, k, key); got != "1" {
			t.Errorf("%s = %q, want 1 on a single broker", key, got)
		}
	}
	if got := env(t, k, "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"); got != "0" {
		t.Errorf("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS = %q, want 0", got)
	}

	// Some advertised listener must be reachable from the host: localhost on
	// a port the container publishes.
	advertised := listeners(t, env(t, k, "KAFKA_ADVERTISED_LISTENERS"))
	bound := listeners(t, env(t, k, "KAFKA_LISTENERS"))
	hostReachable := false
	for name, addr := range advertised {
		if _, ok := bound[name]; !ok {
			t.Errorf("advertised listener %s is not in KAFKA_LISTENERS", name)
		}
		host, port, _ := net.SplitHostPort(addr)
		if host != "localhost" && host != "127.0.0.1" {
			continue
		}
		for _, pc := range k.Ports {
			if pc.Published == port && pc.Target != 0 && portOf(t, bound[name]) == pc.Target {
				hostReachable = true
			}
		}
	}
	if !hostReachable {
		t.Errorf("no advertised listener on localhost is published to the host (advertised %v, ports %+v)", advertised, k.Ports)
	}

	// The data directory must be the mounted named volume, or topics vanish
	// with the container.
	logDirs := env(t, k, "KAFKA_LOG_DIRS")
	if !mountsVolumeAt(k, "kafka-data", logDirs) {
		t.Errorf("KAFKA_LOG_DIRS %q is not on the named volume kafka-data (volumes %+v)", logDirs, k.Volumes)
	}
}

func portOf(t *testing.T, addr string) uint32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	var n uint32
	for _, c := range port {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + uint32(c-'0')
	}
	return n
}

func mountsVolumeAt(s types.ServiceConfig, volume, target string) bool {
	return slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Source == volume && v.Target == target
	})
}

func TestComposeHealthchecks(t *testing.T) {
	p := loadCompose(t)
	// Each backing service's check must run the tool that really asks the
	// server, not a placeholder such as `true`.
	tests := []struct {
		service string
		tool    string
		port    uint32
	}{
		{"kafka", "kafka-broker-api-versions.sh", 9094},
		{"redis", "redis-cli", 6379},
		{"postgres", "pg_isready", 5432},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			s := service(t, p, tt.service)
			hc := s.HealthCheck
			if hc == nil || hc.Disable || len(hc.Test) < 2 {
				t.Fatalf("no healthcheck: %+v", hc)
			}
			switch hc.Test[0] {
			case "CMD", "CMD-SHELL":
			default:
				t.Fatalf("healthcheck test %q: want CMD or CMD-SHELL", hc.Test)
			}
			if !strings.Contains(strings.Join(hc.Test[1:], " "), tt.tool) {
				t.Errorf("healthcheck test %q does not run %s", hc.Test, tt.tool)
			}
			if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil || *hc.Retries == 0 || hc.StartPeriod == nil {
				t.Errorf("healthcheck needs interval, timeout, retries and start_period: %+v", hc)
			}
			if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return pc.Target == tt.port && pc.Published != "" }) {
				t.Errorf("port %d is not published to the host: %+v", tt.port, s.Ports)
			}
		})
	}

	pg := service(t, p, "postgres")
	for _, key := range []string{"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} {
		if got := env(t, pg, key); got != "interlock" {
			t.Errorf("postgres %s = %q, want interlock", key, got)
		}
	}
	if !slices.ContainsFunc(pg.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Source == "postgres-data"
	}) {
		t.Errorf("postgres does not keep its data on the named volume postgres-data: %+v", pg.Volumes)
	}
}

func TestComposeInterlock(t *testing.T) {
	p := loadCompose(t)
	s := service(t, p, "interlock")

	if s.Build == nil {
		t.Fatal("interlock is not built from the Dockerfile (build: .)")
	}
	root, _ := filepath.Abs(repoRoot)
	if filepath.Clean(s.Build.Context) != root {
		t.Errorf("build context %q, want the repository root %q", s.Build.Context, root)
	}
	if len(s.Command) == 0 || s.Command[0] != "serve" {
		t.Errorf("command %q, want serve", s.Command)
	}
	if s.Restart != types.RestartPolicyUnlessStopped {
		t.Errorf("restart %q, want %s", s.Restart, types.RestartPolicyUnlessStopped)
	}
	for _, dep := range []string{"kafka", "redis", "postgres"} {
		d, ok := s.DependsOn[dep]
		if !ok {
			t.Errorf("interlock does not depend on %s", dep)
			continue
		}
		if d.Condition != types.ServiceConditionHealthy {
			t.Errorf("depends_on %s: condition %q, want %s", dep, d.Condition, types.ServiceConditionHealthy)
		}
	}

	// INTERLOCK_BROKERS must name the kafka service on a listener the broker
	// advertises; otherwise the client bootstraps and then follows metadata
	// to an address it cannot reach (e.g. localhost inside the container).
	k := service(t, p, "kafka")
	advertised := listeners(t, env(t, k, "KAFKA_ADVERTISED_LISTENERS"))
	kafkaNames := []string{k.Name}
	if k.Hostname != "" {
		kafkaNames = append(kafkaNames, k.Hostname)
	}
	controller := env(t, k, "KAFKA_CONTROLLER_LISTENER_NAMES")
	for b := range strings.SplitSeq(env(t, s, "INTERLOCK_BROKERS"), ",") {
		b = strings.TrimSpace(b)
		host, _, err := net.SplitHostPort(b)
		if err != nil {
			t.Errorf("INTERLOCK_BROKERS entry %q: %v", b, err)
			continue
		}
		if !slices.Contains(kafkaNames, host) {
			t.Errorf("INTERLOCK_BROKERS entry %q does not name the kafka service %q", b, kafkaNames)
		}
		var on string
		for name, addr := range advertised {
			if addr == b {
				on = name
			}
		}
		switch {
		case on == "":
			t.Errorf("INTERLOCK_BROKERS entry %q is not an advertised listener (%v)", b, advertised)
		case slices.Contains(strings.Split(controller, ","), on):
			t.Errorf("INTERLOCK_BROKERS entry %q is the controller listener %s", b, on)
		}
	}
	if got := env(t, s, "INTERLOCK_NAME"); got != "interlock" {
		t.Errorf("INTERLOCK_NAME = %q, want interlock", got)
	}
}

func TestComposeVolumes(t *testing.T) {
	p := loadCompose(t)
	for _, v := range []string{"kafka-data", "postgres-data"} {
		if _, ok := p.Volumes[v]; !ok {
			t.Errorf("named volume %q is not declared (declared: %v)", v, p.VolumeNames())
		}
	}
}

// TestComposeInterlockRuntime checks how the service runs: its HTTP port
// (probes and metrics) published on the host, a stable instance ID, the
// Redis and PostgreSQL it is given are the compose services, and a stop
// lets serve drain.
func TestComposeInterlockRuntime(t *testing.T) {
	p := loadCompose(t)
	s := service(t, p, "interlock")

	// serve's HTTP address, published on the host's loopback.
	addr := env(t, s, "INTERLOCK_HTTP_ADDR")
	httpPort := portOf(t, addr)
	if httpPort == 0 {
		t.Fatalf("INTERLOCK_HTTP_ADDR %q: want host:port or :port", addr)
	}
	if host, _, _ := net.SplitHostPort(addr); host != "" && host != "0.0.0.0" {
		t.Errorf("INTERLOCK_HTTP_ADDR %q listens on %s only: unreachable through the published port", addr, host)
	}
	if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool {
		return pc.Target == httpPort && pc.Published != "" && pc.HostIP == "127.0.0.1"
	}) {
		t.Errorf("serve's HTTP port %d is not published on 127.0.0.1: %+v", httpPort, s.Ports)
	}

	if id := env(t, s, "INTERLOCK_INSTANCE_ID"); strings.ContainsAny(id, " /") {
		t.Errorf("INTERLOCK_INSTANCE_ID %q: want a plain stable name", id)
	}

	// Redis: the redis service, on the port its container listens on.
	ru, err := url.Parse(env(t, s, "INTERLOCK_REDIS_URL"))
	if err != nil {
		t.Fatalf("INTERLOCK_REDIS_URL: %v", err)
	}
	if ru.Scheme != "redis" || ru.Hostname() != "redis" || ru.Port() != "6379" {
		t.Errorf("INTERLOCK_REDIS_URL %q: want redis://redis:6379/<db>", ru)
	}
	if _, ok := s.DependsOn["redis"]; !ok {
		t.Error("interlock uses Redis without depending on it")
	}

	// PostgreSQL: the postgres service with the user, password and database
	// it is created with.
	pg := service(t, p, "postgres")
	du, err := url.Parse(env(t, s, "INTERLOCK_POSTGRES_DSN"))
	if err != nil {
		t.Fatalf("INTERLOCK_POSTGRES_DSN does not parse")
	}
	pw, _ := du.User.Password()
	if du.Scheme != "postgres" || du.Hostname() != "postgres" || du.Port() != "5432" ||
		du.User.Username() != env(t, pg, "POSTGRES_USER") || pw != env(t, pg, "POSTGRES_PASSWORD") ||
		strings.TrimPrefix(du.Path, "/") != env(t, pg, "POSTGRES_DB") {
		t.Errorf("INTERLOCK_POSTGRES_DSN does not name the postgres service with its POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB")
	}

	// serve drains for up to 30 s after SIGTERM; Docker kills after 10 s
	// unless told otherwise.
	if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= 30*time.Second {
		t.Errorf("stop_grace_period %v: serve drains for up to 30 s, want more", s.StopGracePeriod)
	}

	// The image is distroless: the healthcheck can only run the binary
	// itself, in exec form: interlock healthcheck asks /readyz.
	if hc := s.HealthCheck; hc == nil || hc.Disable {
		t.Errorf("the service has no healthcheck; want [CMD /interlock healthcheck]")
	} else if !slices.Equal(hc.Test, types.HealthCheckTest{"CMD", "/interlock", "healthcheck"}) {
		t.Errorf("healthcheck %q: the image has no shell or curl; want [CMD /interlock healthcheck]", hc.Test)
	} else if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil || hc.StartPeriod == nil {
		t.Errorf("healthcheck needs interval, timeout, retries and start_period: %+v", hc)
	}
}
