package snapshot_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"

	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/snapshot"
	"github.com/interlock-go/interlock/snapshot/storetest"
)

// aclCommands are the commands snapshot.Redis runs: PING (NewRedis),
// HMGET (Load), EVALSHA and EVAL (Claim and Save: EVAL when the script
// cache lost the script), and TIME, HGET and HSET (inside the scripts,
// which Redis checks against the same ACL). HELLO and AUTH need no right.
var aclCommands = []string{"ping", "hmget", "evalsha", "eval", "time", "hget", "hset"}

// aclUser is the ACL rule list of a user that may run cmds on the keys
// under prefix, and nothing else.
func aclUser(name, password, prefix string, cmds []string) string {
	rules := []string{name, "on", ">" + password, "resetchannels", "~" + prefix + "*", "-@all"}
	for _, c := range cmds {
		rules = append(rules, "+"+c)
	}
	return strings.Join(rules, " ")
}

const (
	tlsUser     = "interlock"
	tlsPassword = "tls-acl-Sekr1t-5521"
	tlsPrefix   = "interlock-test:"
)

// TestRedisTLSACLConformance: the store passes the conformance suite over
// TLS, as an ACL user that has only aclCommands on the keys under its
// prefix (the default user being off).
func TestRedisTLSACLConformance(t *testing.T) {
	srv := redistest.StartTLS(t, aclUser(tlsUser, tlsPassword, tlsPrefix, aclCommands))
	storetest.Run(t, func(t *testing.T) (snapshot.Store, func()) {
		prefix := fmt.Sprintf("%s%s:", tlsPrefix, ulid.Make())
		s, err := snapshot.NewRedis(ctxT(t), snapshot.RedisConfig{
			URL: "rediss://" + srv.Addr + "/0", TLS: srv.TLS(),
			Username: tlsUser, Password: tlsPassword, KeyPrefix: prefix,
		})
		if err != nil {
			t.Fatalf("NewRedis over TLS as %s: %v", tlsUser, err)
		}
		t.Cleanup(func() { s.Close() })
		wipe := func() { deleteKeys(t, srv.Admin, prefix) }
		t.Cleanup(wipe)
		return s, wipe
	})
	if n := srv.Admin.Do(ctxT(t), "ACL", "LOG").Val(); n != nil {
		if entries, ok := n.([]any); ok && len(entries) > 0 {
			t.Logf("ACL LOG (refusals the store ignores, such as CONFIG GET): %v", entries)
		}
	}
}

// TestRedisTLSURLCredentials: a rediss:// URL carrying the user and the
// password, with the TLS configuration that trusts the CA, works as the
// separate settings do.
func TestRedisTLSURLCredentials(t *testing.T) {
	srv := redistest.StartTLS(t, aclUser(tlsUser, tlsPassword, tlsPrefix, aclCommands))
	s, err := snapshot.NewRedis(ctxT(t), snapshot.RedisConfig{
		URL: "rediss://" + tlsUser + ":" + tlsPassword + "@" + srv.Addr + "/0", TLS: srv.TLS(), KeyPrefix: tlsPrefix + "url",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := snapshot.Partition{Topic: "tls.events", ID: 1}
	m, err := s.Claim(ctxT(t), p)
	if err != nil {
		t.Fatal(err)
	}
	id := ulid.Make()
	if err := s.Save(ctxT(t), p, m.Token, []snapshot.Snapshot{{AggregateID: id, Version: 3, Offset: 9, State: []byte("state")}}, 10); err != nil {
		t.Fatal(err)
	}
	got, mark, err := s.Load(ctxT(t), p, []ulid.ULID{id})
	if err != nil || string(got[id].State) != "state" || mark.Watermark != 10 {
		t.Fatalf("Load: %+v, %+v, %v", got, mark, err)
	}
}

// TestRedisTLSRefusals: each way of getting TLS or the ACL wrong fails
// NewRedis or the first call that needs the missing right, soon, with an
// error that says what went wrong and never shows the password.
func TestRedisTLSRefusals(t *testing.T) {
	users := []string{aclUser(tlsUser, tlsPassword, tlsPrefix, aclCommands)}
	for _, c := range aclCommands {
		users = append(users, aclUser("no-"+c, tlsPassword, tlsPrefix, slices.DeleteFunc(slices.Clone(aclCommands), func(x string) bool { return x == c })))
	}
	users = append(users, aclUser("other-keys", tlsPassword, "someone-else:", aclCommands))
	srv := redistest.StartTLS(t, users...)
	good := snapshot.RedisConfig{URL: "rediss://" + srv.Addr + "/0", TLS: srv.TLS(), Username: tlsUser, Password: tlsPassword, KeyPrefix: tlsPrefix + "refusals"}

	connect := func(t *testing.T, cfg snapshot.RedisConfig, limit time.Duration) error {
		t.Helper()
		started := time.Now()
		s, err := snapshot.NewRedis(ctxT(t), cfg)
		took := time.Since(started)
		if err == nil {
			s.Close()
			t.Fatal("NewRedis succeeded")
		}
		if took > limit {
			t.Errorf("NewRedis took %v to fail (limit %v): %v", took, limit, err)
		}
		if strings.Contains(err.Error(), tlsPassword) {
			t.Errorf("the error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), srv.Addr) {
			t.Errorf("the error does not name the server %s: %v", srv.Addr, err)
		}
		t.Logf("failed in %v: %v", took.Round(time.Millisecond), err)
		return err
	}

	t.Run("WrongPassword", func(t *testing.T) {
		cfg := good
		cfg.Password = "not-" + tlsPassword
		err := connect(t, cfg, 5*time.Second)
		if !strings.Contains(err.Error(), "WRONGPASS") || !strings.Contains(err.Error(), "refused the client") {
			t.Fatalf("want a refusal that says WRONGPASS: %v", err)
		}
	})
	t.Run("DefaultUserOff", func(t *testing.T) {
		cfg := good
		cfg.Username, cfg.Password = "", ""
		err := connect(t, cfg, 5*time.Second)
		if !strings.Contains(err.Error(), "NOAUTH") && !strings.Contains(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("want a refusal of the unauthenticated client: %v", err)
		}
	})
	t.Run("UntrustedCA", func(t *testing.T) {
		for _, tc := range []*tls.Config{nil, {MinVersion: tls.VersionTLS12}} { // the URL's default, and the system's roots
			cfg := good
			cfg.TLS = tc
			err := connect(t, cfg, 5*time.Second)
			if !strings.Contains(err.Error(), "certificate signed by unknown authority") {
				t.Fatalf("want a certificate error: %v", err)
			}
		}
	})
	t.Run("WrongServerName", func(t *testing.T) {
		cfg := good
		cfg.TLS = srv.TLS()
		cfg.TLS.ServerName = "redis.example.com"
		err := connect(t, cfg, 5*time.Second)
		if !strings.Contains(err.Error(), "certificate is valid for") {
			t.Fatalf("want a certificate name error: %v", err)
		}
	})
	t.Run("PlaintextToTLSPort", func(t *testing.T) {
		cfg := good
		cfg.URL, cfg.TLS = "redis://"+srv.Addr+"/0", nil
		cfg.DialTimeout, cfg.ReadTimeout, cfg.WriteTimeout = time.Second, time.Second, time.Second
		err := connect(t, cfg, 5*time.Second)
		if !strings.Contains(err.Error(), "does not answer") || !strings.Contains(err.Error(), "rediss://") {
			t.Fatalf("want an error that suggests TLS: %v", err)
		}
	})
	t.Run("KeysOutsideTheGrant", func(t *testing.T) {
		cfg := good
		cfg.Username = "other-keys"
		s, err := snapshot.NewRedis(ctxT(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Claim(ctxT(t), snapshot.Partition{Topic: "tls.events", ID: 0})
		if err == nil || !strings.Contains(err.Error(), "NOPERM") || !strings.Contains(err.Error(), "key") {
			t.Fatalf("Claim on keys the user may not touch: %v", err)
		}
		t.Log(err)
	})
	for _, c := range aclCommands {
		t.Run("Without/"+c, func(t *testing.T) {
			cfg := good
			cfg.Username = "no-" + c
			err := useStore(t, cfg, srv.Admin)
			if err == nil {
				t.Fatalf("the store worked without %s", c)
			}
			if !strings.Contains(err.Error(), "NOPERM") || !strings.Contains(strings.ToLower(err.Error()), "'"+c+"'") {
				t.Fatalf("the error does not name the refused command %s: %v", c, err)
			}
			if errors.Is(err, snapshot.ErrFenced) {
				t.Fatalf("a refused command taken for fencing: %v", err)
			}
			t.Log(err)
		})
	}
}

// useStore connects with cfg and runs every call of the store once, with
// the script cache flushed in between, so EVAL is needed as well as
// EVALSHA; it returns the first error.
func useStore(t *testing.T, cfg snapshot.RedisConfig, admin *redis.Client) error {
	t.Helper()
	s, err := snapshot.NewRedis(ctxT(t), cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	p := snapshot.Partition{Topic: "tls.events", ID: 2}
	id := ulid.Make()
	m, err := s.Claim(ctxT(t), p)
	if err != nil {
		return err
	}
	if err := s.Save(ctxT(t), p, m.Token, []snapshot.Snapshot{{AggregateID: id, Version: 1, State: []byte("x")}}, 1); err != nil {
		return err
	}
	if err := admin.ScriptFlush(ctxT(t)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctxT(t), p, m.Token, []snapshot.Snapshot{{AggregateID: id, Version: 2, State: []byte("y")}}, 2); err != nil {
		return err
	}
	if err := admin.ScriptFlush(ctxT(t)).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctxT(t), p); err != nil {
		return err
	}
	_, _, err = s.Load(ctxT(t), p, []ulid.ULID{id})
	return err
}
