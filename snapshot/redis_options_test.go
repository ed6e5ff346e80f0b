package snapshot

import (
	"crypto/tls"
	"testing"
	"time"
)

func TestRedisOptions(t *testing.T) {
	custom := &tls.Config{MinVersion: tls.VersionTLS13}
	for _, tc := range []struct {
		name                string
		cfg                 RedisConfig
		user, pass, tlsName string
		dial, read, write   time.Duration
	}{
		{name: "defaults", cfg: RedisConfig{URL: "redis://h:6379/0"},
			dial: 2 * time.Second, read: time.Second, write: time.Second},
		{name: "URL timeouts and credentials", cfg: RedisConfig{URL: "redis://u:p@h:6379/0?dial_timeout=5s&read_timeout=3s&write_timeout=4s"},
			user: "u", pass: "p", dial: 5 * time.Second, read: 3 * time.Second, write: 4 * time.Second},
		{name: "config overrides URL", cfg: RedisConfig{URL: "rediss://u:p@h:6380/0?read_timeout=3s", Username: "acl", Password: "pw",
			DialTimeout: time.Millisecond, ReadTimeout: 2 * time.Millisecond, WriteTimeout: -1},
			user: "acl", pass: "pw", tlsName: "h", dial: time.Millisecond, read: 2 * time.Millisecond, write: -1},
		{name: "TLS on redis://", cfg: RedisConfig{URL: "redis://cache.internal:6379", TLS: custom},
			tlsName: "cache.internal", dial: 2 * time.Second, read: time.Second, write: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := redisOptions(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if o.Username != tc.user || o.Password != tc.pass {
				t.Errorf("credentials %q/%q, want %q/%q", o.Username, o.Password, tc.user, tc.pass)
			}
			if o.DialTimeout != tc.dial || o.ReadTimeout != tc.read || o.WriteTimeout != tc.write {
				t.Errorf("timeouts %v %v %v, want %v %v %v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, tc.dial, tc.read, tc.write)
			}
			switch {
			case tc.tlsName == "" && o.TLSConfig != nil:
				t.Errorf("TLS without asking")
			case tc.tlsName != "" && (o.TLSConfig == nil || o.TLSConfig.ServerName != tc.tlsName):
				t.Errorf("TLS %+v, want server name %q", o.TLSConfig, tc.tlsName)
			}
			if !o.ContextTimeoutEnabled || o.DialerRetries != 1 {
				t.Errorf("ContextTimeoutEnabled %v, DialerRetries %d", o.ContextTimeoutEnabled, o.DialerRetries)
			}
		})
	}
	if custom.ServerName != "" {
		t.Fatal("the caller's tls.Config was modified")
	}
}

func TestChunk(t *testing.T) {
	snaps := make([]Snapshot, 2500)
	snaps[1].State = make([]byte, chunkBytes) // a chunk of its own
	calls := chunk("p:{t/0}:", "7", snaps)
	total := 0
	for i, c := range calls {
		n := len(c.keys) - 1
		total += n
		if n < 1 || n > chunkSnapshots || len(c.args) != 3+4*n || c.keys[0] != "p:{t/0}:meta" || c.args[0] != "7" || c.args[1] != "" {
			t.Fatalf("call %d: %d keys, %d args, %q %v", i, len(c.keys), len(c.args), c.keys[0], c.args[:2])
		}
	}
	if total != len(snaps) || len(calls) != 5 {
		t.Fatalf("%d snapshots in %d calls, want %d in 5", total, len(calls), len(snaps))
	}
	if calls := chunk("p:", "7", nil); len(calls) != 1 || len(calls[0].keys) != 1 {
		t.Fatalf("no snapshots: %d calls", len(calls))
	}
}
