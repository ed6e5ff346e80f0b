package interlock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/snapshot"
)

// redisStore returns a snapshot store on the test Redis (through url, the
// Redis itself or a proxy), with keys of its own.
func redisStore(t *testing.T, url string) (*snapshot.Redis, string) {
	t.Helper()
	_, prefix := redistest.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := snapshot.NewRedis(ctx, snapshot.RedisConfig{URL: url, KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, prefix
}

// balances returns each account's balance as the fold of the log says.
func balances(t *testing.T, brokers []string, topic string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, e := range kafkatest.ReadAll(t, brokers, topic) {
		switch header(e, producer.HeaderType) {
		case "MoneyDeposited":
			out[string(e.Key)] += depositAmount(t, e)
		case "AccountOpened":
			out[string(e.Key)] += 0
		}
	}
	return out
}

// TestRestartReplaysOnlySinceTheLastFlush: with snapshots in Redis, a new
// owner replays only the events written after the last flush.
func TestRestartReplaysOnlySinceTheLastFlush(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	store, _ := redisStore(t, redistest.URL(t))
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	opts := []interlock.Option{interlock.WithSnapshotStore(store), interlock.WithFlushInterval(time.Hour)}

	first := launch(t, interlock.NewBuilder(append([]interlock.Option{interlock.WithBrokers(brokers...), interlock.WithName(name),
		interlock.WithPartitions(2), interlock.WithLogger(testLogger())}, opts...)...).
		RegisterAggregate(bank.Accounts(), interlock.Snapshots(snapshot.EveryN(5))))
	ids := make([]ulid.ULID, 10)
	for i := range ids {
		ids[i] = open(t, ctx, first)
		for range 4 { // 5 events: a snapshot is due
			if _, err := interlock.Dispatch(ctx, first, deposit(ids[i], 10)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Snapshots are written just after the commit the reply reports.
	for deadline := time.Now().Add(10 * time.Second); first.Stats().SnapshotsWritten < int64(len(ids)) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	written := first.Stats().SnapshotsWritten
	// Three more events per account, never flushed (the interval is an hour).
	for _, id := range ids {
		for range 3 {
			if _, err := interlock.Dispatch(ctx, first, deposit(id, 1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if written < int64(len(ids)) {
		t.Fatalf("%d snapshots written, want one per account", written)
	}

	second := startApp(t, brokers, name, opts...)
	for _, id := range ids {
		res, err := interlock.Dispatch(ctx, second, deposit(id, 100))
		if err != nil || res.Value.Balance != 143 || res.Version != 9 {
			t.Fatalf("after restart: %+v, %v; want balance 143 at version 9", res, err)
		}
	}
	st := second.Stats()
	if want := int64(3 * len(ids)); st.EventsReplayed > want || st.FullReplays != 0 {
		t.Fatalf("the new owner replayed %d events (full replays %d); at most the %d written since the last flush", st.EventsReplayed, st.FullReplays, want)
	}
	if st.SnapshotsLoaded < int64(len(ids)) {
		t.Fatalf("%d snapshots loaded, want %d", st.SnapshotsLoaded, len(ids))
	}
}

// churn runs deposits at 20 accounts from several goroutines through an
// application with a 5-aggregate cache over store (so aggregates are
// evicted and loaded all the time), calls fault midway, and checks that no
// command failed and every state is the fold of the log. It returns the
// application, still running.
func churn(t *testing.T, store snapshot.Store, fault func(ctx context.Context)) *interlock.App {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name, interlock.WithSnapshotStore(store), interlock.WithCache(5, 1<<30),
		interlock.WithFlushInterval(50*time.Millisecond))
	ids := make([]ulid.ULID, 20)
	for i := range ids {
		ids[i] = open(t, ctx, app)
	}
	stop := make(chan struct{})
	var mu sync.Mutex
	var ok int
	var failures []error
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := interlock.Dispatch(callCtx, app, deposit(ids[i%len(ids)], 1))
				cancel()
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					ok++
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	fault(ctx)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if len(failures) != 0 || ok == 0 {
		t.Fatalf("%d commands failed (first: %v), %d succeeded", len(failures), errors.Join(failures[:min(1, len(failures))]...), ok)
	}
	checkFold(t, ctx, app, brokers, name+".bank-account.events", ids)
	if st := app.Stats(); st.Evictions == 0 {
		t.Fatalf("no eviction with a cache of 5 for 20 accounts: the test did not exercise loads: %+v", st)
	}
	return app
}

// checkFold checks that every account's balance, as the processor sees it,
// is the fold of the log.
func checkFold(t *testing.T, ctx context.Context, app *interlock.App, brokers []string, topic string, ids []ulid.ULID) {
	t.Helper()
	want := balances(t, brokers, topic)
	for _, id := range ids {
		res, err := interlock.Dispatch(ctx, app, deposit(id, 1))
		if err != nil {
			t.Fatal(err)
		}
		if res.Value.Balance != want[id.String()]+1 {
			t.Fatalf("account %s: balance %d, the fold of the log gives %d", id, res.Value.Balance-1, want[id.String()])
		}
	}
}

// TestRedisFlushedMidRun: the snapshot store loses everything while
// commands flow; commands keep succeeding and states stay the fold of the
// log.
func TestRedisFlushedMidRun(t *testing.T) {
	t.Parallel()
	client, _ := redistest.Client(t)
	store, prefix := redisStore(t, redistest.URL(t))
	churn(t, store, func(ctx context.Context) {
		keys, err := client.Keys(ctx, prefix+"*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("no snapshot keys under %s before the flush: %v", prefix, err)
		}
		if err := client.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRedisDownMidRun: Redis becomes unreachable while commands flow and
// comes back; no command fails because of it, and snapshots are written
// again once it is back.
func TestRedisDownMidRun(t *testing.T) {
	t.Parallel()
	proxy := redistest.NewProxy(t, redistest.URL(t))
	store, _ := redisStore(t, proxy.URL())
	app := churn(t, store, func(context.Context) {
		proxy.Down()
		time.Sleep(2 * time.Second)
		proxy.Up()
		time.Sleep(time.Second)
	})
	if st := app.Stats(); st.StoreErrors == 0 {
		t.Fatalf("no store error counted while Redis was down: %+v", st)
	}
	// Once writes to Redis resume, the aggregates are clean again and the
	// cache shrinks back to its bound.
	for deadline := time.Now().Add(15 * time.Second); app.Stats().Cached > 5 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if st := app.Stats(); st.Cached > 5 {
		t.Fatalf("the cache stays over its bound after Redis came back: snapshots are not written again: %+v", st)
	}
}

// TestCorruptSnapshotsIgnored: a snapshot with undecodable state and one of
// another state type (fingerprint) are ignored, the state is rebuilt from
// the log, and the store is repaired.
func TestCorruptSnapshotsIgnored(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	client, _ := redistest.Client(t)
	store, prefix := redisStore(t, redistest.URL(t))
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	build := func() *interlock.App {
		return launch(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
			interlock.WithLogger(testLogger()), interlock.WithSnapshotStore(store)).
			RegisterAggregate(bank.Accounts(), interlock.Snapshots(snapshot.EveryN(1))))
	}
	first := build()
	a, b := open(t, ctx, first), open(t, ctx, first)
	for _, id := range []ulid.ULID{a, b} {
		if _, err := interlock.Dispatch(ctx, first, deposit(id, 10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	key := func(id ulid.ULID) string {
		return fmt.Sprintf("%s{%s.bank-account.events/0}:s:%s", strings.TrimSuffix(prefix, ":")+":", name, id)
	}
	for id, field := range map[ulid.ULID]string{a: "s", b: "f"} {
		value := "not avro at all"
		if field == "f" {
			value = "12345" // another state type
		}
		n, err := client.HSet(ctx, key(id), field, value).Result()
		if err != nil || n != 0 {
			t.Fatalf("corrupting %s: %d, %v (the key layout changed?)", key(id), n, err)
		}
	}
	second := build()
	defer second.Close(ctx)
	for _, id := range []ulid.ULID{a, b} {
		res, err := interlock.Dispatch(ctx, second, deposit(id, 1))
		if err != nil || res.Value.Balance != 11 || res.Version != 3 {
			t.Fatalf("account %s after corrupt snapshot: %+v, %v; want balance 11 at version 3", id, res, err)
		}
	}
	if st := second.Stats(); st.SnapshotsIgnored == 0 || st.FullReplays == 0 {
		t.Fatalf("corrupt snapshots were not noticed: %+v", st)
	}
	// The rebuilt state was written back over the corrupt snapshots.
	for deadline := time.Now().Add(5 * time.Second); ; {
		f, _ := client.HGet(ctx, key(b), "f").Result()
		v, _ := client.HGet(ctx, key(b), "v").Result()
		if f != "12345" && v == "3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot of %s not repaired: f=%s v=%s", b, f, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
