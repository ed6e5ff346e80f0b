// Package securekafka starts, for one test, a Kafka broker of its own that
// only speaks SASL_SSL and enforces ACLs: the setup docs/security.md
// describes, with certificates made in the test. Its users log in with
// SCRAM-SHA-512; the admin also with SCRAM-SHA-256, PLAIN and OAUTHBEARER
// (Kafka's unsecured token validator, see UnsecuredToken), so each
// mechanism the service offers is tried on a real broker. The shared test
// broker (scripts/services.sh) stays plaintext; this one lives as long as
// the test.
package securekafka

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/internal/services"
	"github.com/interlock-go/interlock/internal/testcert"
)

// Admin is the broker's super user, whose SCRAM-SHA-512 credential is
// written into the storage before the first start.
const Admin = "admin"

// Broker is a running secured Kafka.
type Broker struct {
	// Addr is the SASL_SSL listener, 127.0.0.1:port.
	Addr string
	// CAFile holds the PEM certificate of the CA that signed the broker's
	// certificate; CA is the same as a pool.
	CAFile string
	CA     *x509.CertPool
	// AdminPassword is Admin's password.
	AdminPassword string

	dir string
}

// Start starts a broker for t and stops it when t ends; its log is
// printed if t failed. Without java or the Kafka jars
// (INTERLOCK_TEST_KAFKA_JARS, exported by scripts/services.sh env) t is
// skipped, or fails when services are required.
func Start(t testing.TB) *Broker {
	t.Helper()
	jars := services.Lookup(t, services.EnvKafkaJars, "the Kafka jar directory")
	if found, _ := filepath.Glob(filepath.Join(jars, "kafka_2.13-*.jar")); len(found) == 0 {
		lookupFail(t, fmt.Sprintf("%s=%s holds no Kafka jars (kafka_2.13-*.jar): run scripts/services.sh up kafka", services.EnvKafkaJars, jars))
	}
	java, err := exec.LookPath("java")
	if err != nil {
		lookupFail(t, "java is not on PATH: the secured Kafka needs Java 17+")
	}
	dir := t.TempDir()
	b := &Broker{dir: dir, AdminPassword: "admin-" + randomText(12)}
	serverPEM := b.writeCerts(t)
	ports := freePorts(t, 2)
	b.Addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	props := filepath.Join(dir, "server.properties")
	writeFile(t, props, b.properties(ports[0], ports[1], serverPEM))
	logs := filepath.Join(dir, "logs")
	log4j := filepath.Join(repoRoot(t), "scripts", "kafka", "log4j2.xml")
	jvm := func(name string, args ...string) *exec.Cmd {
		return exec.Command(java, append([]string{
			"-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
			"-Dkafka.logs.dir=" + logs, "-Dlog4j2.configurationFile=" + log4j, "-Dinterlock.log.name=" + name,
			"-cp", filepath.Join(jars, "*"),
		}, args...)...)
	}
	clusterID := base64.RawURLEncoding.EncodeToString([]byte(randomText(16))[:16])
	format := jvm("format", "kafka.tools.StorageTool", "format", "-t", clusterID, "-c", props,
		"--feature", "transaction.version=2",
		"--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", Admin, b.AdminPassword),
		"--add-scram", fmt.Sprintf("SCRAM-SHA-256=[name=%s,password=%s]", Admin, b.AdminPassword))
	if out, err := format.CombinedOutput(); err != nil {
		t.Fatalf("formatting the secured Kafka's storage: %v\n%s", err, out)
	}
	out := &logbuf.Buffer{}
	cmd := jvm("server", "kafka.Kafka", props)
	cmd.Stdout, cmd.Stderr = out, out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the secured Kafka: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit is reported by exited; Cleanup kills it
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // its data is a temporary directory: no clean stop needed
		<-exited
		if t.Failed() {
			t.Logf("the secured Kafka's output:\n%s\nits log (last 60 lines):\n%s", out.Tail(20), tail(filepath.Join(logs, "server.log"), 60))
		}
	})
	b.waitReady(t, exited)
	return b
}

// lookupFail fails or skips t like a missing service.
func lookupFail(t testing.TB, msg string) {
	t.Helper()
	if services.Required() {
		t.Fatalf("%s=1 but %s", services.EnvRequire, msg)
	}
	fmt.Fprintf(os.Stderr, "\n*** SKIPPING %s: %s ***\n\n", t.Name(), msg)
	t.Skip("SKIPPED: " + msg)
}

// waitReady polls until the admin can list the brokers and find a
// transaction coordinator, or fails t when the broker exits or a minute
// passes.
func (b *Broker) waitReady(t testing.TB, exited <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(b.ClientOpts(Admin, b.AdminPassword)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var last error
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := adm.ListBrokers(rctx)
		if err == nil {
			err = adm.FindTxnCoordinators(rctx, "securekafka-ready").Error()
		}
		rcancel()
		if err == nil {
			return
		}
		last = err
		select {
		case <-exited:
			t.Fatalf("the secured Kafka exited during start-up (last answer: %v)", last)
		case <-ctx.Done():
			t.Fatalf("the secured Kafka on %s was not ready within a minute: %v", b.Addr, last)
		case <-time.After(wait):
		}
	}
}

// UnsecuredToken returns an OAUTHBEARER token for principal sub that the
// broker accepts until exp: an unsigned JWS (alg none) with the sub, iat
// and exp claims, as Kafka's unsecured validator wants it.
func UnsecuredToken(sub string, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	now := time.Now().Add(-time.Minute)
	claims := fmt.Sprintf(`{"sub":%q,"iat":%d,"exp":%d}`, sub, now.Unix(), exp.Unix())
	return enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + "."
}

// TLS returns a client TLS configuration that trusts the broker's CA.
func (b *Broker) TLS() *tls.Config {
	return &tls.Config{RootCAs: b.CA, MinVersion: tls.VersionTLS12}
}

// ClientOpts returns the options of a client that logs in as user.
func (b *Broker) ClientOpts(user, password string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(b.Addr),
		kgo.DialTLSConfig(b.TLS()),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()),
	}
}

// AdminClient returns a client logged in as the super user, closed when t
// ends.
func (b *Broker) AdminClient(t testing.TB) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(b.ClientOpts(Admin, b.AdminPassword)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// AddUser creates user's SCRAM-SHA-512 credential.
func (b *Broker) AddUser(ctx context.Context, adm *kadm.Client, user, password string) error {
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{
		User: user, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: password,
	}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		return fmt.Errorf("creating the SCRAM credential of %s: %w", user, err)
	}
	return nil
}

// properties is the broker's configuration: one KRaft node, the client
// listener SASL_SSL (also used between brokers, as the admin), the
// controller listener plaintext on loopback.
func (b *Broker) properties(port, controllerPort int, serverPEM string) string {
	jaas := fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`, Admin, b.AdminPassword)
	return strings.Join([]string{
		"process.roles=broker,controller",
		"node.id=1",
		fmt.Sprintf("controller.quorum.voters=1@127.0.0.1:%d", controllerPort),
		fmt.Sprintf("listeners=SECURE://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", port, controllerPort),
		fmt.Sprintf("advertised.listeners=SECURE://127.0.0.1:%d", port),
		"listener.security.protocol.map=SECURE:SASL_SSL,CONTROLLER:PLAINTEXT",
		"inter.broker.listener.name=SECURE",
		"controller.listener.names=CONTROLLER",
		"sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER",
		"sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
		"listener.name.secure.scram-sha-512.sasl.jaas.config=" + jaas,
		"listener.name.secure.scram-sha-256.sasl.jaas.config=" + jaas,
		// PLAIN: the admin, with the same password.
		fmt.Sprintf(`listener.name.secure.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_%s="%s";`, Admin, b.AdminPassword),
		// OAUTHBEARER with Kafka's unsecured validator: it accepts an
		// unsigned token (alg none) whose sub claim is the principal. For
		// tests only; production brokers validate signed tokens (JWKS).
		`listener.name.secure.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="` + Admin + `";`,
		"listener.name.secure.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler",
		"ssl.keystore.type=PEM",
		"ssl.keystore.location=" + serverPEM,
		"ssl.truststore.type=PEM",
		"ssl.truststore.location=" + b.CAFile,
		"authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		// The controller listener is plaintext (KRaft controllers cannot
		// use SCRAM), so its principal is ANONYMOUS; it listens on
		// loopback and is not advertised to clients.
		"super.users=User:" + Admin + ";User:ANONYMOUS",
		"allow.everyone.if.no.acl.found=false",
		"log.dirs=" + filepath.Join(b.dir, "data"),
		"auto.create.topics.enable=false",
		"num.partitions=1",
		"default.replication.factor=1",
		"min.insync.replicas=1",
		"offsets.topic.replication.factor=1",
		"offsets.topic.num.partitions=3",
		"transaction.state.log.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"transaction.state.log.num.partitions=3",
		"share.coordinator.state.topic.replication.factor=1",
		"share.coordinator.state.topic.min.isr=1",
		"group.initial.rebalance.delay.ms=0",
		"add.partitions.to.txn.retry.backoff.ms=1",
		"num.network.threads=2",
		"num.io.threads=2",
		"",
	}, "\n")
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 it signed,
// writes the CA's certificate (CAFile) and the server's key and chain in
// one PEM file, Kafka's PEM keystore, and returns that file's path.
func (b *Broker) writeCerts(t testing.TB) string {
	t.Helper()
	certs := testcert.New(t)
	b.CA = certs.Pool
	b.CAFile = filepath.Join(b.dir, "ca.pem")
	writeFile(t, b.CAFile, string(certs.CAPEM))
	path := filepath.Join(b.dir, "server.pem")
	writeFile(t, path, string(certs.KeyPEM)+string(certs.CertPEM)+string(certs.CAPEM))
	return path
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePorts returns n ports free now on 127.0.0.1.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// repoRoot is the module's root, where scripts/ is.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the source of securekafka")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// randomText is n random letters and digits.
func randomText(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// tail returns the last n lines of a file, or why it cannot.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.SplitAfter(string(b), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "")
}
