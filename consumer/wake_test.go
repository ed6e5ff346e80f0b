package consumer

import (
	"context"
	"testing"
	"time"
)

// TestWaker: a wake ends the poll in progress, and a wake that comes
// between two polls (a partition assigned after one poll returned and
// before the next began) ends the next poll at once instead of being lost,
// which left new partitions unrestored, and the processor not ready, until
// the flush interval passed.
func TestWaker(t *testing.T) {
	ctx := context.Background()
	done := func(c context.Context) bool {
		select {
		case <-c.Done():
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	}
	var w waker

	poll, end := w.arm(ctx, time.Hour)
	if done(poll) {
		t.Fatal("a poll nothing woke ended")
	}
	w.wake()
	if !done(poll) {
		t.Fatal("a wake did not end the poll in progress")
	}
	end()

	w.wake() // between two polls
	poll, end = w.arm(ctx, time.Hour)
	if !done(poll) {
		t.Fatal("a wake between two polls was lost: the next poll waits")
	}
	end()

	poll, end = w.arm(ctx, time.Hour)
	defer end()
	if done(poll) {
		t.Fatal("one wake ended two polls")
	}
}
