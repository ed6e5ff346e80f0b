package interlock_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/middleware"
	"github.com/interlock-go/interlock/producer"
)

func transfersApp(t *testing.T, brokers []string, name string, roles interlock.Role, mws ...middleware.Middleware) *interlock.App {
	t.Helper()
	return transfersAppWith(t, brokers, name, roles, nil, mws...)
}

// transfersAppWith is transfersApp with more options.
func transfersAppWith(t *testing.T, brokers []string, name string, roles interlock.Role, opts []interlock.Option, mws ...middleware.Middleware) *interlock.App {
	t.Helper()
	return launch(t, interlock.NewBuilder(append([]interlock.Option{interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(3),
		interlock.WithLogger(testLogger()), interlock.WithRoles(roles),
		interlock.WithSessionTimeout(6 * time.Second), interlock.WithTransactionTimeout(5 * time.Second),
	}, opts...)...).RegisterAggregate(bank.Accounts()).RegisterAggregate(bank.Transfers()).RegisterProjection(bank.TransferSaga()).UseDispatch(mws...))
}

// TestTransferSaga: concurrent transfers, some refused at the debit
// (insufficient funds) and some at the credit (an account never opened, so
// the debit is refunded), while the processors and the saga are replaced
// mid-run, once by a crash (the worker cut off Kafka at once while a
// transaction of its processor or saga is open) and once by a stop: every
// transfer ends completed or failed, never half done; each saga step ran
// once; money is conserved; correlation flows from the transfer to every
// command the saga sent, and causation links each step's event to its
// command and that command to the event it reacted to.
func TestTransferSaga(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tenant := func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, m *middleware.Message) (middleware.Outcome, error) {
			m.Metadata.Set("tenant", "acme")
			return next(ctx, m)
		}
	}
	client := transfersApp(t, brokers, name, interlock.RoleDispatch, tenant)
	defer client.Close(context.Background())
	first := newCrash()
	workers := []*interlock.App{transfersAppWith(t, brokers, name, interlock.RoleProcess|interlock.RoleProject, []interlock.Option{first.kafka(), interlock.WithInstanceID("worker-1")})}
	accounts := make([]ulid.ULID, 6)
	for i := range accounts {
		accounts[i] = open(t, ctx, client)
		if _, err := interlock.Dispatch(ctx, client, deposit(accounts[i], 100)); err != nil {
			t.Fatal(err)
		}
	}
	ghost := interlock.NewID() // never opened: credits to it are refused
	var mu sync.Mutex
	var transfers []ulid.ULID
	var wg sync.WaitGroup
	flowing := make(chan struct{}) // closed when the workers have been replaced
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				select {
				case <-flowing:
					if i >= 15 {
						return
					}
				default:
				}
				from := accounts[r.IntN(len(accounts))]
				to := accounts[r.IntN(len(accounts))]
				if r.IntN(5) == 0 {
					to = ghost
				}
				if from == to {
					continue
				}
				id := interlock.NewID()
				c := bank.StartTransfer{Command: interlock.To(id), From: from, To: to, Amount: int64(1 + r.IntN(80))}
				c.CorrelationID = "transfer-" + id.String()
				if _, err := interlock.Dispatch(ctx, client, c); err != nil {
					t.Errorf("start transfer: %v", err)
					return
				}
				mu.Lock()
				transfers = append(transfers, id)
				mu.Unlock()
				time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
			}
		}()
	}
	// Replace the worker twice while transfers flow: a new one joins, the
	// old one is killed (the first time) or leaves.
	var crashed *interlock.App
	for round := range 2 {
		time.Sleep(300 * time.Millisecond)
		workers = append(workers, transfersApp(t, brokers, name, interlock.RoleProcess|interlock.RoleProject))
		time.Sleep(300 * time.Millisecond)
		if round == 0 {
			owned := 0
			for _, ps := range workers[0].Lag() {
				owned += len(ps)
			}
			if owned == 0 {
				t.Fatal("the worker to kill owns no commands partition: the crash would prove nothing")
			}
			// Kill it with a transaction open: the saga's, else the
			// processor's.
			txn := inKafkaTransaction(t, brokers, 5*time.Second, name+".projection.bank-transfer-saga.worker-1")
			if txn == "" {
				txn = inKafkaTransaction(t, brokers, 5*time.Second, name+".processor.worker-1")
			}
			if txn == "" {
				t.Fatal("the worker to kill never had a transaction open: the crash would prove little")
			}
			first.Kill()
			t.Logf("worker killed with transaction %s open", txn)
			crashed = workers[0]
		} else if err := workers[0].Close(ctx); err != nil {
			t.Errorf("closing a worker: %v", err)
		}
		workers = workers[1:]
	}
	close(flowing)
	wg.Wait()
	// The crashed worker, cut off since, is let back only to be closed:
	// what it left open was aborted, and its transactions are refused.
	first.Revive()
	crashed.Close(ctx)
	defer func() {
		for _, w := range workers {
			w.Close(context.Background())
		}
	}()

	// Wait until every transfer has ended.
	transferEvents := name + ".bank-transfer.events"
	var status map[string]string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		status = map[string]string{}
		for _, e := range kafkatest.ReadAll(t, brokers, transferEvents) {
			status[string(e.Key)] += header(e, producer.HeaderType) + ";"
		}
		done := 0
		for _, id := range transfers {
			if s := status[id.String()]; s == "TransferStarted;TransferCompleted;" || s == "TransferStarted;TransferFailed;" {
				done++
			}
		}
		if done == len(transfers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d transfers ended within two minutes: %v", done, len(transfers), status)
		}
	}

	// Each step once, per transfer; money conserved; correlation carried.
	steps := map[string]map[string]int{} // transfer → event type → count
	var total int64
	for _, e := range kafkatest.ReadAll(t, brokers, name+".bank-account.events") {
		typ := header(e, producer.HeaderType)
		var transfer string
		switch typ {
		case "MoneyDeposited":
			total += depositAmount(t, e)
			continue
		case "AccountOpened":
			continue
		case "TransferDebited":
			ev := decodeAs[bank.TransferDebited](t, e)
			transfer, total = ev.Transfer, total-ev.Amount
		case "TransferCredited":
			ev := decodeAs[bank.TransferCredited](t, e)
			transfer, total = ev.Transfer, total+ev.Amount
		case "TransferRefunded":
			ev := decodeAs[bank.TransferRefunded](t, e)
			transfer, total = ev.Transfer, total+ev.Amount
		case "TransferDebitRefused":
			ev := decodeAs[bank.TransferDebitRefused](t, e)
			transfer = ev.Transfer
		case "TransferCreditRefused":
			ev := decodeAs[bank.TransferCreditRefused](t, e)
			transfer = ev.Transfer
		}
		if steps[transfer] == nil {
			steps[transfer] = map[string]int{}
		}
		steps[transfer][typ]++
		if got, want := header(e, producer.HeaderCorrelationID), "transfer-"+transfer; got != want {
			t.Errorf("%s of transfer %s: correlation %q, want the transfer's %q", typ, transfer, got, want)
		}
		if got := header(e, "tenant"); got != "acme" {
			t.Errorf("%s of transfer %s: tenant %q: the metadata of the transfer did not follow the saga's commands", typ, transfer, got)
		}
	}
	// Causation, across Kafka: each event of a saga step names its
	// command as its cause, and that command, written by the saga, names
	// the event it reacted to, of the same flow.
	events := map[string]*kgo.Record{} // event ID → event
	var all []*kgo.Record
	for _, topic := range []string{name + ".bank-account.events", transferEvents} {
		for _, e := range kafkatest.ReadAll(t, brokers, topic) {
			events[header(e, producer.HeaderEventID)] = e
			all = append(all, e)
		}
	}
	commands := map[string]*kgo.Record{} // command ID → command
	for _, topic := range []string{name + ".bank-account.commands", name + ".bank-transfer.commands"} {
		for _, c := range kafkatest.ReadAll(t, brokers, topic) {
			commands[header(c, producer.HeaderCommandID)] = c
		}
	}
	sagaSteps := 0
	for _, e := range all {
		typ, correlation := header(e, producer.HeaderType), header(e, producer.HeaderCorrelationID)
		switch typ {
		case "AccountOpened", "MoneyDeposited", "TransferStarted":
			continue // the client's commands
		}
		c := commands[header(e, producer.HeaderCausationID)]
		if c == nil || header(c, producer.HeaderCommandID) != header(e, producer.HeaderCommandID) {
			t.Errorf("%s: causation %q is not its command %q", typ, header(e, producer.HeaderCausationID), header(e, producer.HeaderCommandID))
			continue
		}
		cause := events[header(c, producer.HeaderCausationID)]
		if cause == nil {
			t.Errorf("%s: its command %s (%s) names no event as its cause: %q", typ, header(c, producer.HeaderCommandID), header(c, producer.HeaderType), header(c, producer.HeaderCausationID))
			continue
		}
		if header(c, producer.HeaderCorrelationID) != correlation || header(cause, producer.HeaderCorrelationID) != correlation {
			t.Errorf("%s: correlation %q, its command's %q, its cause's (%s) %q", typ, correlation,
				header(c, producer.HeaderCorrelationID), header(cause, producer.HeaderType), header(cause, producer.HeaderCorrelationID))
		}
		sagaSteps++
	}
	if sagaSteps == 0 {
		t.Error("no saga step checked for causation")
	}
	if want := int64(100 * len(accounts)); total != want {
		t.Errorf("money in accounts %d, want %d: not conserved", total, want)
	}
	completed, failed := 0, 0
	for _, id := range transfers {
		s := steps[id.String()]
		for typ, n := range s {
			if n != 1 {
				t.Errorf("transfer %s: %s %d times", id, typ, n)
			}
		}
		switch status[id.String()] {
		case "TransferStarted;TransferCompleted;":
			completed++
			if s["TransferDebited"] != 1 || s["TransferCredited"] != 1 || len(s) != 2 {
				t.Errorf("completed transfer %s: steps %v", id, s)
			}
		default:
			failed++
			if fmt.Sprint(s) != "map[TransferDebitRefused:1]" && fmt.Sprint(s) != "map[TransferCreditRefused:1 TransferDebited:1 TransferRefunded:1]" {
				t.Errorf("failed transfer %s: steps %v: half done", id, s)
			}
		}
	}
	t.Logf("%d transfers: %d completed, %d failed", len(transfers), completed, failed)
	if completed == 0 || failed == 0 {
		t.Errorf("the run should both complete and fail transfers")
	}
}
