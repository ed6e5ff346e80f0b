package interlock_test

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/redistest"
)

// TestBoundedCache: 100k aggregates through a processor whose cache holds
// 10k. Memory stays within the bound (plus one poll's worth of new
// aggregates) and every command still sees the right state.
func TestBoundedCache(t *testing.T) {
	if testing.Short() {
		t.Skip("100k commands")
	}
	t.Parallel()
	const n, capacity, poll = 100_000, 10_000, 1000
	brokers := kafkatest.Brokers(t)
	store, _ := redisStore(t, redistest.URL(t))
	app, _, _ := startCounters(t, interlock.WithSnapshotStore(store), interlock.WithCache(capacity, 1<<30),
		interlock.WithFlushInterval(200*time.Millisecond))
	_ = brokers
	ctx := ctxT(t)

	ids := make([]ulid.ULID, n)
	for i := range ids {
		ids[i] = interlock.NewID()
	}
	var peak atomic.Int64
	sampling := make(chan struct{})
	go func() {
		for {
			select {
			case <-sampling:
				return
			case <-time.After(5 * time.Millisecond):
				peak.Store(max(peak.Load(), app.Stats().Cached))
			}
		}
	}()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
				if _, err := interlock.Send(ctx, app, Incr{interlock.ToResult[int64](ids[i])}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for app.Stats().CommandsApplied < n && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	close(sampling)
	st := app.Stats()
	if st.CommandsApplied < n {
		t.Fatalf("only %d of %d commands applied: %+v", st.CommandsApplied, n, st)
	}
	if p := peak.Load(); p > capacity+poll || st.Evictions == 0 {
		t.Fatalf("cache peaked at %d aggregates (bound %d + a poll of %d), %d evictions", p, capacity, poll, st.Evictions)
	}
	for _, i := range rand.Perm(n)[:300] {
		id := ids[i]
		r, err := interlock.Dispatch(ctx, app, Incr{interlock.ToResult[int64](id)})
		if err != nil || r.Value != 2 || r.Version != 2 {
			t.Fatalf("aggregate %s: %+v, %v; want 2 at version 2 (one Incr before)", id, r, err)
		}
	}
	t.Logf("peak cache %d, evictions %d, snapshots written %d, loaded %d", peak.Load(), st.Evictions, st.SnapshotsWritten, app.Stats().SnapshotsLoaded)
}
