// Package sinktest is the conformance suite every projections.Sink must
// pass: what Apply keeps and what it discards, and, for sinks that keep
// checkpoints, that a stale checkpoint is refused with nothing written, even
// when two instances race.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/interlock-go/interlock/projections"
)

// Config tells the suite how to use a sink of handle type T.
type Config[T any] struct {
	// New returns a sink with empty storage, set up (its Setup called if
	// it has one).
	New func(t *testing.T) projections.Sink[T]
	// Put writes value under key with the sink's handle.
	Put func(ctx context.Context, tx T, key string, value int) error
	// Get reads the value under key; ok is false when it has none.
	Get func(ctx context.Context, key string) (value int, ok bool, err error)
}

// Run runs the suite.
func Run[T any](t *testing.T, cfg Config[T]) {
	ctx := context.Background()
	apply := func(s projections.Sink[T], cps []projections.Checkpoint, kv map[string]int, fail error) error {
		return s.Apply(ctx, "conformance", cps, func(ctx context.Context, tx T) error {
			for k, v := range kv {
				if err := cfg.Put(ctx, tx, k, v); err != nil {
					return err
				}
			}
			return fail
		})
	}
	get := func(t *testing.T, key string) (int, bool) {
		t.Helper()
		v, ok, err := cfg.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return v, ok
	}
	cp := func(p int32, prev, next int64) projections.Checkpoint {
		return projections.Checkpoint{Topic: "events", Partition: p, Prev: prev, Next: next}
	}

	t.Run("apply keeps writes", func(t *testing.T) {
		s := cfg.New(t)
		if err := apply(s, []projections.Checkpoint{cp(0, -1, 10)}, map[string]int{"a": 1, "b": 2}, nil); err != nil {
			t.Fatal(err)
		}
		if v, ok := get(t, "a"); !ok || v != 1 {
			t.Fatalf("a = %d, %v", v, ok)
		}
		if c, ok := s.(projections.Checkpointer); ok {
			got, err := c.Checkpoints(ctx, "conformance", "events")
			if err != nil || got[0] != 10 || len(got) != 1 {
				t.Fatalf("checkpoints %v, %v; want partition 0 at 10", got, err)
			}
			if other, err := c.Checkpoints(ctx, "other", "events"); err != nil || len(other) != 0 {
				t.Fatalf("another projection's checkpoints: %v, %v", other, err)
			}
		}
	})
	t.Run("a failing batch leaves nothing", func(t *testing.T) {
		s := cfg.New(t)
		boom := errors.New("handler failed")
		if err := apply(s, []projections.Checkpoint{cp(0, -1, 5)}, map[string]int{"a": 1}, boom); !errors.Is(err, boom) {
			t.Fatalf("err %v, want the handler's", err)
		}
		if _, ok := s.(projections.Checkpointer); !ok {
			return // at-least-once sinks need not undo: their writes are idempotent
		}
		if _, ok := get(t, "a"); ok {
			t.Fatal("a failed batch's write was kept")
		}
		if got, _ := s.(projections.Checkpointer).Checkpoints(ctx, "conformance", "events"); len(got) != 0 {
			t.Fatalf("a failed batch's checkpoint was kept: %v", got)
		}
	})
	// The rest is the contract of sinks that keep checkpoints (exactly
	// once); an at-least-once sink is done.
	if _, ok := cfg.New(t).(projections.Checkpointer); !ok {
		return
	}
	t.Run("stale checkpoints are refused", func(t *testing.T) {
		s := cfg.New(t)
		if err := apply(s, []projections.Checkpoint{cp(0, -1, 10), cp(1, -1, 3)}, map[string]int{"a": 1}, nil); err != nil {
			t.Fatal(err)
		}
		for _, c := range []projections.Checkpoint{cp(0, -1, 20), cp(0, 5, 20), cp(1, 10, 20)} {
			err := apply(s, []projections.Checkpoint{cp(1, 3, 4), c}, map[string]int{"a": 99}, nil)
			if !errors.Is(err, projections.ErrStale) {
				t.Fatalf("checkpoint %+v: err %v, want ErrStale", c, err)
			}
		}
		if v, _ := get(t, "a"); v != 1 {
			t.Fatalf("a stale batch wrote a = %d", v)
		}
		if err := apply(s, []projections.Checkpoint{cp(0, 10, 20), cp(1, 3, 4)}, map[string]int{"a": 2}, nil); err != nil {
			t.Fatalf("continuing from the stored checkpoints: %v", err)
		}
	})
	t.Run("two instances racing: one batch wins", func(t *testing.T) {
		s := cfg.New(t)
		if err := apply(s, []projections.Checkpoint{cp(0, -1, 1)}, nil, nil); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Apply(ctx, "conformance", []projections.Checkpoint{cp(0, 1, 2)}, func(ctx context.Context, tx T) error {
					time.Sleep(5 * time.Millisecond) // overlap
					return cfg.Put(ctx, tx, "winner", i)
				})
			}()
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, projections.ErrStale):
				t.Errorf("instance %d: %v", i, err)
			}
		}
		if won != 1 {
			t.Fatalf("%d batches from the same checkpoint committed, want 1 (%v)", won, fmt.Sprint(errs))
		}
	})
}
