package snapshot

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Memory is a Store in process memory: what an application uses when it
// has no Redis, and what tests use. It survives a partition moving between
// processors of one process, not a restart. The zero value is not usable;
// call NewMemory.
type Memory struct {
	mu    sync.Mutex
	parts map[Partition]*memoryPartition
}

type memoryPartition struct {
	token     int64
	watermark int64
	hasW      bool
	snaps     map[ulid.ULID]Snapshot
}

var (
	_ Store    = (*Memory)(nil)
	_ Resetter = (*Memory)(nil)
)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{parts: map[Partition]*memoryPartition{}}
}

// Wipe drops everything the store holds, tokens and watermarks included, as
// a flushed or restarted Redis would: tests use it to check that losing the
// store loses no data.
func (m *Memory) Wipe() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.parts = map[Partition]*memoryPartition{}
}

// part returns p's data, creating it if create is set (else it may be nil).
// m.mu must be held.
func (m *Memory) part(p Partition, create bool) *memoryPartition {
	mp := m.parts[p]
	if mp == nil && create {
		mp = &memoryPartition{snaps: map[ulid.ULID]Snapshot{}}
		m.parts[p] = mp
	}
	return mp
}

// Claim implements Store.
func (m *Memory) Claim(ctx context.Context, p Partition) (Mark, error) {
	if err := ctx.Err(); err != nil {
		return Mark{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mp := m.part(p, true)
	// The clock is the floor, as in Redis, so a token given after Wipe is
	// still above the ones given before it.
	mp.token = max(mp.token+1, time.Now().UnixMicro())
	return Mark{Token: mp.token, Watermark: mp.watermark, HasWatermark: mp.hasW}, nil
}

// Load implements Store. The returned snapshots own their State.
func (m *Memory) Load(ctx context.Context, p Partition, ids []ulid.ULID) (map[ulid.ULID]Snapshot, Mark, error) {
	if err := ctx.Err(); err != nil {
		return nil, Mark{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[ulid.ULID]Snapshot, min(len(ids), 1024))
	mp := m.part(p, false)
	if mp == nil {
		return out, Mark{}, nil
	}
	for _, id := range ids {
		if s, ok := mp.snaps[id]; ok {
			s.State = slices.Clone(s.State)
			out[id] = s
		}
	}
	return out, Mark{Token: mp.token, Watermark: mp.watermark, HasWatermark: mp.hasW}, nil
}

// Save implements Store. It keeps no reference to the snapshots' State.
func (m *Memory) Save(ctx context.Context, p Partition, token int64, snaps []Snapshot, watermark int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mp, err := m.owned(ctx, p, token)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if old, ok := mp.snaps[s.AggregateID]; ok && old.Version > s.Version {
			continue
		}
		s.State = slices.Clone(s.State)
		mp.snaps[s.AggregateID] = s
	}
	if !mp.hasW || watermark > mp.watermark {
		mp.watermark, mp.hasW = watermark, true
	}
	return nil
}

// Reset implements Resetter.
func (m *Memory) Reset(ctx context.Context, p Partition, token int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mp, err := m.owned(ctx, p, token)
	if err != nil {
		return err
	}
	mp.watermark, mp.hasW, mp.snaps = 0, false, map[ulid.ULID]Snapshot{}
	return nil
}

// owned returns p's data if token is p's current token, ErrFenced if not,
// or ctx's error. m.mu must be held.
func (m *Memory) owned(ctx context.Context, p Partition, token int64) (*memoryPartition, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mp := m.part(p, false)
	if mp == nil || mp.token == 0 || mp.token != token {
		return nil, ErrFenced
	}
	return mp, nil
}
