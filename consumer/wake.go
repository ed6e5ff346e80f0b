package consumer

import (
	"context"
	"sync"
	"time"
)

// waker ends the processor's poll early, so partitions assigned while it
// waits for commands are restored at once rather than at the next flush
// interval. A wake that comes between two polls ends the next one at once:
// rebalance callbacks also run after AllowRebalance, before the loop polls
// again, and a lost wake would leave the partitions unrestored (and the
// processor not ready) for a whole flush interval.
type waker struct {
	mu      sync.Mutex
	cancel  context.CancelFunc // the poll in progress, nil between polls
	pending bool               // a wake came between polls
}

// arm returns the context of the next poll, ended by a wake or after d,
// and the function that ends it when the poll returns.
func (w *waker) arm(ctx context.Context, d time.Duration) (context.Context, func()) {
	poll, cancel := context.WithTimeout(ctx, d)
	w.mu.Lock()
	if w.pending {
		w.pending = false
		cancel()
	} else {
		w.cancel = cancel
	}
	w.mu.Unlock()
	return poll, func() {
		w.mu.Lock()
		w.cancel = nil
		w.mu.Unlock()
		cancel()
	}
}

// wake ends the poll in progress, or the next one.
func (w *waker) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		w.cancel()
		w.cancel = nil
		return
	}
	w.pending = true
}
