package interlock_test

import (
	"context"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/producer"
)

func services(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("scripts/services.sh", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/services.sh %v: %v\n%s", args, err, out)
	}
}

// TestBrokerFailover runs on the three-node cluster: the broker leading the
// events partition is killed (SIGKILL) while commands are dispatched; the
// leader moves, and no acknowledged command is lost or doubled.
func TestBrokerFailover(t *testing.T) {
	brokers := kafkatest.Cluster(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	logs := &logbuf.Buffer{}
	defer func() {
		if t.Failed() {
			t.Logf("application log:\n%s", logs.Tail(80))
		}
	}()
	app := startApp(t, brokers, name, interlock.WithPartitions(1), interlock.WithReplicationFactor(3),
		interlock.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	id := open(t, ctx, app)
	events := name + ".bank-account.events"

	var mu sync.Mutex
	acked := map[string]int64{}
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := deposit(id, int64(w*1000+i+1))
				c.CommandID = ulid.Make()
				callCtx, cancel := context.WithTimeout(ctx, time.Minute)
				_, err := interlock.Dispatch(callCtx, app, c)
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				acked[c.CommandID.String()] = c.Amount
				mu.Unlock()
			}
		})
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitAcks := func(n int) {
		for ackedCount() < n && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAcks(50)
	leader := kafkatest.Leader(t, brokers, events)
	node := strconv.Itoa(int(leader))
	t.Cleanup(func() { services(t, "start-node", node) })
	services(t, "kill-node", node)
	before := ackedCount()
	waitAcks(before + 100)
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("commands stopped flowing after broker %s was killed: %d acknowledged before, %d after", node, before, ackedCount())
	}
	if now := kafkatest.Leader(t, brokers, events); now == leader {
		t.Fatalf("leader of %s is still broker %d", events, now)
	}
	t.Logf("broker %d killed: %d commands acknowledged before, %d in all, %d dispatches failed", leader, before, len(acked), failed.Load())

	seen := map[string]int{}
	var balance int64
	for i, e := range eventsOf(t, brokers, events, id) {
		if v := header(e, producer.HeaderVersion); v != strconv.Itoa(i+1) {
			t.Fatalf("event %d has version %s: versions must be contiguous", i, v)
		}
		seen[header(e, producer.HeaderCommandID)]++
		if header(e, producer.HeaderType) == "MoneyDeposited" {
			balance += depositAmount(t, e)
		}
	}
	for c, n := range seen {
		if n != 1 {
			t.Errorf("command %s has %d events", c, n)
		}
	}
	for c := range acked {
		if seen[c] != 1 {
			t.Errorf("acknowledged command %s has %d events", c, seen[c])
		}
	}
	res, err := interlock.Dispatch(ctx, app, deposit(id, 1))
	if err != nil || res.Value.Balance != balance+1 {
		t.Fatalf("after failover: %+v, %v; want balance %d (the fold of the log)", res, err, balance+1)
	}
}
