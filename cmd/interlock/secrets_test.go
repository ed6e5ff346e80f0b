package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/internal/services"
	"github.com/interlock-go/interlock/service"
)

// The secrets of TestNoSecretLeaks: distinctive, so a leak shows, and one
// with characters a URL must escape.
const (
	leakSASL         = "sasl-Sekr1t-6612"
	leakRedis        = "redis-Sekr1t-2290"    // the separate setting
	leakRedisURL     = "redisurl-Sekr1t/7741" // in the URL, escaped there
	leakRedisRefused = "redis-Wr0ng-8823"     // a password Redis refuses
	leakPG           = "pg-Sekr1t-5170"
	leakToken        = "gw-Sekr1t-Tok3n-9934"
)

var leakSecrets = []string{leakSASL, leakRedis, leakRedisURL, url.PathEscape(leakRedisURL), leakRedisRefused, leakPG, leakToken}

// TestNoSecretLeaks: the binary, given a SASL password, a Redis password
// in its URL and as its own setting, a PostgreSQL DSN with a password and
// a gateway token, never shows one of them: not in its slog output, not in
// the errors it returns, not in the configuration it logs at start, not
// on /metrics. It runs serve on an embedded Kafka with SASL and a TLS
// Redis with an ACL user, then provokes failures: Redis unreachable,
// Redis and Kafka refusing the password, PostgreSQL unreachable (and
// refusing the password when a PostgreSQL is configured).
func TestNoSecretLeaks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	check := func(what, s string) {
		t.Helper()
		for _, sec := range leakSecrets {
			if strings.Contains(s, sec) {
				t.Errorf("%s shows the secret %q:\n%s", what, sec, s)
			}
		}
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "ada", leakSASL))
	if err != nil {
		t.Fatal(err)
	}
	defer kafka.Close()
	name := "leaks"
	srv := redistest.StartTLS(t, "interlock on >"+leakRedis+" resetchannels ~"+name+":* -@all +ping +hmget +evalsha +eval +time +hget +hset")
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := map[string]string{
		"INTERLOCK_BROKERS":             kafka.ListenAddrs()[0],
		"INTERLOCK_NAME":                name,
		"INTERLOCK_SASL_MECHANISM":      "SCRAM-SHA-512",
		"INTERLOCK_SASL_USERNAME":       "ada",
		"INTERLOCK_SASL_PASSWORD_FILE":  file("sasl", leakSASL),
		"INTERLOCK_REDIS_URL":           "rediss://interlock:" + url.PathEscape(leakRedisURL) + "@" + srv.Addr + "/0",
		"INTERLOCK_REDIS_PASSWORD_FILE": file("redis", leakRedis), // wins over the URL's
		"INTERLOCK_REDIS_TLS_CA_FILE":   srv.CAFile,
		"INTERLOCK_GATEWAY_TOKEN":       leakToken,
		"INTERLOCK_HTTP_ADDR":           "127.0.0.1:0",
		"INTERLOCK_LOG_LEVEL":           "debug",
		"INTERLOCK_PARTITIONS":          "2",
	}
	// serve runs the binary's serve with base changed by env (an empty
	// value unsets) until ctx ends, and returns its error and log.
	serve := func(ctx context.Context, env map[string]string, whileRunning func(log *logbuf.Buffer)) (error, string) {
		t.Helper()
		for k, v := range base {
			t.Setenv(k, v)
		}
		for k, v := range env {
			t.Setenv(k, v)
		}
		log := &logbuf.Buffer{}
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		done := make(chan error, 1)
		go func() { done <- service.Run(runCtx, []string{"serve"}, io.Discard, log, build, commands()...) }()
		if whileRunning != nil {
			whileRunning(log)
			stop()
		}
		select {
		case err := <-done:
			return err, log.String()
		case <-time.After(2 * time.Minute):
			t.Fatalf("serve did not end: log:\n%s", log)
			return nil, ""
		}
	}

	// Running: the configuration logged at start, a command through the
	// gateway, one refused for a wrong token, and /metrics.
	addrRE := regexp.MustCompile(`"msg":"interlock: serving /metrics[^}]*"addr":"([^"]+)"`)
	err, log := serve(ctx, nil, func(log *logbuf.Buffer) {
		var addr string
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			if m := addrRE.FindStringSubmatch(log.String()); m != nil {
				addr = "http://" + m[1]
				if res, err := http.Get(addr + "/readyz"); err == nil {
					res.Body.Close()
					if res.StatusCode == http.StatusOK {
						break
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("serve never became ready; log:\n%s", log)
			}
		}
		do := func(method, path, token, body string) (int, string) {
			t.Helper()
			req, _ := http.NewRequestWithContext(ctx, method, addr+path, strings.NewReader(body))
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		id := "01JAAAAAAAAAAAAAAAAAAAAAAA"
		if code, body := do("POST", "/v1/commands/OpenAccount", leakToken, `{"aggregateId":"`+id+`","payload":{"owner":"ada"}}`); code != http.StatusOK {
			t.Fatalf("a command through the gateway: %d %s", code, body)
		}
		code, body := do("POST", "/v1/commands/OpenAccount", leakToken+"x", `{"aggregateId":"`+id+`","payload":{"owner":"ada"}}`)
		if code != http.StatusUnauthorized {
			t.Errorf("a wrong token: %d %s", code, body)
		}
		check("the gateway's refusal", body)
		code, metrics := do("GET", "/metrics", "", "")
		if code != http.StatusOK || !strings.Contains(metrics, "interlock_commands_total") {
			t.Fatalf("/metrics: %d\n%s", code, metrics)
		}
		check("/metrics", metrics)
	})
	if err != nil {
		t.Fatalf("serve: %v\n%s", err, log)
	}
	check("serve's log", log)
	for _, want := range []string{`"config":`, "RedisPassword:[redacted]", "Token:[redacted]", "Password:[redacted]", "rediss://interlock:[redacted]@" + srv.Addr} {
		if !strings.Contains(log, want) {
			t.Errorf("serve's log does not hold %q:\n%s", want, log)
		}
	}

	// Failures at start: each ends serve with an error that says what
	// failed, without the secret.
	dsn := "postgres://ada:" + leakPG + "@127.0.0.1:1/bank?sslmode=disable"
	failures := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"RedisUnreachable", map[string]string{"INTERLOCK_REDIS_URL": "redis://interlock:" + url.PathEscape(leakRedisURL) + "@127.0.0.1:1/0", "INTERLOCK_REDIS_PASSWORD_FILE": "", "INTERLOCK_REDIS_TLS_CA_FILE": ""}, "127.0.0.1:1"},
		{"RedisRefusesURLPassword", map[string]string{"INTERLOCK_REDIS_PASSWORD_FILE": ""}, "WRONGPASS"},
		{"RedisRefusesPassword", map[string]string{"INTERLOCK_REDIS_PASSWORD_FILE": file("redis-wrong", leakRedisRefused)}, "WRONGPASS"},
		{"KafkaRefusesPassword", map[string]string{"INTERLOCK_SASL_PASSWORD_FILE": file("sasl-wrong", leakRedisRefused)}, ""},
		{"PostgresUnreachable", map[string]string{"INTERLOCK_POSTGRES_DSN": dsn}, "balances"},
	}
	if pg := os.Getenv(services.EnvPostgres); pg != "" || services.Required() {
		u, err := url.Parse(services.Lookup(t, services.EnvPostgres, "PostgreSQL"))
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), leakPG)
		failures = append(failures, struct {
			name string
			env  map[string]string
			want string
		}{"PostgresRefusesPassword", map[string]string{"INTERLOCK_POSTGRES_DSN": u.String()}, "password authentication failed"})
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err, log := serve(fctx, f.env, nil)
			if err == nil {
				t.Fatalf("serve succeeded; log:\n%s", log)
			}
			if !strings.Contains(err.Error(), f.want) {
				t.Errorf("the error does not say %q: %v", f.want, err)
			}
			check("the error", err.Error())
			check("the log", log)
			t.Logf("%v", err)
		})
	}
}
