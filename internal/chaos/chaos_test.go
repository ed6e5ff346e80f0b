//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/pgtest"
	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/internal/services"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
)

const (
	accounts    = 8
	initial     = 1000
	partitions  = 6
	maxWorkers  = 3
	callTimeout = 20 * time.Second
)

// faults counts the faults injected, by kind.
type faults struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *faults) add(kind string) {
	f.mu.Lock()
	f.n[kind]++
	f.mu.Unlock()
}

// workers are the worker processes, by slot.
type workers struct {
	t       *testing.T
	bin     string
	args    []string
	env     []string
	dir     string
	mu      sync.Mutex
	running map[int]*exec.Cmd
	starts  int
}

func (w *workers) start(slot int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running[slot] != nil {
		return
	}
	w.starts++
	logf, err := os.OpenFile(filepath.Join(w.dir, fmt.Sprintf("worker-%d.log", slot)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command(w.bin, append(w.args, "--instance", fmt.Sprintf("w%d", slot))...)
	cmd.Env = append(os.Environ(), w.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("starting worker %d: %v", slot, err)
	}
	w.running[slot] = cmd
	go func() {
		cmd.Wait()
		logf.Close()
		w.mu.Lock()
		if w.running[slot] == cmd {
			delete(w.running, slot)
		}
		w.mu.Unlock()
	}()
}

// stop stops the worker in slot with sig and waits for it to exit.
func (w *workers) stop(slot int, sig syscall.Signal) bool {
	w.mu.Lock()
	cmd := w.running[slot]
	w.mu.Unlock()
	if cmd == nil {
		return false
	}
	cmd.Process.Signal(sig)
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		w.mu.Lock()
		gone := w.running[slot] != cmd
		w.mu.Unlock()
		if gone {
			return true
		}
	}
	cmd.Process.Kill()
	return true
}

func (w *workers) slots() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int
	for s := range w.running {
		out = append(out, s)
	}
	return out
}

func (w *workers) stopAll() {
	for _, s := range w.slots() {
		w.stop(s, syscall.SIGTERM)
	}
}

func servicesSh(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("scripts/services.sh", args...)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("scripts/services.sh %v: %v\n%s", args, err, out)
	}
}

// servicesOK runs scripts/services.sh and reports whether it succeeded.
func servicesOK(args ...string) bool {
	cmd := exec.Command("scripts/services.sh", args...)
	cmd.Dir = "../.."
	return cmd.Run() == nil
}

func TestChaos(t *testing.T) {
	duration := 45 * time.Second
	if v := os.Getenv("INTERLOCK_CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("INTERLOCK_CHAOS_DURATION: %v", err)
		}
		duration = d
	}
	brokers := kafkatest.Cluster(t)
	name := kafkatest.Name(t)
	pool, pgSchema := pgtest.Pool(t)
	redisURL := services.Lookup(t, services.EnvRedis, "Redis")
	proxy := redistest.NewProxy(t, redisURL)
	dir := t.TempDir()
	bin := filepath.Join(dir, "worker")
	if out, err := exec.Command("go", "build", "-o", bin, "./worker").CombinedOutput(); err != nil {
		t.Fatalf("building the worker: %v\n%s", err, out)
	}
	dsn := services.Lookup(t, services.EnvPostgres, "PostgreSQL")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	ws := &workers{t: t, bin: bin, dir: dir, running: map[int]*exec.Cmd{},
		args: []string{"--brokers", strings.Join(brokers, ","), "--name", name, "--redis", proxy.URL(), "--partitions", strconv.Itoa(partitions)},
		env:  []string{"CHAOS_POSTGRES_DSN=" + dsn + sep + "search_path=" + pgSchema}}
	defer func() {
		ws.stopAll()
		if t.Failed() {
			for i := range maxWorkers {
				b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("worker-%d.log", i)))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("worker %d, last lines:\n%s", i, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), duration+6*time.Minute)
	defer cancel()
	// The client: dispatches only, and follows the projections passively;
	// it creates the topics (replicated three times) and the read model's
	// tables before any worker starts.
	client, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name),
		interlock.WithPartitions(partitions), interlock.WithReplicationFactor(3), interlock.WithRoles(interlock.RoleDispatch),
		interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))).
		RegisterAggregate(bank.Accounts()).RegisterAggregate(bank.Transfers()).
		RegisterProjection(bank.TransferSaga()).RegisterProjection(bank.Balances("balances", pool)).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer client.Close(context.Background())
	ws.start(0)

	// Every call is retried with its command ID until it gets an answer:
	// a retry is applied at most once.
	var ops, retries atomic.Int64
	call := func(do func(ctx context.Context) error) error {
		for {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			err := do(cctx)
			cancel()
			if err == nil || errors.Is(err, interlock.ErrRejected) || ctx.Err() != nil {
				ops.Add(1)
				return err
			}
			retries.Add(1)
			time.Sleep(200 * time.Millisecond)
		}
	}
	ids := make([]ulid.ULID, accounts)
	for i := range ids {
		ids[i] = interlock.NewID()
		open := bank.OpenAccount{Command: interlock.To(ids[i]), Owner: fmt.Sprint("owner-", i)}
		if err := call(func(ctx context.Context) error { _, err := interlock.Dispatch(ctx, client, open); return err }); err != nil {
			t.Fatal(err)
		}
		dep := bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](ids[i]).WithID(interlock.NewID()), Amount: initial}
		if err := call(func(ctx context.Context) error { _, err := interlock.Dispatch(ctx, client, dep); return err }); err != nil {
			t.Fatal(err)
		}
	}
	ghost := interlock.NewID() // never opened: credits to it are refused and refunded

	var mu sync.Mutex
	acked := map[string]bool{} // command IDs that got a success reply
	var transfers []ulid.ULID
	load, stopLoad := context.WithTimeout(ctx, duration)
	defer stopLoad()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for load.Err() == nil {
				var err error
				var cmdID ulid.ULID
				if w < 3 {
					from, to := ids[r.IntN(accounts)], ids[r.IntN(accounts)]
					if r.IntN(6) == 0 {
						to = ghost
					}
					if from == to {
						continue
					}
					tr := interlock.NewID()
					c := bank.StartTransfer{Command: interlock.To(tr).WithID(interlock.NewID()), From: from, To: to, Amount: int64(1 + r.IntN(300))}
					cmdID = c.CommandID
					err = call(func(ctx context.Context) error { _, err := interlock.Dispatch(ctx, client, c); return err })
					if err == nil {
						mu.Lock()
						transfers = append(transfers, tr)
						mu.Unlock()
					}
				} else {
					c := bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](ids[r.IntN(accounts)]).WithID(interlock.NewID()), Amount: int64(1 + r.IntN(50))}
					cmdID = c.CommandID
					err = call(func(ctx context.Context) error { _, err := interlock.Dispatch(ctx, client, c); return err })
				}
				if err == nil {
					mu.Lock()
					acked[cmdID.String()] = true
					mu.Unlock()
				}
			}
		})
	}

	// Faults, one at a time, until the load ends.
	fs := &faults{n: map[string]int{}}
	rdb := redis.NewClient(mustParseRedis(t, redisURL))
	defer rdb.Close()
	// Each kind of fault in turn, in a random order each round, one every
	// 2 to 4 s, until the load ends.
	r := rand.New(rand.NewPCG(42, uint64(time.Now().UnixNano())))
	kinds := []string{"kill", "scale", "broker", "flush", "cut", "kill", "scale"}
	var brokerDown atomic.Bool
	var brokerBack sync.WaitGroup
	for round := 0; load.Err() == nil; round++ {
		r.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		for _, kind := range kinds {
			time.Sleep(time.Duration(2000+r.IntN(2000)) * time.Millisecond)
			if load.Err() != nil {
				break
			}
			switch kind {
			case "kill": // SIGKILL a worker, restart it
				slots := ws.slots()
				if len(slots) == 0 {
					ws.start(0)
					continue
				}
				s := slots[r.IntN(len(slots))]
				ws.stop(s, syscall.SIGKILL)
				fs.add("worker killed (SIGKILL)")
				time.Sleep(time.Duration(r.IntN(1500)) * time.Millisecond)
				ws.start(s)
			case "scale": // out to three, or back to one
				if slots := ws.slots(); len(slots) < maxWorkers {
					for s := range maxWorkers {
						ws.start(s)
					}
					fs.add("scaled out to 3 workers")
				} else {
					for _, s := range slots[1:] {
						ws.stop(s, syscall.SIGTERM)
					}
					fs.add("scaled in to 1 worker")
				}
			case "broker": // a broker down and back, while other faults go on
				if !brokerDown.CompareAndSwap(false, true) {
					continue
				}
				node := strconv.Itoa(1 + r.IntN(3))
				servicesSh(t, "stop-node", node)
				fs.add("broker stopped and restarted")
				brokerBack.Add(1)
				go func() {
					defer brokerBack.Done()
					defer brokerDown.Store(false)
					time.Sleep(3 * time.Second)
					// A loaded machine can take longer than the script's
					// wait for the node to rejoin: ask again.
					for try := 0; try < 3 && !servicesOK("start-node", node); try++ {
					}
				}()
			case "flush":
				if err := rdb.FlushAll(ctx).Err(); err != nil {
					t.Errorf("FLUSHALL: %v", err)
				}
				fs.add("Redis flushed")
			case "cut":
				proxy.Down()
				fs.add("Redis cut off for 3 s")
				time.Sleep(3 * time.Second)
				proxy.Up()
			}
		}
	}
	wg.Wait()
	brokerBack.Wait()
	if !servicesOK("status") {
		t.Error("the cluster did not come back")
	}
	proxy.Up()
	if len(ws.slots()) == 0 {
		ws.start(0)
	}

	// Settle: every transfer ends, the read model catches up.
	transfersTopic, accountsTopic := name+".bank-transfer.events", name+".bank-account.events"
	mu.Lock()
	started := append([]ulid.ULID(nil), transfers...)
	mu.Unlock()
	var status map[string]string
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(time.Second) {
		status = map[string]string{}
		for _, e := range kafkatest.ReadAll(t, brokers, transfersTopic) {
			status[string(e.Key)] = header(e, producer.HeaderType)
		}
		open := 0
		for _, id := range started {
			if s := status[id.String()]; s != "TransferCompleted" && s != "TransferFailed" {
				open++
			}
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d transfers still open 3 minutes after the load", open, len(started))
			break
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		st, err := client.Projection("balances").Status(ctx)
		if err == nil && st.CaughtUp {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the balances read model did not catch up: %+v, %v", st, err)
			break
		}
	}

	// The invariants, from the log.
	var violations []string
	violate := func(format string, args ...any) { violations = append(violations, fmt.Sprintf(format, args...)) }
	accountEvents := kafkatest.ReadAll(t, brokers, accountsTopic)
	transferEvents := kafkatest.ReadAll(t, brokers, transfersTopic)
	byCommand := map[string]int{}
	for _, evs := range [][]*kgo.Record{accountEvents, transferEvents} {
		versions := map[string]int64{}
		for _, e := range evs {
			v, _ := strconv.ParseInt(header(e, producer.HeaderVersion), 10, 64)
			if v != versions[string(e.Key)]+1 {
				violate("aggregate %s: version %d follows %d", e.Key, v, versions[string(e.Key)])
			}
			versions[string(e.Key)] = v
			byCommand[header(e, producer.HeaderCommandID)]++
		}
	}
	for c, n := range byCommand {
		if n != 1 { // every command of the bank emits one event
			violate("command %s has %d events", c, n)
		}
	}
	mu.Lock()
	for c := range acked {
		if byCommand[c] != 1 {
			violate("command %s got a success reply but has %d events", c, byCommand[c])
		}
	}
	nAcked := len(acked)
	mu.Unlock()
	codec := schema.Avro()
	folded := map[string]bank.AccountBalance{}
	var deposited, total int64
	for _, e := range accountEvents {
		b := folded[string(e.Key)]
		switch typ := header(e, producer.HeaderType); typ {
		case "TransferDebitRefused", "TransferCreditRefused":
		default:
			b.Events++ // the events the read model counts
		}
		switch header(e, producer.HeaderType) {
		case "AccountOpened":
			b.Owner = decode[bank.AccountOpened](t, codec, e).Owner
		case "MoneyDeposited":
			a := decode[bank.MoneyDeposited](t, codec, e).Amount
			b.Balance += a
			deposited += a
		case "TransferDebited":
			b.Balance -= decode[bank.TransferDebited](t, codec, e).Amount
		case "TransferCredited":
			b.Balance += decode[bank.TransferCredited](t, codec, e).Amount
		case "TransferRefunded":
			b.Balance += decode[bank.TransferRefunded](t, codec, e).Amount
		}
		folded[string(e.Key)] = b
	}
	for id, b := range folded {
		total += b.Balance
		if b.Balance < 0 {
			violate("account %s has a negative balance %d", id, b.Balance)
		}
	}
	if total != deposited {
		violate("money not conserved: accounts hold %d, %d was deposited", total, deposited)
	}
	rows, err := pool.Query(ctx, `SELECT id, owner, balance, events FROM bank_balances`)
	if err != nil {
		t.Fatal(err)
	}
	model := map[string]bank.AccountBalance{}
	var id string
	var b bank.AccountBalance
	if _, err := pgx.ForEachRow(rows, []any{&id, &b.Owner, &b.Balance, &b.Events}, func() error { model[id] = b; return nil }); err != nil {
		t.Fatal(err)
	}
	for id, want := range folded {
		if want.Owner == "" {
			continue // never opened (the ghost): not in the read model
		}
		if model[id] != want {
			violate("read model of account %s is %+v, the fold of the log %+v", id, model[id], want)
		}
	}
	if len(model) != accounts {
		violate("read model has %d accounts, want %d", len(model), accounts)
	}
	// Nothing stuck in an open transaction.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		hw, err1 := adm.ListEndOffsets(ctx, accountsTopic, transfersTopic)
		ls, err2 := adm.ListCommittedOffsets(ctx, accountsTopic, transfersTopic)
		open := []string{}
		if err1 == nil && err2 == nil {
			hw.Each(func(o kadm.ListedOffset) {
				if l, _ := ls.Lookup(o.Topic, o.Partition); l.Offset != o.Offset {
					open = append(open, fmt.Sprintf("%s/%d (stable %d, end %d)", o.Topic, o.Partition, l.Offset, o.Offset))
				}
			})
		}
		if err1 == nil && err2 == nil && len(open) == 0 {
			break
		}
		if time.Now().After(deadline) {
			violate("open transactions remain: %v %v %v", open, err1, err2)
			break
		}
	}

	completed, failed := 0, 0
	for _, s := range status {
		switch s {
		case "TransferCompleted":
			completed++
		case "TransferFailed":
			failed++
		}
	}
	fs.mu.Lock()
	var faultList []string
	nFaults := 0
	for k, n := range fs.n {
		faultList = append(faultList, fmt.Sprintf("%s: %d", k, n))
		nFaults += n
	}
	fs.mu.Unlock()
	summary := fmt.Sprintf("chaos: %s of load; %d operations (%d acknowledged, %d retries); %d transfers (%d completed, %d failed); %d account events; %d worker starts; %d faults injected (%s); %d violations",
		duration, ops.Load(), nAcked, retries.Load(), len(started), completed, failed, len(accountEvents), ws.starts, nFaults, strings.Join(faultList, ", "), len(violations))
	fmt.Println(summary)
	t.Log(summary)
	for _, v := range violations {
		t.Error(v)
	}
	if nFaults == 0 || len(started) == 0 {
		t.Error("the run injected no fault or made no transfer: it proves nothing")
	}
}

func header(r *kgo.Record, key string) string {
	v, _ := producer.Header(r, key)
	return string(v)
}

func decode[E any](t *testing.T, codec schema.Codec, r *kgo.Record) E {
	t.Helper()
	serde, err := codec.For(reflect.TypeFor[E]())
	if err != nil {
		t.Fatal(err)
	}
	v, err := serde.Decode(r.Value)
	if err != nil {
		t.Fatalf("decoding %s at %s/%d@%d: %v", header(r, producer.HeaderType), r.Topic, r.Partition, r.Offset, err)
	}
	return *v.(*E)
}

func mustParseRedis(t *testing.T, url string) *redis.Options {
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
