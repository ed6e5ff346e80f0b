package interlock_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/snapshot"
)

// envProcessor, when set, makes the test binary run a processor (see
// runProcessor) instead of the tests, so a test can kill it.
const envProcessor = "INTERLOCK_TEST_PROCESSOR"

// processorConfig is what the parent test tells the processor process.
type processorConfig struct {
	Brokers     []string
	Name        string
	RedisURL    string
	RedisPrefix string
}

func TestMain(m *testing.M) {
	if cfg, ok := os.LookupEnv(envProcessor); ok {
		if err := runProcessor(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "processor:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runProcessor runs a bank processor with Redis snapshots (every second
// event of an aggregate, and no periodic flush), prints "ready" once every
// partition it owns is restored, and runs until its stdin closes. It
// never closes the application: it is there to be killed.
func runProcessor(raw string) error {
	var cfg processorConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return err
	}
	ctx := context.Background()
	// Its log is kept, and printed only when it does not get ready.
	var logs logbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if os.Getenv("INTERLOCK_TEST_LOG") != "" {
		logger = testLogger()
	}
	store, err := snapshot.NewRedis(ctx, snapshot.RedisConfig{URL: cfg.RedisURL, KeyPrefix: cfg.RedisPrefix})
	if err != nil {
		return err
	}
	app, err := interlock.NewBuilder(interlock.WithBrokers(cfg.Brokers...), interlock.WithName(cfg.Name), interlock.WithPartitions(2),
		interlock.WithRoles(interlock.RoleProcess), interlock.WithLogger(logger), interlock.WithSnapshotStore(store),
		interlock.WithFlushInterval(time.Hour), interlock.WithSessionTimeout(6*time.Second), interlock.WithTransactionTimeout(5*time.Second),
	).RegisterAggregate(bank.Accounts(), interlock.Snapshots(snapshot.EveryN(2))).Build()
	if err != nil {
		return err
	}
	if err := app.Start(ctx); err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); !app.Ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after a minute (stats %+v, lag %v); its log:\n%s", app.Stats(), app.Lag(), logs.Tail(200))
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// TestRetryAfterProcessorCrash (invariant 3): a processor process applies
// a command and is killed (SIGKILL: no final flush, no leaving the group)
// before its state reached the snapshot store; the command retried with
// the same command ID is answered by the next owner with the first
// outcome, and applied once. The next owner loads the older snapshot and
// finds the command's record in the events it replays above it.
func TestRetryAfterProcessorCrash(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	_, prefix := redistest.Client(t)
	url := redistest.URL(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gateway := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(2),
		interlock.WithRoles(interlock.RoleDispatch), interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()))

	raw, err := json.Marshal(processorConfig{Brokers: brokers, Name: name, RedisURL: url, RedisPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envProcessor+"="+string(raw))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		ready <- strings.TrimSpace(line)
		io.Copy(io.Discard, r) // nothing more, until it dies
		exited <- child.Wait()
	}()
	t.Cleanup(func() {
		stdin.Close()
		child.Process.Kill()
	})
	select {
	case line := <-ready:
		if line != "ready" {
			t.Fatalf("the processor process did not get ready: %q", line)
		}
	case <-ctx.Done():
		t.Fatal("the processor process did not get ready in time")
	}

	// Version 2 is snapshotted (every second event, written after its
	// commit, before the next batch); version 3, the command to retry, is
	// only in the log.
	id := open(t, ctx, gateway)
	if _, err := interlock.Dispatch(ctx, gateway, deposit(id, 10)); err != nil {
		t.Fatal(err)
	}
	cmd := bank.DepositMoney{CommandOf: deposit(id, 40).WithID(ulid.Make()), Amount: 40}
	first, err := interlock.Dispatch(ctx, gateway, cmd)
	if err != nil || first.Version != 3 || first.Value.Balance != 50 {
		t.Fatalf("first try: %+v, %v; want balance 50 at version 3", first, err)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited

	// What the crash left in Redis: the snapshot at version 2, and a
	// watermark below the retried command's event.
	store, err := snapshot.NewRedis(ctx, snapshot.RedisConfig{URL: url, KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	at := first.Positions[0]
	snaps, mark, err := store.Load(ctx, snapshot.Partition{Topic: at.Topic, ID: at.Partition}, []ulid.ULID{id})
	if err != nil || snaps[id].Version != 2 || !mark.HasWatermark || mark.Watermark > at.Offset {
		t.Fatalf("after the crash Redis holds %+v, %+v (%v); want the snapshot at version 2 and a watermark at most %d", snaps[id], mark, err, at.Offset)
	}
	next := startWith(t, interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(2),
		interlock.WithRoles(interlock.RoleProcess), interlock.WithLogger(testLogger()), interlock.WithSnapshotStore(store),
		interlock.WithSessionTimeout(6*time.Second), interlock.WithTransactionTimeout(5*time.Second),
	).RegisterAggregate(bank.Accounts(), interlock.Snapshots(snapshot.EveryN(2))))
	again, err := interlock.Dispatch(ctx, gateway, cmd)
	if err != nil {
		t.Fatalf("retry after the crash: %v", err)
	}
	if !reflect.DeepEqual(again, first) {
		t.Fatalf("retry after the crash: %+v, want the first outcome %+v", again, first)
	}
	if st := next.Stats(); st.Duplicates != 1 || st.SnapshotsLoaded == 0 || st.FullReplays != 0 || st.EventsReplayed == 0 {
		t.Fatalf("the next owner should load the older snapshot and find the command in the events replayed above it: %+v", st)
	}
	res, err := interlock.Dispatch(ctx, gateway, deposit(id, 1))
	if err != nil || res.Value.Balance != 51 || res.Version != 4 {
		t.Fatalf("after the retry: %+v, %v; want balance 51 at version 4 (the retried deposit once)", res, err)
	}
	if n := eventsOfCommand(t, brokers, name+".bank-account.events", id, cmd.CommandID); n != 1 {
		t.Fatalf("the retried command has %d events, want 1", n)
	}
}
