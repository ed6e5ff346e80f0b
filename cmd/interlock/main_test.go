package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/internal/pgtest"
	"github.com/interlock-go/interlock/internal/services"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/service"
)

// cli runs the interlock command with args, as main does.
func cli(ctx context.Context, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := service.Run(ctx, args, &out, &errOut, build, commands()...)
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

// bankRun is the demo's domain after a few commands, running.
type bankRun struct {
	app        *interlock.App
	name       string
	brokers    string
	alice, bob ulid.ULID
	transfer   ulid.ULID
}

// args returns the settings that point the CLI at the run's application.
func (b *bankRun) args(args ...string) []string {
	return append(args, "--brokers", b.brokers, "--name", b.name, "--log-level", "warn")
}

// startBank runs the binary's application (build, all roles) and has
// alice open an account, deposit 100, withdraw 30, fail to withdraw 500
// and deposit 25, bob open one, and alice transfer 20 to bob; it waits
// for the transfer saga to complete the transfer.
func startBank(t *testing.T, ctx context.Context) *bankRun {
	t.Helper()
	b := &bankRun{name: kafkatest.Name(t), brokers: strings.Join(kafkatest.Brokers(t), ","),
		alice: interlock.NewID(), bob: interlock.NewID(), transfer: interlock.NewID()}
	// The binary's domain, built directly (the CLI commands under test
	// build their own with build).
	var err error
	b.app, err = interlock.NewBuilder(
		interlock.WithBrokers(strings.Split(b.brokers, ",")...), interlock.WithName(b.name),
		interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	).RegisterAggregate(bank.Accounts()).RegisterAggregate(bank.Transfers()).RegisterProjection(bank.TransferSaga()).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.app.Close(context.Background()) })
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	deposit := func(id ulid.ULID, n int64) bank.DepositMoney {
		return bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: n}
	}
	must(interlock.Dispatch(ctx, b.app, bank.OpenAccount{Command: interlock.To(b.alice), Owner: "alice"}))
	must(interlock.Dispatch(ctx, b.app, deposit(b.alice, 100)))
	must(interlock.Dispatch(ctx, b.app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](b.alice), Amount: 30}))
	if _, err := interlock.Dispatch(ctx, b.app, bank.WithdrawMoney{CommandOf: interlock.ToResult[bank.Balance](b.alice), Amount: 500}); !errors.Is(err, interlock.ErrRejected) {
		t.Fatalf("withdrawing 500 from 70: %v", err)
	}
	must(interlock.Dispatch(ctx, b.app, deposit(b.alice, 25)))
	must(interlock.Dispatch(ctx, b.app, bank.OpenAccount{Command: interlock.To(b.bob), Owner: "bob"}))
	must(interlock.Dispatch(ctx, b.app, bank.StartTransfer{Command: interlock.To(b.transfer), From: b.alice, To: b.bob, Amount: 20}))
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		inst, err := b.app.LoadAggregate(ctx, "bank-transfer", b.transfer)
		if err == nil && inst.State.(*bank.Transfer).Status == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the transfer never completed: %v", err)
		}
	}
	return b
}

// event is a line of events tail --json.
type event struct {
	Aggregate   string          `json:"aggregate"`
	AggregateID string          `json:"aggregate_id"`
	Version     int64           `json:"version"`
	Type        string          `json:"type"`
	Offset      int64           `json:"offset"`
	Partition   int32           `json:"partition"`
	CommandID   string          `json:"command_id"`
	Data        json.RawMessage `json:"data"`
	Error       string          `json:"error"`
}

func decodeEvents(t *testing.T, out string) []event {
	t.Helper()
	var evs []event
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e event
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("events tail --json printed %q: %v", out, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// TestEventsAndAggregate: events tail prints the demo domain's events,
// decoded, filtered by aggregate type and ID, from an offset or a time,
// and follows new ones; aggregate show prints the folded state and
// version; bad input is refused.
func TestEventsAndAggregate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := startBank(t, ctx)

	// alice's events, as JSON and as text.
	out, err := cli(ctx, b.args("events", "tail", "--json", "--aggregate", "bank-account", "--id", b.alice.String())...)
	if err != nil {
		t.Fatalf("events tail: %v\n%s", err, out)
	}
	evs := decodeEvents(t, out)
	want := []struct{ typ, data string }{
		{"AccountOpened", `{"owner":"alice"}`},
		{"MoneyDeposited", `{"amount":100}`},
		{"MoneyWithdrawn", `{"amount":30}`},
		{"MoneyDeposited", `{"amount":25}`},
		{"TransferDebited", ""},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events of alice, want %d:\n%s", len(evs), len(want), out)
	}
	for i, w := range want {
		e := evs[i]
		if e.Aggregate != "bank-account" || e.AggregateID != b.alice.String() || e.Version != int64(i+1) || e.Type != w.typ || e.Error != "" ||
			(w.data != "" && string(e.Data) != w.data) {
			t.Errorf("event %d: %+v (data %s), want %s %s at version %d", i, e, e.Data, w.typ, w.data, i+1)
		}
	}
	text, err := cli(ctx, b.args("events", "tail", "--aggregate", "bank-account", "--id", b.alice.String())...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 5 || !strings.Contains(lines[1], "bank-account "+b.alice.String()+" v2  MoneyDeposited {\"amount\":100}") {
		t.Errorf("events tail, text:\n%s", text)
	}

	// Every event: both aggregate types, each aggregate's versions in order.
	out, err = cli(ctx, b.args("events", "tail", "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	all := decodeEvents(t, out)
	byID := map[string][]int64{}
	types := map[string]bool{}
	for _, e := range all {
		byID[e.AggregateID] = append(byID[e.AggregateID], e.Version)
		types[e.Aggregate] = true
	}
	if !slices.Equal(byID[b.alice.String()], []int64{1, 2, 3, 4, 5}) || !slices.Equal(byID[b.bob.String()], []int64{1, 2}) ||
		!slices.Equal(byID[b.transfer.String()], []int64{1, 2}) || !types["bank-transfer"] {
		t.Errorf("all events: versions by aggregate %v, types %v", byID, types)
	}
	// One aggregate type.
	out, err = cli(ctx, b.args("events", "tail", "--json", "--aggregate", "bank-transfer")...)
	if err != nil {
		t.Fatal(err)
	}
	if evs := decodeEvents(t, out); len(evs) != 2 || evs[0].Type != "TransferStarted" || evs[1].Type != "TransferCompleted" {
		t.Errorf("bank-transfer events: %+v", evs)
	}
	// From an offset: alice's third event on.
	out, err = cli(ctx, b.args("events", "tail", "--json", "--aggregate", "bank-account", "--id", b.alice.String(), "--offset", itoa(evs0(t, ctx, b)[2].Offset))...)
	if err != nil {
		t.Fatal(err)
	}
	if evs := decodeEvents(t, out); len(evs) != 3 || evs[0].Version != 3 {
		t.Errorf("from alice's third event's offset: %+v", evs)
	}
	// From a time: an hour ago is everything, an hour ahead nothing.
	for since, n := range map[string]int{"1h": len(all), time.Now().Add(time.Hour).UTC().Format(time.RFC3339): 0} {
		out, err := cli(ctx, b.args("events", "tail", "--json", "--since", since)...)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(decodeEvents(t, out)); got != n {
			t.Errorf("--since %s: %d events, want %d", since, got, n)
		}
	}

	// Some event types only.
	out, err = cli(ctx, b.args("events", "tail", "--json", "--aggregate", "bank-account", "--id", b.alice.String(), "--type", "MoneyDeposited, MoneyWithdrawn")...)
	if err != nil {
		t.Fatal(err)
	}
	if evs := decodeEvents(t, out); len(evs) != 3 || evs[0].Version != 2 || evs[1].Type != "MoneyWithdrawn" || evs[2].Version != 4 {
		t.Errorf("--type MoneyDeposited,MoneyWithdrawn: %+v", evs)
	}

	// Follow: the existing events, then a new one, until interrupted.
	fctx, stop := context.WithCancel(ctx)
	var fout logbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- service.Run(fctx, b.args("events", "tail", "--follow", "--json", "--aggregate", "bank-account", "--id", b.alice.String()),
			&fout, io.Discard, build, commands()...)
	}()
	if _, err := interlock.Dispatch(ctx, b.app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](b.alice), Amount: 7}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if evs := decodeEvents(t, fout.String()); len(evs) == 6 && evs[5].Version == 6 && string(evs[5].Data) == `{"amount":7}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events tail --follow printed:\n%s", fout.String())
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("events tail --follow, interrupted: %v", err)
	}

	// aggregate show: the fold of the log, and its version.
	out, err = cli(ctx, b.args("aggregate", "show", "bank-account", b.alice.String())...)
	if err != nil {
		t.Fatalf("aggregate show: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "bank-account "+b.alice.String()+" version 6\n") || !strings.Contains(out, `"balance": 82`) || !strings.Contains(out, `"owner": "alice"`) {
		t.Errorf("aggregate show:\n%s", out)
	}
	out, err = cli(ctx, b.args("aggregate", "show", "--json", "bank-transfer", b.transfer.String())...)
	if err != nil {
		t.Fatal(err)
	}
	var shown struct {
		Version int64
		State   bank.Transfer
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || shown.Version != 2 || shown.State.Status != "completed" || shown.State.Amount != 20 ||
		shown.State.From != b.alice.String() {
		t.Errorf("aggregate show --json: %+v, %v\n%s", shown, err, out)
	}

	// Bad input.
	for _, c := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{b.args("aggregate", "show", "bank-account", "not-an-id"), true, "not an aggregate ID"},
		{b.args("aggregate", "show", "bank-account"), true, "takes TYPE ID"},
		{b.args("aggregate", "show", "bank-vault", b.alice.String()), false, `unknown aggregate type "bank-vault" (registered: bank-account, bank-transfer)`},
		{b.args("aggregate", "show", "bank-account", interlock.NewID().String()), false, "no events for this aggregate"},
		{[]string{"aggregate", "show", "bank-account", b.alice.String()}, true, "needs --brokers"},
		{b.args("events", "tail", "--id", b.alice.String()), true, "--id needs --aggregate"},
		{b.args("events", "tail", "--since", "yesterday"), true, "--since"},
		{b.args("events", "tail", "--offset", "-1"), true, "--offset"},
		{b.args("events", "tail", "--aggregate", "bank-vault"), false, "unknown aggregate type"},
		{b.args("events"), true, "events needs a subcommand: tail"},
		{b.args("evnets"), true, `unknown command "evnets"`},
	} {
		out, err := cli(ctx, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || errors.Is(err, service.ErrUsage) != c.usage {
			t.Errorf("%q: %v (usage error: %t), want an error with %q (usage error: %t)\n%s", c.args, err, errors.Is(err, service.ErrUsage), c.want, c.usage, out)
		}
	}
}

// evs0 returns alice's events (for their offsets).
func evs0(t *testing.T, ctx context.Context, b *bankRun) []event {
	t.Helper()
	out, err := cli(ctx, b.args("events", "tail", "--json", "--aggregate", "bank-account", "--id", b.alice.String())...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeEvents(t, out)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestTopicsProjectionsSchema: topics create, describe and verify on a
// running application and on broken layouts; projections status, rebuild,
// dlq list and reset; schema check.
func TestTopicsProjectionsSchema(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := startBank(t, ctx)

	out, err := cli(ctx, b.args("topics", "describe")...)
	if err != nil {
		t.Fatalf("topics describe: %v\n%s", err, out)
	}
	for _, want := range []string{b.name + ".bank-account.commands ", " commands ", b.name + ".bank-transfer.events", "retention.ms=-1", b.name + ".bank-transfer-saga.dlq", " dead-letters "} {
		if !strings.Contains(out, want) {
			t.Errorf("topics describe lacks %q:\n%s", want, out)
		}
	}
	out, err = cli(ctx, b.args("topics", "describe", "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var topics []interlock.TopicInfo
	if err := json.Unmarshal([]byte(out), &topics); err != nil || len(topics) != 7 {
		t.Fatalf("topics describe --json: %d topics, %v\n%s", len(topics), err, out)
	}
	for _, tp := range topics {
		want := 6
		if tp.Role == interlock.TopicSchemas {
			want = 1
		}
		if !tp.Exists || tp.Partitions != want {
			t.Errorf("topic %+v", tp)
		}
	}
	if sch := topics[6]; sch.Name != b.name+"._schemas" || sch.Configs["cleanup.policy"] != "compact" {
		t.Errorf("the schemas topic: %+v", sch)
	}
	if out, err := cli(ctx, b.args("topics", "verify")...); err != nil || !strings.Contains(out, "topics ok") {
		t.Errorf("topics verify: %v\n%s", err, out)
	}
	if out, err := cli(ctx, b.args("topics", "create")...); err != nil || !strings.Contains(out, b.name+".replies\t6 partitions") {
		t.Errorf("topics create on existing topics: %v\n%s", err, out)
	}

	// The same settings from a YAML file; the environment wins over it.
	yamlFile := filepath.Join(t.TempDir(), "interlock.yaml")
	if err := os.WriteFile(yamlFile, []byte("brokers: ["+b.brokers+"]\nname: "+b.name+"\nlogLevel: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(ctx, "topics", "verify", "--config", yamlFile); err != nil || !strings.Contains(out, "topics ok") {
		t.Errorf("topics verify --config: %v\n%s", err, out)
	}
	t.Setenv("INTERLOCK_NAME", b.name+"-other")
	if _, err := cli(ctx, "topics", "verify", "--config", yamlFile); !errors.Is(err, interlock.ErrTopology) || !strings.Contains(err.Error(), b.name+"-other.replies") {
		t.Errorf("topics verify --config with INTERLOCK_NAME set: %v", err)
	}
	if out, err := cli(ctx, "topics", "verify", "--config", yamlFile, "--name", b.name); err != nil {
		t.Errorf("topics verify --config --name: %v\n%s", err, out)
	}
	os.Unsetenv("INTERLOCK_NAME")

	// A fresh name: everything missing, then created with the settings.
	fresh := kafkatest.Name(t)
	freshArgs := func(args ...string) []string {
		return append(args, "--brokers", b.brokers, "--name", fresh, "--partitions", "3")
	}
	out, err = cli(ctx, freshArgs("topics", "verify")...)
	if !errors.Is(err, interlock.ErrTopology) || !strings.Contains(errText(err), fresh+".bank-account.events (events) is missing") {
		t.Errorf("topics verify before create: %v\n%s", err, out)
	}
	if out, err := cli(ctx, freshArgs("topics", "create")...); err != nil || !strings.Contains(out, fresh+".bank-account.events\t3 partitions") {
		t.Errorf("topics create: %v\n%s", err, out)
	}
	if out, err := cli(ctx, freshArgs("topics", "verify")...); err != nil {
		t.Errorf("topics verify after create: %v\n%s", err, out)
	}
	if out, err := cli(ctx, freshArgs("topics", "describe")...); err != nil || !strings.Contains(out, fresh+"._schemas") || strings.Contains(out, "missing") {
		t.Errorf("topics describe after create: %v\n%s", err, out)
	}
	// Commands and events not co-partitioned.
	broken := kafkatest.Name(t)
	kafkatest.CreateTopic(t, strings.Split(b.brokers, ","), broken+".bank-account.commands", 2)
	out, err = cli(ctx, "topics", "create", "--brokers", b.brokers, "--name", broken)
	if !errors.Is(err, interlock.ErrTopology) {
		t.Errorf("topics create beside a commands topic of 2 partitions: %v\n%s", err, out)
	}
	out, err = cli(ctx, "topics", "verify", "--brokers", b.brokers, "--name", broken)
	if !errors.Is(err, interlock.ErrTopology) || !strings.Contains(errText(err), "aggregate bank-account: its commands topic has 2 partitions but "+broken+".bank-account.events has 6") {
		t.Errorf("topics verify, not co-partitioned: %v\n%s", err, out)
	}

	// Projections: the transfer saga ran the transfer.
	out, err = cli(ctx, b.args("projections", "status")...)
	if err != nil || !strings.Contains(out, "bank-transfer-saga: lag") || !strings.Contains(out, b.name+".bank-transfer.events") {
		t.Errorf("projections status: %v\n%s", err, out)
	}
	out, err = cli(ctx, b.args("projections", "status", "--json", "bank-transfer-saga")...)
	var sts []projections.Status
	if err != nil || json.Unmarshal([]byte(out), &sts) != nil || len(sts) != 1 || len(sts[0].Partitions) != 12 {
		t.Errorf("projections status --json: %v\n%s", err, out)
	}
	if out, err := cli(ctx, b.args("projections", "status", "balancez")...); err == nil || !strings.Contains(errText(err), `no projection "balancez" (registered: bank-transfer-saga)`) {
		t.Errorf("projections status of an unknown projection: %v\n%s", err, out)
	}
	if out, err := cli(ctx, b.args("projections", "rebuild", "bank-transfer-saga")...); err != nil || !strings.Contains(out, `projections.New("bank-transfer-saga", sink, projections.Version(2))`) {
		t.Errorf("projections rebuild: %v\n%s", err, out)
	}
	if out, err := cli(ctx, b.args("projections", "dlq", "list", "bank-transfer-saga")...); err != nil || !strings.Contains(out, "no parked event") {
		t.Errorf("projections dlq list: %v\n%s", err, out)
	}
	if out, err := cli(ctx, b.args("projections", "dlq", "list", "--json", "bank-transfer-saga")...); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("projections dlq list --json: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{b.args("projections", "rebuild", "balancez"), false, `no projection "balancez"`},
		{[]string{"topics", "describe"}, true, "needs --brokers"},
		{b.args("topics", "create", "--partitions", "0"), true, "--partitions"},
		{[]string{"events", "tail", "--brokers", b.brokers, "--name", fresh + "-none"}, false, "created by topics create"},
	} {
		if _, err := cli(ctx, c.args...); err == nil || !strings.Contains(err.Error(), c.want) || errors.Is(err, service.ErrUsage) != c.usage {
			t.Errorf("%q: %v, want an error with %q (usage error: %t)", c.args, err, c.want, c.usage)
		}
	}
	if _, err := cli(ctx, b.args("projections", "dlq", "retry", "bank-transfer-saga")...); !errors.Is(err, service.ErrUsage) {
		t.Errorf("projections dlq retry without a key: %v", err)
	}
	if out, err := cli(ctx, b.args("projections", "reset", "bank-transfer-saga")...); !errors.Is(err, projections.ErrRunning) {
		t.Errorf("projections reset while it runs: %v\n%s", err, out)
	}

	// Schemas: the built-in registry holds what the application registered.
	if out, err := cli(ctx, b.args("schema", "check")...); err != nil || !strings.Contains(out, "schemas ok") {
		t.Errorf("schema check: %v\n%s", err, out)
	}

	b.app.Close(ctx)
	if out, err := cli(ctx, b.args("projections", "reset", "bank-transfer-saga")...); err != nil || !strings.Contains(out, "reset") {
		t.Errorf("projections reset once stopped: %v\n%s", err, out)
	}
}

// TestCommandsDispatch: the binary's own commands are reached through the
// service's dispatch, and its usage lists every command.
func TestCommandsDispatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"demo", "--burst", "5"}
	if kafkatest.Real() {
		args = append(args, "--brokers", strings.Join(kafkatest.Brokers(t), ","))
	}
	out, err := cli(ctx, args...)
	if err != nil || !strings.Contains(out, "versions 2..6, each exactly once") {
		t.Errorf("demo through the service: %v\n%s", err, out)
	}
	out, err = cli(ctx, "help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"serve", "topics verify", "events tail", "aggregate show TYPE ID", "projections dlq retry NAME KEY", "schema check", "demo", "bench"} {
		if !strings.Contains(out, "  "+want) {
			t.Errorf("usage lacks %q:\n%s", want, out)
		}
	}
	if _, err := cli(ctx); !errors.Is(err, service.ErrUsage) {
		t.Errorf("no command: %v", err)
	}
}

// TestBalancesWithPostgres: with a PostgreSQL DSN in the environment the
// binary registers the balances read model: projections status shows it
// caught up with a running instance, and projections reset, once that
// instance stopped, empties its table.
func TestBalancesWithPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pool, schema := pgtest.Pool(t)
	dsn := os.Getenv(services.EnvPostgres)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	t.Setenv("INTERLOCK_POSTGRES_DSN", dsn+sep+"search_path="+schema)
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name),
		interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	).RegisterAggregate(bank.Accounts()).RegisterAggregate(bank.Transfers()).RegisterProjection(bank.TransferSaga()).
		RegisterProjection(bank.Balances("balances", pool)).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	id := interlock.NewID()
	res, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := interlock.Ask(ctx, app, bank.BalanceOf{QueryOf: interlock.After[bank.AccountBalance](res.Positions), ID: id}); err != nil {
		t.Fatal(err)
	}
	args := []string{"--brokers", strings.Join(brokers, ","), "--name", name}
	out, err := cli(ctx, append([]string{"projections", "status", "balances"}, args...)...)
	if err != nil || !strings.Contains(out, "balances: lag") || !strings.Contains(out, "caught up") || !strings.Contains(out, "LAG  BEHIND") {
		t.Errorf("projections status balances: %v\n%s", err, out)
	}
	app.Close(ctx)
	out, err = cli(ctx, append([]string{"projections", "reset", "balances"}, args...)...)
	if err != nil {
		t.Fatalf("projections reset balances: %v\n%s", err, out)
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM bank_balances`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("after the reset the read model has %d rows (%v)", rows, err)
	}
}
