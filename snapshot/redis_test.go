package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"

	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/snapshot"
	"github.com/interlock-go/interlock/snapshot/storetest"
)

// newRedis returns a store on the test Redis under a key prefix of t's
// own, a client of the same Redis, and the prefix.
func newRedis(t testing.TB) (*snapshot.Redis, *redis.Client, string) {
	t.Helper()
	c, prefix := redistest.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := snapshot.NewRedis(ctx, snapshot.RedisConfig{URL: redistest.URL(t), KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Registered after redistest's cleanup, so it runs first, and faster.
	t.Cleanup(func() { deleteKeys(t, c, prefix) })
	return s, c, prefix
}

// deleteKeys deletes every key that starts with prefix.
func deleteKeys(t testing.TB, c *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 5000).Iterator()
	var keys []string
	flush := func() {
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				t.Errorf("deleting %d keys under %s: %v", len(keys), prefix, err)
			}
			keys = keys[:0]
		}
	}
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			flush()
		}
	}
	flush()
	if err := iter.Err(); err != nil {
		t.Errorf("scanning the keys under %s: %v", prefix, err)
	}
}

func TestRedisConformance(t *testing.T) {
	redistest.URL(t) // skip the parent, not 19 subtests, when Redis is not configured
	storetest.Run(t, func(t *testing.T) (snapshot.Store, func()) {
		s, c, prefix := newRedis(t)
		return s, func() { deleteKeys(t, c, prefix) }
	})
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRedisWrongCredentials: a refused password gives an error that names
// the server and not the password.
func TestRedisWrongCredentials(t *testing.T) {
	url := redistest.URL(t)
	const secret = "s3cret-not-the-password"
	for _, cfg := range []snapshot.RedisConfig{
		{URL: url, Username: "interlock-no-such-user", Password: secret},
		{URL: strings.Replace(url, "redis://", "redis://interlock-no-such-user:"+secret+"@", 1)},
	} {
		s, err := snapshot.NewRedis(ctxT(t), cfg)
		if err == nil {
			s.Close()
			t.Fatal("NewRedis with a wrong password succeeded")
		}
		msg := err.Error()
		if strings.Contains(msg, secret) {
			t.Fatalf("the error leaks the password: %v", err)
		}
		opts, _ := redis.ParseURL(url)
		if !strings.Contains(msg, opts.Addr) || !strings.Contains(strings.ToUpper(msg), "WRONGPASS") {
			t.Fatalf("the error does not say which server refused what: %v", err)
		}
		t.Log(err)
	}
}

func TestRedisConfigErrors(t *testing.T) {
	const secret = "s3cret-pw"
	for _, tc := range []struct {
		name string
		cfg  snapshot.RedisConfig
		want string
	}{
		{"no URL", snapshot.RedisConfig{}, "no URL"},
		{"bad scheme", snapshot.RedisConfig{URL: "http://u:" + secret + "@localhost:6379"}, "invalid URL"},
		{"bad port", snapshot.RedisConfig{URL: "redis://u:" + secret + "@localhost:port/0"}, "invalid URL"},
		{"bad URL", snapshot.RedisConfig{URL: "redis://u:" + secret + "@[::1/0"}, "invalid URL"},
		{"braces in prefix", snapshot.RedisConfig{URL: "redis://localhost:6379", KeyPrefix: "app{1}"}, "key prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := snapshot.NewRedis(context.Background(), tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("NewRedis succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q: want it to say %q and not to hold the password", err, tc.want)
			}
		})
	}
}

// TestRedisUnreachable: a Redis that refuses connections, or accepts them
// and never answers, fails NewRedis within its timeouts, naming it.
func TestRedisUnreachable(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // and never answer
		}
	}()
	for _, tc := range []struct {
		name, addr string
		limit      time.Duration
	}{
		{"refused", "127.0.0.1:1", time.Second},
		{"silent", silent.Addr().String(), 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := time.Now()
			s, err := snapshot.NewRedis(context.Background(), snapshot.RedisConfig{
				URL: "redis://" + tc.addr + "/0", DialTimeout: time.Second, ReadTimeout: 200 * time.Millisecond,
			})
			took := time.Since(started)
			if err == nil {
				s.Close()
				t.Fatal("NewRedis succeeded")
			}
			if !strings.Contains(err.Error(), tc.addr) {
				t.Fatalf("the error does not name %s: %v", tc.addr, err)
			}
			if took > tc.limit {
				t.Fatalf("NewRedis took %v to fail (limit %v): %v", took, tc.limit, err)
			}
			t.Logf("failed in %v: %v", took.Round(time.Millisecond), err)
		})
	}
}

// TestRedisDown: a store whose Redis goes away fails its calls within the
// timeouts, with errors that name the partition and the operation, and
// works again when Redis is back.
func TestRedisDown(t *testing.T) {
	proxy := redistest.NewProxy(t, redistest.URL(t))
	_, prefix := redistest.Client(t)
	s, err := snapshot.NewRedis(ctxT(t), snapshot.RedisConfig{URL: proxy.URL(), KeyPrefix: prefix,
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := snapshot.Partition{Topic: "down.events", ID: 4}
	m, err := s.Claim(ctxT(t), p)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Down()
	started := time.Now()
	err = s.Save(ctxT(t), p, m.Token, nil, 1)
	if err == nil || !strings.Contains(err.Error(), "save "+p.String()) || errors.Is(err, snapshot.ErrFenced) {
		t.Fatalf("Save with Redis down: %v", err)
	}
	if took := time.Since(started); took > 5*time.Second {
		t.Fatalf("Save with Redis down took %v", took)
	}
	proxy.Up()
	if err := s.Save(ctxT(t), p, m.Token, nil, 1); err != nil {
		t.Fatalf("Save with Redis back: %v", err)
	}
}

// crc16 is Redis Cluster's key hash (CRC-16/XMODEM).
func crc16(b string) uint16 {
	var crc uint16
	for i := range len(b) {
		crc ^= uint16(b[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// hashTag is the part of key Redis Cluster hashes.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// TestRedisKeyLayout: every key of a partition has the partition's hash
// tag, so they share one cluster slot; other partitions have other tags.
func TestRedisKeyLayout(t *testing.T) {
	s, c, prefix := newRedis(t)
	ctx := ctxT(t)
	if crc16("123456789") != 0x31c3 {
		t.Fatal("crc16 is not CRC-16/XMODEM")
	}
	parts := []snapshot.Partition{{Topic: "bank.account.events", ID: 0}, {Topic: "bank.account.events", ID: 1}, {Topic: "shop.order.events", ID: 0}}
	id := ulid.Make()
	for _, p := range parts {
		m, err := s.Claim(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, p, m.Token, []snapshot.Snapshot{{AggregateID: id, Version: 1}, {AggregateID: ulid.Make(), Version: 1}}, 5); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	byTag := map[string][]string{}
	for _, k := range keys {
		byTag[hashTag(k)] = append(byTag[hashTag(k)], k)
	}
	if len(keys) != 3*len(parts) || len(byTag) != len(parts) {
		t.Fatalf("%d keys with %d hash tags, want 3 keys for each of %d partitions: %q", len(keys), len(byTag), len(parts), keys)
	}
	for _, p := range parts {
		tag := fmt.Sprintf("%s/%d", p.Topic, p.ID)
		ks := byTag[tag]
		want := map[string]bool{prefix + "{" + tag + "}:meta": true, prefix + "{" + tag + "}:s:" + id.String(): true}
		for _, k := range ks {
			delete(want, k)
			if crc16(hashTag(k))%16384 != crc16(tag)%16384 {
				t.Fatalf("key %s is not in the slot of %s", k, tag)
			}
		}
		if len(ks) != 3 || len(want) != 0 {
			t.Fatalf("partition %s: keys %q; missing %v", p, ks, want)
		}
		if typ := c.Type(ctx, prefix+"{"+tag+"}:meta").Val(); typ != "hash" {
			t.Fatalf("meta key is a %s", typ)
		}
	}
}

// TestRedisTokenIsServerTime: tokens come from the Redis server's clock.
func TestRedisTokenIsServerTime(t *testing.T) {
	s, c, _ := newRedis(t)
	ctx := ctxT(t)
	now, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Claim(ctx, snapshot.Partition{Topic: "time.events"})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.UnixMicro(m.Token).Sub(now); d < 0 || d > 5*time.Second {
		t.Fatalf("token %d is %v from the server's time %v", m.Token, d, now)
	}
}

// TestRedisCorruptSnapshot: a snapshot Redis holds in a shape the store
// did not write makes Load fail, naming it; a newer one replaces it.
func TestRedisCorruptSnapshot(t *testing.T) {
	s, c, prefix := newRedis(t)
	ctx := ctxT(t)
	p := snapshot.Partition{Topic: "corrupt.events", ID: 2}
	m, err := s.Claim(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	id := ulid.Make()
	key := prefix + "{corrupt.events/2}:s:" + id.String()
	for _, fields := range [][]string{
		{"v", "x", "o", "1", "f", "1", "s", "secret state"},
		{"v", "1", "o", "1", "s", "secret state"},
		{"v", "1", "o", "1", "f", "-1", "s", "secret state"},
	} {
		c.Del(ctx, key)
		if err := c.HSet(ctx, key, fields).Err(); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Load(ctx, p, []ulid.ULID{ulid.Make(), id})
		if err == nil || !strings.Contains(err.Error(), "load "+p.String()) || !strings.Contains(err.Error(), id.String()) ||
			strings.Contains(err.Error(), "secret") {
			t.Fatalf("Load of %q: %v", fields, err)
		}
	}
	c.HSet(ctx, key, "v", "not a number", "f", "1")
	if err := s.Save(ctx, p, m.Token, []snapshot.Snapshot{{AggregateID: id, Version: 1, State: []byte("ok")}}, 1); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Load(ctx, p, []ulid.ULID{id})
	if err != nil || string(got[id].State) != "ok" {
		t.Fatalf("after a Save over a corrupt snapshot: %+v, %v", got, err)
	}
}

// TestRedisFailedChunkKeepsWatermark: when one chunk of a large Save
// fails, the Save fails and the watermark stays where it was.
func TestRedisFailedChunkKeepsWatermark(t *testing.T) {
	s, c, prefix := newRedis(t)
	ctx := ctxT(t)
	p := snapshot.Partition{Topic: "chunk.events", ID: 1}
	m, err := s.Claim(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, p, m.Token, nil, 10); err != nil {
		t.Fatal(err)
	}
	snaps := make([]snapshot.Snapshot, 3500)
	for i := range snaps {
		snaps[i] = snapshot.Snapshot{AggregateID: ulid.Make(), Version: 1}
	}
	// Not a hash: the first chunk's script fails on it.
	bad := prefix + "{chunk.events/1}:s:" + snaps[10].AggregateID.String()
	if err := c.Set(ctx, bad, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err = s.Save(ctx, p, m.Token, snaps, 20)
	if err == nil || errors.Is(err, snapshot.ErrFenced) || !strings.Contains(err.Error(), "save "+p.String()) {
		t.Fatalf("Save over a broken key: %v", err)
	}
	t.Log(err)
	got, mark, err := s.Load(ctx, p, []ulid.ULID{snaps[len(snaps)-1].AggregateID})
	if err != nil || mark.Watermark != 10 {
		t.Fatalf("after a failed chunk: mark %+v, %v; want the watermark still at 10", mark, err)
	}
	if len(got) != 0 {
		t.Fatal("the last chunk was written although an earlier one failed")
	}
}

// TestRedisScriptCacheFlushed: after SCRIPT FLUSH (or a Redis restart)
// the scripts are sent again, pipelined ones included.
func TestRedisScriptCacheFlushed(t *testing.T) {
	s, c, _ := newRedis(t)
	ctx := ctxT(t)
	p := snapshot.Partition{Topic: "flush.events"}
	for range 2 {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Skipf("SCRIPT FLUSH refused: %v", err)
		}
		m, err := s.Claim(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		snaps := make([]snapshot.Snapshot, 2500) // several chunks
		for i := range snaps {
			snaps[i] = snapshot.Snapshot{AggregateID: ulid.Make(), Version: 1}
		}
		if err := s.Save(ctx, p, m.Token, snaps, 9); err != nil {
			t.Fatal(err)
		}
		got, mark, err := s.Load(ctx, p, []ulid.ULID{snaps[0].AggregateID, snaps[len(snaps)-1].AggregateID})
		if err != nil || len(got) != 2 || mark.Watermark != 9 {
			t.Fatalf("after SCRIPT FLUSH: %d snapshots, %+v, %v", len(got), mark, err)
		}
	}
}

// TestRedisGivenClient: a store on a given client uses it and leaves it
// open.
func TestRedisGivenClient(t *testing.T) {
	c, prefix := redistest.Client(t)
	s, err := snapshot.NewRedis(ctxT(t), snapshot.RedisConfig{Client: c, KeyPrefix: strings.TrimSuffix(prefix, ":")})
	if err != nil {
		t.Fatal(err)
	}
	p := snapshot.Partition{Topic: "given.events", ID: 1}
	if _, err := s.Claim(ctxT(t), p); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctxT(t), prefix+"{given.events/1}:meta").Result(); err != nil || n != 1 {
		t.Fatalf("the meta key under %s: %d, %v (the client must stay open)", prefix, n, err)
	}
}

// BenchmarkRedisSave saves 1 000 snapshots of 200 bytes per operation.
func BenchmarkRedisSave(b *testing.B) {
	s, _, _ := newRedis(b)
	ctx := context.Background()
	p := snapshot.Partition{Topic: "bench.events"}
	m, err := s.Claim(ctx, p)
	if err != nil {
		b.Fatal(err)
	}
	snaps := benchSnapshots(1000)
	b.SetBytes(int64(len(snaps) * 200))
	for i := 0; b.Loop(); i++ {
		for j := range snaps {
			snaps[j].Version = int64(i + 1) // newer each time: every snapshot is written
		}
		if err := s.Save(ctx, p, m.Token, snaps, int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(snaps))/b.Elapsed().Seconds(), "snapshots/s")
}

// BenchmarkRedisLoad loads 1 000 snapshots of 200 bytes per operation.
func BenchmarkRedisLoad(b *testing.B) {
	s, _, _ := newRedis(b)
	ctx := context.Background()
	p := snapshot.Partition{Topic: "bench.events"}
	m, err := s.Claim(ctx, p)
	if err != nil {
		b.Fatal(err)
	}
	snaps := benchSnapshots(1000)
	if err := s.Save(ctx, p, m.Token, snaps, 1); err != nil {
		b.Fatal(err)
	}
	ids := make([]ulid.ULID, len(snaps))
	for i, sn := range snaps {
		ids[i] = sn.AggregateID
	}
	b.SetBytes(int64(len(snaps) * 200))
	for b.Loop() {
		got, _, err := s.Load(ctx, p, ids)
		if err != nil || len(got) != len(ids) {
			b.Fatalf("%d snapshots, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(b.N*len(snaps))/b.Elapsed().Seconds(), "snapshots/s")
}

func benchSnapshots(n int) []snapshot.Snapshot {
	out := make([]snapshot.Snapshot, n)
	for i := range out {
		state := make([]byte, 200)
		for j := range state {
			state[j] = byte(i + j)
		}
		out[i] = snapshot.Snapshot{AggregateID: ulid.Make(), Version: 1, Offset: int64(i), Fingerprint: 42, State: state}
	}
	return out
}

// TestRedisBackInTime: a Redis that comes back from an older dump (the
// owner's token, an older save count, older snapshots; here with the
// same watermark) is seen by the client that saved since: its Load shows
// no owner, as a store that lost its data, and its Save writes nothing,
// fenced. A new claim takes the store as it is.
func TestRedisBackInTime(t *testing.T) {
	s, c, prefix := newRedis(t)
	ctx := ctxT(t)
	p := snapshot.Partition{Topic: "bank.account.events", ID: 3}
	m, err := s.Claim(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	id := ulid.Make()
	save := func(version, w int64) error {
		return s.Save(ctx, p, m.Token, []snapshot.Snapshot{{AggregateID: id, Version: version, Offset: version - 1, State: []byte("state")}}, w)
	}
	if err := save(2, 2); err != nil {
		t.Fatal(err)
	}
	keys := []string{prefix + "{bank.account.events/3}:meta", prefix + "{bank.account.events/3}:s:" + id.String()}
	dump := map[string]map[string]string{}
	for _, k := range keys {
		dump[k] = c.HGetAll(ctx, k).Val()
	}
	if err := save(4, 2); err != nil { // the watermark held back by another aggregate
		t.Fatal(err)
	}
	// Redis restarts from the dump.
	for k, fields := range dump {
		c.Del(ctx, k)
		c.HSet(ctx, k, fields)
	}
	snaps, mark, err := s.Load(ctx, p, []ulid.ULID{id})
	if err != nil {
		t.Fatal(err)
	}
	if mark.Token == m.Token {
		t.Fatalf("load after the store went back: token %d and %s at version %d trusted, want no owner", mark.Token, id, snaps[id].Version)
	}
	if err := save(5, 6); !errors.Is(err, snapshot.ErrFenced) {
		t.Fatalf("save after the store went back: %v, want ErrFenced", err)
	}
	if w := c.HGet(ctx, keys[0], "w").Val(); w != "2" {
		t.Fatalf("the fenced save moved the watermark to %s", w)
	}
	// A new owner takes the store as it is.
	m2, err := s.Claim(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, p, m2.Token, nil, 3); err != nil {
		t.Fatalf("save after a new claim: %v", err)
	}
	if _, mark, err := s.Load(ctx, p, nil); err != nil || mark.Token != m2.Token || mark.Watermark != 3 {
		t.Fatalf("load after a new claim: %+v, %v", mark, err)
	}
}
