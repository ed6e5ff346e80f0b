package redistest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/internal/services"
	"github.com/interlock-go/interlock/internal/testcert"
)

// Admin user of a TLSServer: every right, for the test's own setup and
// cleanup.
const (
	AdminUser     = "admin"
	AdminPassword = "admin-pw-for-tests"
)

// TLSServer is a redis-server process of a test's own that accepts only
// TLS connections and only the ACL users it was started with (the default
// user is off).
type TLSServer struct {
	// Addr is the TLS port's address, 127.0.0.1:port.
	Addr string
	// CA is the pool holding the CA that signed the server's certificate,
	// and CAFile the same CA in PEM.
	CA     *x509.CertPool
	CAFile string
	// Admin is a client of the admin user.
	Admin *redis.Client

	cmd *exec.Cmd
	out *logbuf.Buffer
}

// StartTLS starts redis-server (from PATH; a missing one skips or fails t
// as services.Binary says) on a free TLS port with a certificate for
// 127.0.0.1 and localhost, signed by a CA made for t, and with users,
// each an ACL rule list as after "user" in redis.conf
// ("interlock on >pw ~app:* +ping"), beside AdminUser. The server is
// killed when t ends.
func StartTLS(t testing.TB, users ...string) *TLSServer {
	t.Helper()
	bin := services.Binary(t, "redis-server")
	dir := t.TempDir()
	certs := testcert.New(t)
	files := map[string][]byte{"ca.pem": certs.CAPEM, "server.pem": certs.CertPEM, "server-key.pem": certs.KeyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := certs.Pool
	// The free port is found by listening on it and closing it: another
	// process may take it before redis-server does, so try a few times.
	var lastErr error
	for range 5 {
		port := freePort(t)
		s, err := startTLS(t, bin, dir, port, users)
		if err == nil {
			s.CA, s.CAFile = pool, filepath.Join(dir, "ca.pem")
			s.Admin = redis.NewClient(&redis.Options{
				Addr: s.Addr, Username: AdminUser, Password: AdminPassword,
				TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
			})
			t.Cleanup(func() { s.Admin.Close() })
			return s
		}
		lastErr = err
	}
	t.Fatalf("starting redis-server with TLS: %v", lastErr)
	return nil
}

func startTLS(t testing.TB, bin, dir string, port int, users []string) (*TLSServer, error) {
	conf := []string{
		"port 0", // no plaintext port
		"tls-port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"tls-cert-file " + filepath.Join(dir, "server.pem"),
		"tls-key-file " + filepath.Join(dir, "server-key.pem"),
		"tls-ca-cert-file " + filepath.Join(dir, "ca.pem"),
		"tls-auth-clients no", // clients prove themselves by password, not certificate
		`save ""`,
		"appendonly no",
		"dir " + dir,
		"user default off",
		"user " + AdminUser + " on >" + AdminPassword + " ~* &* +@all",
	}
	for _, u := range users {
		conf = append(conf, "user "+u)
	}
	path := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	out := &logbuf.Buffer{}
	cmd := exec.Command(bin, path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s := &TLSServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, out: out}
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	// Ready when a TLS handshake succeeds on the port (no certificate check:
	// this only waits for the listener).
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("redis-server exited: %s", out.String())
		default:
		}
		d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // waiting for the listener only
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := d.DialContext(ctx, "tcp", s.Addr)
		cancel()
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("redis-server does not accept TLS on %s: %v; its output: %s", s.Addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(stop)
	return s, nil
}

// Log returns what the server printed.
func (s *TLSServer) Log() string { return s.out.String() }

// TLS returns a client TLS configuration that trusts the server's CA.
func (s *TLSServer) TLS() *tls.Config {
	return &tls.Config{RootCAs: s.CA, MinVersion: tls.VersionTLS12}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
