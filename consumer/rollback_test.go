package consumer

import (
	"context"
	"maps"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/snapshot"
)

// dumpStore is a snapshot store that can go back to a copy of itself, as
// a Redis restarted from an older dump (RDB) does: same owner's token,
// older watermark and snapshots.
type dumpStore struct {
	mu    sync.Mutex
	mark  snapshot.Mark
	snaps map[ulid.ULID]snapshot.Snapshot
	saved *dumpStore
}

func (s *dumpStore) Claim(ctx context.Context, p snapshot.Partition) (snapshot.Mark, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mark.Token++
	return s.mark, nil
}

func (s *dumpStore) Load(ctx context.Context, p snapshot.Partition, ids []ulid.ULID) (map[ulid.ULID]snapshot.Snapshot, snapshot.Mark, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[ulid.ULID]snapshot.Snapshot{}
	for _, id := range ids {
		if sn, ok := s.snaps[id]; ok {
			out[id] = sn
		}
	}
	return out, s.mark, nil
}

func (s *dumpStore) Save(ctx context.Context, p snapshot.Partition, token int64, snaps []snapshot.Snapshot, w int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token != s.mark.Token {
		return snapshot.ErrFenced
	}
	for _, sn := range snaps {
		if old, ok := s.snaps[sn.AggregateID]; !ok || old.Version <= sn.Version {
			s.snaps[sn.AggregateID] = sn
		}
	}
	if !s.mark.HasWatermark || w > s.mark.Watermark {
		s.mark.Watermark, s.mark.HasWatermark = w, true
	}
	return nil
}

func (s *dumpStore) dump() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saved = &dumpStore{mark: s.mark, snaps: maps.Clone(s.snaps)}
}

func (s *dumpStore) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mark, s.snaps = s.saved.mark, s.saved.snaps
}

// TestStoreBackInTime: a store that went back to an older state of this
// owner's (its watermark below the one this owner stored) is not trusted:
// its snapshots are older than what the owner wrote, and the partition is
// rebuilt from the log.
func TestStoreBackInTime(t *testing.T) {
	ctx := context.Background()
	route, state := testRoute(t, "rollback")
	store := &dumpStore{snaps: map[ulid.ULID]snapshot.Snapshot{}}
	p := testProcessor(route, state, Config{Store: store})
	part := p.partitionOf(route.CommandsTopic, 0)
	if _, ok := p.claim(ctx, part); !ok {
		t.Fatal("claim failed")
	}
	id := ulid.Make()
	save := func(version, balance, w int64) {
		b, err := part.agg.State.Encode(&bank.Account{Open: true, Balance: balance})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Save(ctx, part.sp, part.token, []snapshot.Snapshot{{AggregateID: id, Version: version, Offset: w - 1,
			Fingerprint: part.agg.Fingerprint, State: encodeFrame(b, nil)}}, w); err != nil {
			t.Fatal(err)
		}
		part.savedW = max(part.savedW, w) // as flush records it
	}
	save(2, 1, 2)
	store.dump()
	save(4, 3, 4)
	if !p.load(ctx, part, []ulid.ULID{id}) || part.entries[id].inst.Version != 4 {
		t.Fatal("the store as written is not trusted")
	}
	delete(part.entries, id)
	store.restart()
	if p.load(ctx, part, []ulid.ULID{id}) {
		t.Fatalf("a store back at watermark 2, below the 4 this owner stored, was trusted: %s at version %d", id, part.entries[id].inst.Version)
	}
}
