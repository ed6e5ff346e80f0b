// Package storetest is the conformance suite of snapshot.Store: every
// store, in this module or outside it, must pass Run.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) (snapshot.Store, func()) {
//			s := snapshot.NewMemory()
//			return s, s.Wipe
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/snapshot"
)

// Run runs the conformance suite, each case in a parallel subtest.
// newStore is called once per subtest, with the subtest's t, and returns
// an empty store that no other subtest uses, and wipe, which makes the
// store lose all its data as a flushed or restarted Redis does. newStore
// registers with t.Cleanup whatever must be released.
func Run(t *testing.T, newStore func(t *testing.T) (store snapshot.Store, wipe func())) {
	tests := []struct {
		name string
		run  func(t *testing.T, s snapshot.Store, wipe func())
	}{
		{"Claim/TokensStrictlyIncrease", testTokensIncrease},
		{"Claim/KeepsWatermark", testClaimKeepsWatermark},
		{"Claim/TokenAfterWipeStillGreater", testTokenAfterWipe},
		{"Load/NothingBeforeAnyClaim", testLoadEmpty},
		{"Load/MarkFollowsClaimsAndSaves", testMarkFollows},
		{"Load/TenThousandIDs", testLoadMany},
		{"Save/RoundTrip", testRoundTrip},
		{"Save/CopiesState", testCopiesState},
		{"Save/VersionCompareAndSet", testVersionCAS},
		{"Save/DuplicateIDsHighestVersionWins", testDuplicates},
		{"Save/StaleTokenIsFencedAndWritesNothing", testFenced},
		{"Save/UnclaimedOrWipedIsFenced", testFencedUnclaimed},
		{"Save/WatermarkNeverMovesBack", testWatermarkMonotonic},
		{"Save/WatermarkOnly", testWatermarkOnly},
		{"Save/TwentyThousandSnapshots", testSaveMany},
		{"Reset/ForgetsWatermarkAndSnapshots", testReset},
		{"Partitions/Isolated", testIsolated},
		{"Concurrent/SavesLoadsAndClaims", testConcurrent},
		{"Context/Canceled", testCanceled},
		{"Context/DeadlineExceeded", testDeadline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, wipe := newStore(t)
			tt.run(t, s, wipe)
		})
	}
}

var (
	p0 = snapshot.Partition{Topic: "storetest.account.events", ID: 0}
	p1 = snapshot.Partition{Topic: "storetest.account.events", ID: 1}
	q0 = snapshot.Partition{Topic: "storetest.order.events", ID: 0}
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func claim(t *testing.T, s snapshot.Store, p snapshot.Partition) snapshot.Mark {
	t.Helper()
	m, err := s.Claim(ctxT(t), p)
	if err != nil {
		t.Fatalf("Claim(%s): %v", p, err)
	}
	if m.Token <= 0 {
		t.Fatalf("Claim(%s) gave token %d, want > 0", p, m.Token)
	}
	return m
}

func save(t *testing.T, s snapshot.Store, p snapshot.Partition, token int64, snaps []snapshot.Snapshot, w int64) {
	t.Helper()
	if err := s.Save(ctxT(t), p, token, snaps, w); err != nil {
		t.Fatalf("Save(%s, token %d, %d snapshots, watermark %d): %v", p, token, len(snaps), w, err)
	}
}

func load(t *testing.T, s snapshot.Store, p snapshot.Partition, ids ...ulid.ULID) (map[ulid.ULID]snapshot.Snapshot, snapshot.Mark) {
	t.Helper()
	got, m, err := s.Load(ctxT(t), p, ids)
	if err != nil {
		t.Fatalf("Load(%s, %d ids): %v", p, len(ids), err)
	}
	if got == nil {
		t.Fatalf("Load(%s) returned a nil map", p)
	}
	return got, m
}

func wantMark(t *testing.T, got snapshot.Mark, token, watermark int64, has bool) {
	t.Helper()
	want := snapshot.Mark{Token: token, Watermark: watermark, HasWatermark: has}
	if !has {
		want.Watermark = 0
	}
	if got != want {
		t.Fatalf("mark %+v, want %+v", got, want)
	}
}

func ids(n int) []ulid.ULID {
	out := make([]ulid.ULID, n)
	for i := range out {
		out[i] = ulid.Make()
	}
	return out
}

// snap is id's snapshot at version v: every field derives from (id, v), so
// a loaded snapshot shows which write it came from.
func snap(id ulid.ULID, v int64) snapshot.Snapshot {
	return snapshot.Snapshot{
		AggregateID: id, Version: v, Offset: 10*v + 3,
		Fingerprint: 0x9e3779b97f4a7c15 ^ uint64(v),
		State:       fmt.Appendf(nil, "state of %s at version %d", id, v),
	}
}

func snaps(ids []ulid.ULID, v int64) []snapshot.Snapshot {
	out := make([]snapshot.Snapshot, len(ids))
	for i, id := range ids {
		out[i] = snap(id, v)
	}
	return out
}

func equal(a, b snapshot.Snapshot) bool {
	return a.AggregateID == b.AggregateID && a.Version == b.Version && a.Offset == b.Offset &&
		a.Fingerprint == b.Fingerprint && bytes.Equal(a.State, b.State)
}

func wantSnap(t *testing.T, got map[ulid.ULID]snapshot.Snapshot, want snapshot.Snapshot) {
	t.Helper()
	g, ok := got[want.AggregateID]
	if !ok {
		t.Fatalf("snapshot of %s missing", want.AggregateID)
	}
	if !equal(g, want) {
		t.Fatalf("snapshot of %s: got version %d offset %d fingerprint %x state %.60q (%d bytes); want version %d offset %d fingerprint %x state %.60q (%d bytes)",
			want.AggregateID, g.Version, g.Offset, g.Fingerprint, g.State, len(g.State),
			want.Version, want.Offset, want.Fingerprint, want.State, len(want.State))
	}
}

func testTokensIncrease(t *testing.T, s snapshot.Store, _ func()) {
	last := int64(0)
	for i := range 20 {
		m := claim(t, s, p0)
		if m.Token <= last {
			t.Fatalf("claim %d: token %d after %d", i, m.Token, last)
		}
		last = m.Token
	}
	// The floor is the clock in microseconds.
	if floor := time.Now().Add(-time.Hour).UnixMicro(); last < floor {
		t.Fatalf("token %d is below the clock in microseconds (%d an hour ago)", last, floor)
	}
}

func testClaimKeepsWatermark(t *testing.T, s snapshot.Store, _ func()) {
	m := claim(t, s, p0)
	wantMark(t, m, m.Token, 0, false)
	save(t, s, p0, m.Token, nil, 42)
	m2 := claim(t, s, p0)
	wantMark(t, m2, m2.Token, 42, true)
	if m2.Token <= m.Token {
		t.Fatalf("token %d after %d", m2.Token, m.Token)
	}
}

func testTokenAfterWipe(t *testing.T, s snapshot.Store, wipe func()) {
	var last int64
	for range 5 {
		last = claim(t, s, p0).Token
	}
	save(t, s, p0, last, snaps(ids(3), 1), 7)
	// Claims faster than one per microsecond may take tokens ahead of the
	// clock; a store that lost its data is only back in the past by that.
	time.Sleep(2 * time.Millisecond)
	wipe()
	_, m := load(t, s, p0)
	wantMark(t, m, 0, 0, false)
	m = claim(t, s, p0)
	if m.Token <= last {
		t.Fatalf("token %d after the wipe, %d before it", m.Token, last)
	}
	wantMark(t, m, m.Token, 0, false)
}

func testLoadEmpty(t *testing.T, s snapshot.Store, _ func()) {
	got, m := load(t, s, p0, ids(5)...)
	if len(got) != 0 {
		t.Fatalf("loaded %d snapshots from an empty store", len(got))
	}
	wantMark(t, m, 0, 0, false)
	got, m = load(t, s, p0)
	if len(got) != 0 {
		t.Fatalf("loaded %d snapshots for no ids", len(got))
	}
	wantMark(t, m, 0, 0, false)
}

func testMarkFollows(t *testing.T, s snapshot.Store, _ func()) {
	a := claim(t, s, p0)
	_, m := load(t, s, p0)
	wantMark(t, m, a.Token, 0, false)
	save(t, s, p0, a.Token, snaps(ids(2), 1), 10)
	_, m = load(t, s, p0)
	wantMark(t, m, a.Token, 10, true)
	b := claim(t, s, p0)
	_, m = load(t, s, p0)
	wantMark(t, m, b.Token, 10, true)
	save(t, s, p0, b.Token, nil, 25)
	_, m = load(t, s, p0, ids(1)...)
	wantMark(t, m, b.Token, 25, true)
}

func testLoadMany(t *testing.T, s snapshot.Store, _ func()) {
	m := claim(t, s, p0)
	stored := ids(10_000)
	save(t, s, p0, m.Token, snaps(stored, 3), 1)
	missing := ids(50)
	got, mark := load(t, s, p0, append(append([]ulid.ULID(nil), stored...), missing...)...)
	if len(got) != len(stored) {
		t.Fatalf("loaded %d snapshots, want %d", len(got), len(stored))
	}
	for _, id := range stored {
		wantSnap(t, got, snap(id, 3))
	}
	wantMark(t, mark, m.Token, 1, true)
}

func testRoundTrip(t *testing.T, s snapshot.Store, _ func()) {
	m := claim(t, s, p0)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	id := ids(5)
	want := []snapshot.Snapshot{
		snap(id[0], 1),
		{AggregateID: id[1], Version: 1, Offset: 0, Fingerprint: 0, State: nil},
		{AggregateID: id[2], Version: 2, Offset: 5, Fingerprint: 1, State: []byte{}},
		{AggregateID: id[3], Version: math.MaxInt64, Offset: math.MaxInt64, Fingerprint: math.MaxUint64, State: []byte{0, 0xff, '\n', 0}},
		{AggregateID: id[4], Version: 7, Offset: 1234567, Fingerprint: 0xfedcba9876543210, State: big},
	}
	save(t, s, p0, m.Token, want, 100)
	got, mark := load(t, s, p0, id...)
	if len(got) != len(want) {
		t.Fatalf("loaded %d snapshots, want %d", len(got), len(want))
	}
	for _, w := range want {
		wantSnap(t, got, w)
	}
	wantMark(t, mark, m.Token, 100, true)
}

func testCopiesState(t *testing.T, s snapshot.Store, _ func()) {
	m := claim(t, s, p0)
	id := ids(1)[0]
	in := snap(id, 1)
	want := snap(id, 1)
	save(t, s, p0, m.Token, []snapshot.Snapshot{in}, 0)
	clear(in.State)
	got, _ := load(t, s, p0, id)
	wantSnap(t, got, want)
	clear(got[id].State)
	got, _ = load(t, s, p0, id)
	wantSnap(t, got, want)
}

func testVersionCAS(t *testing.T, s snapshot.Store, _ func()) {
	m := claim(t, s, p0)
	id := ids(1)[0]
	save(t, s, p0, m.Token, []snapshot.Snapshot{snap(id, 5)}, 0)

	older := snap(id, 3)
	save(t, s, p0, m.Token, []snapshot.Snapshot{older}, 0)
	got, _ := load(t, s, p0, id)
	wantSnap(t, got, snap(id, 5))

	// An equal version replaces: it repairs a corrupt or outdated snapshot.
	equalV := snap(id, 5)
	equalV.State, equalV.Fingerprint = []byte("the state rewritten at the same version"), 42
	save(t, s, p0, m.Token, []snapshot.Snapshot{equalV}, 0)
	got, _ = load(t, s, p0, id)
	wantSnap(t, got, equalV)

	save(t, s, p0, m.Token, []snapshot.Snapshot{snap(id, 6)}, 0)
	got, _ = load(t, s, p0, id)
	wantSnap(t, got, snap(id, 6))

	// A newer owner sees the same rule.
	m = claim(t, s, p0)
	save(t, s, p0, m.Token, []snapshot.Snapshot{snap(id, 4)}, 0)
	got, _ = load(t, s, p0, id)
	wantSnap(t, got, snap(id, 6))
}

func testDuplicates(t *testing.T, s snapshot.Store, _ func()) {
	m := claim(t, s, p0)
	id := ids(1)[0]
	save(t, s, p0, m.Token, []snapshot.Snapshot{snap(id, 2), snap(id, 9), snap(id, 4)}, 0)
	got, _ := load(t, s, p0, id, id)
	if len(got) != 1 {
		t.Fatalf("loaded %d snapshots, want 1", len(got))
	}
	wantSnap(t, got, snap(id, 9))
}

func wantFenced(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, snapshot.ErrFenced) {
		t.Fatalf("Save with a stale token: %v, want an error matching snapshot.ErrFenced", err)
	}
}

func testFenced(t *testing.T, s snapshot.Store, _ func()) {
	ctx := ctxT(t)
	old := claim(t, s, p0)
	kept := ids(3)
	save(t, s, p0, old.Token, snaps(kept, 1), 5)
	cur := claim(t, s, p0)

	// Small, and large enough that a store must split it.
	for _, n := range []int{0, 3, 5000} {
		fresh := ids(n)
		all := append(snaps(kept, 2), snaps(fresh, 1)...)
		wantFenced(t, s.Save(ctx, p0, old.Token, all, 1000))
		got, m := load(t, s, p0, append(append([]ulid.ULID(nil), kept...), fresh...)...)
		for _, id := range kept {
			wantSnap(t, got, snap(id, 1))
		}
		if len(got) != len(kept) {
			t.Fatalf("a fenced Save of %d snapshots stored %d new ones", len(all), len(got)-len(kept))
		}
		wantMark(t, m, cur.Token, 5, true)
	}
	// A token from the future is no better.
	wantFenced(t, s.Save(ctx, p0, cur.Token+1, snaps(kept, 3), 1000))
	// The current owner is not disturbed.
	save(t, s, p0, cur.Token, snaps(kept, 2), 6)
	got, m := load(t, s, p0, kept...)
	wantSnap(t, got, snap(kept[0], 2))
	wantMark(t, m, cur.Token, 6, true)
}

// testReset: a store that implements snapshot.Resetter forgets a
// partition's watermark and snapshots for its owner, and for no one else;
// the partition then fills again as new, a lower watermark included,
// even with snapshots of lower versions than the forgotten ones.
func testReset(t *testing.T, s snapshot.Store, _ func()) {
	rs, ok := s.(snapshot.Resetter)
	if !ok {
		t.Skip("the store does not implement snapshot.Resetter")
	}
	ctx := ctxT(t)
	old := claim(t, s, p0)
	kept := ids(3)
	save(t, s, p0, old.Token, snaps(kept, 7), 50)
	save(t, s, p1, claim(t, s, p1).Token, snaps(kept, 7), 50)
	cur := claim(t, s, p0)
	wantFenced(t, rs.Reset(ctx, p0, old.Token))
	got, m := load(t, s, p0, kept...)
	if len(got) != len(kept) || !m.HasWatermark || m.Watermark != 50 {
		t.Fatalf("a fenced Reset changed the partition: %d snapshots, mark %+v", len(got), m)
	}
	if err := rs.Reset(ctx, p0, cur.Token); err != nil {
		t.Fatal(err)
	}
	got, m = load(t, s, p0, kept...)
	if len(got) != 0 {
		t.Fatalf("%d snapshots left after Reset", len(got))
	}
	wantMark(t, m, cur.Token, 0, false)
	save(t, s, p0, cur.Token, snaps(kept[:1], 2), 3)
	got, m = load(t, s, p0, kept...)
	wantSnap(t, got, snap(kept[0], 2))
	if len(got) != 1 {
		t.Fatalf("%d snapshots after Reset and one Save, want 1", len(got))
	}
	wantMark(t, m, cur.Token, 3, true)
	// Other partitions keep theirs.
	got, m = load(t, s, p1, kept...)
	if len(got) != len(kept) || m.Watermark != 50 {
		t.Fatalf("Reset of p0 changed p1: %d snapshots, mark %+v", len(got), m)
	}
}

func testFencedUnclaimed(t *testing.T, s snapshot.Store, wipe func()) {
	ctx := ctxT(t)
	id := ids(2)
	for _, token := range []int64{0, 1, time.Now().UnixMicro()} {
		wantFenced(t, s.Save(ctx, p0, token, snaps(id, 1), 9))
	}
	got, m := load(t, s, p0, id...)
	if len(got) != 0 {
		t.Fatalf("a Save to an unclaimed partition stored %d snapshots", len(got))
	}
	wantMark(t, m, 0, 0, false)

	a := claim(t, s, p0)
	save(t, s, p0, a.Token, snaps(id[:1], 1), 9)
	wipe()
	wantFenced(t, s.Save(ctx, p0, a.Token, snaps(id, 2), 20))
	got, m = load(t, s, p0, id...)
	if len(got) != 0 {
		t.Fatalf("a Save after the store lost its data stored %d snapshots", len(got))
	}
	wantMark(t, m, 0, 0, false)
}

func testWatermarkMonotonic(t *testing.T, s snapshot.Store, _ func()) {
	m := claim(t, s, p0)
	id := ids(1)
	steps := []struct{ save, want int64 }{{100, 100}, {50, 100}, {100, 100}, {101, 101}, {0, 101}, {-1, 101}, {1 << 40, 1 << 40}}
	for i, st := range steps {
		save(t, s, p0, m.Token, snaps(id, int64(i+1)), st.save)
		got, mark := load(t, s, p0, id...)
		wantMark(t, mark, m.Token, st.want, true)
		wantSnap(t, got, snap(id[0], int64(i+1))) // a lower watermark does not stop the snapshots
	}
	m = claim(t, s, p0)
	wantMark(t, m, m.Token, 1<<40, true)
}

func testWatermarkOnly(t *testing.T, s snapshot.Store, _ func()) {
	m := claim(t, s, p0)
	save(t, s, p0, m.Token, nil, 0)
	_, mark := load(t, s, p0)
	wantMark(t, mark, m.Token, 0, true)
	save(t, s, p0, m.Token, []snapshot.Snapshot{}, 3)
	_, mark = load(t, s, p0)
	wantMark(t, mark, m.Token, 3, true)
}

func testSaveMany(t *testing.T, s snapshot.Store, _ func()) {
	m := claim(t, s, p0)
	all := ids(20_000)
	save(t, s, p0, m.Token, snaps(all, 1), 77)
	for start := 0; start < len(all); start += 5000 {
		batch := all[start:min(start+5000, len(all))]
		got, mark := load(t, s, p0, batch...)
		if len(got) != len(batch) {
			t.Fatalf("loaded %d of %d snapshots", len(got), len(batch))
		}
		for _, id := range batch {
			wantSnap(t, got, snap(id, 1))
		}
		wantMark(t, mark, m.Token, 77, true)
	}
}

func testIsolated(t *testing.T, s snapshot.Store, wipe func()) {
	id := ids(1)[0]
	parts := []snapshot.Partition{p0, p1, q0}
	tokens := make([]int64, len(parts))
	for i, p := range parts {
		tokens[i] = claim(t, s, p).Token
	}
	for i, p := range parts {
		save(t, s, p, tokens[i], []snapshot.Snapshot{snap(id, int64(10*(i+1)))}, int64(100*(i+1)))
	}
	for i, p := range parts {
		got, m := load(t, s, p, id)
		wantSnap(t, got, snap(id, int64(10*(i+1))))
		wantMark(t, m, tokens[i], int64(100*(i+1)), true)
	}
	// A claim of p1 fences only p1's owner.
	claim(t, s, p1)
	save(t, s, p0, tokens[0], []snapshot.Snapshot{snap(id, 11)}, 101)
	wantFenced(t, s.Save(ctxT(t), p1, tokens[1], []snapshot.Snapshot{snap(id, 21)}, 201))
	got, m := load(t, s, p1, id)
	wantSnap(t, got, snap(id, 20))
	wantMark(t, m, m.Token, 200, true)
}

func testConcurrent(t *testing.T, s snapshot.Store, _ func()) {
	ctx := ctxT(t)
	m := claim(t, s, p0)
	pool := ids(40)
	const workers, rounds = 16, 25
	var (
		mu    sync.Mutex
		maxV  = map[ulid.ULID]int64{}
		maxW  = int64(-1)
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				batch := make([]snapshot.Snapshot, 1+rng.IntN(8))
				for i := range batch {
					batch[i] = snap(pool[rng.IntN(len(pool))], 1+rng.Int64N(1000))
				}
				wm := rng.Int64N(1_000_000)
				if err := s.Save(ctx, p0, m.Token, batch, wm); err != nil {
					fail(fmt.Errorf("worker %d: Save: %w", w, err))
					return
				}
				mu.Lock()
				for _, sn := range batch {
					maxV[sn.AggregateID] = max(maxV[sn.AggregateID], sn.Version)
				}
				maxW = max(maxW, wm)
				mu.Unlock()
				got, mark, err := s.Load(ctx, p0, pool[:1+rng.IntN(len(pool))])
				if err != nil {
					fail(fmt.Errorf("worker %d: Load: %w", w, err))
					return
				}
				if mark.Token != m.Token || !mark.HasWatermark || mark.Watermark < wm {
					fail(fmt.Errorf("worker %d: mark %+v after saving watermark %d with token %d", w, mark, wm, m.Token))
					return
				}
				for id, sn := range got {
					if !equal(sn, snap(id, sn.Version)) {
						fail(fmt.Errorf("worker %d: snapshot of %s mixes writes: %+v", w, id, sn))
						return
					}
				}
			}
		})
	}
	// Other partitions' claims do not fence p0.
	wg.Go(func() {
		for range 20 {
			if _, err := s.Claim(ctx, p1); err != nil {
				fail(fmt.Errorf("Claim(%s): %w", p1, err))
				return
			}
		}
	})
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	got, mark := load(t, s, p0, pool...)
	wantMark(t, mark, m.Token, maxW, true)
	if len(got) != len(maxV) {
		t.Fatalf("loaded %d snapshots, %d aggregates were saved", len(got), len(maxV))
	}
	for id, v := range maxV {
		wantSnap(t, got, snap(id, v))
	}
}

func testCanceled(t *testing.T, s snapshot.Store, _ func()) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	checkCtx(t, s, ctx, context.Canceled)
}

func testDeadline(t *testing.T, s snapshot.Store, _ func()) {
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	checkCtx(t, s, ctx, context.DeadlineExceeded)
}

// checkCtx checks that every method returns want with ctx, which is done,
// and that Save wrote nothing.
func checkCtx(t *testing.T, s snapshot.Store, ctx context.Context, want error) {
	m := claim(t, s, p0)
	save(t, s, p0, m.Token, nil, 1)
	if _, err := s.Claim(ctx, p0); !errors.Is(err, want) {
		t.Errorf("Claim: %v, want %v", err, want)
	}
	if _, _, err := s.Load(ctx, p0, ids(3)); !errors.Is(err, want) {
		t.Errorf("Load: %v, want %v", err, want)
	}
	id := ids(2)
	if err := s.Save(ctx, p0, m.Token, snaps(id, 1), 50); !errors.Is(err, want) {
		t.Errorf("Save: %v, want %v", err, want)
	}
	got, mark := load(t, s, p0, id...)
	if len(got) != 0 {
		t.Errorf("Save with a done ctx stored %d snapshots", len(got))
	}
	wantMark(t, mark, m.Token, 1, true)
}
