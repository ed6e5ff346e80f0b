package service

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/bench"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/benchtest"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/internal/securekafka"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
)

// grant is one ACL of docs/security.md: an operation on a resource, whose
// name may hold $APP (the application name), $AGGREGATE and $PROJECTION.
type grant struct {
	resource string // topic, group or transactional-id
	name     string
	prefixed bool
	op       string // as kafka-acls.sh spells it: Read, Write, Describe, DescribeConfigs, Create
}

// The ACLs of each role, as docs/security.md lists them. The test grants
// exactly these, and its documentation test finds each one's kafka-acls.sh
// line in the document.
var (
	// Every instance: Start describes the application's topics and opens
	// the built-in schema registry.
	commonACLs = []grant{
		{"topic", "$APP.", true, "Describe"},
		{"topic", "$APP._schemas", false, "Read"},
		{"topic", "$APP._schemas", false, "Write"},
		{"topic", "$APP._schemas", false, "DescribeConfigs"},
	}
	// dispatch: write commands, read its replies partition.
	gatewayACLs = []grant{
		{"topic", "$APP.$AGGREGATE.commands", false, "Write"},
		{"topic", "$APP.replies", false, "Read"},
	}
	// process: consume commands in the group, write events and replies in
	// transactions, read events to restore, and read the events topics'
	// max.message.bytes (an event over it is rejected, not retried).
	processorACLs = []grant{
		{"topic", "$APP.$AGGREGATE.commands", false, "Read"},
		{"topic", "$APP.$AGGREGATE.events", false, "Read"},
		{"topic", "$APP.$AGGREGATE.events", false, "Write"},
		{"topic", "$APP.$AGGREGATE.events", false, "DescribeConfigs"},
		{"topic", "$APP.replies", false, "Write"},
		{"group", "$APP.processors", false, "Read"},
		{"transactional-id", "$APP.processor.", true, "Write"},
	}
	// project (one projection with the Kafka sink): consume events in its
	// group, park failures in its dead-letter topic, in transactions.
	projectorACLs = []grant{
		{"topic", "$APP.$AGGREGATE.events", false, "Read"},
		{"topic", "$APP.$PROJECTION.dlq", false, "Read"},
		{"topic", "$APP.$PROJECTION.dlq", false, "Write"},
		{"group", "$APP.projection.$PROJECTION", false, "Read"},
		{"transactional-id", "$APP.projection.$PROJECTION.", true, "Write"},
	}
	// Creating the topics, for the principal that does it.
	createACLs = []grant{
		{"topic", "$APP.", true, "Create"},
	}
)

// resolve names g's resource for the test's application: the bank's
// accounts and the audit projection.
func (g grant) resolve(app string) grant {
	g.name = strings.NewReplacer("$APP", app, "$AGGREGATE", "bank-account", "$PROJECTION", "audit").Replace(g.name)
	return g
}

// builder is the kadm ACL of g for user.
func (g grant) builder(user string) *kadm.ACLBuilder {
	b := kadm.NewACLs().Allow("User:" + user).AllowHosts("*")
	switch g.resource {
	case "topic":
		b.Topics(g.name)
	case "group":
		b.Groups(g.name)
	case "transactional-id":
		b.TransactionalIDs(g.name)
	}
	op := map[string]kadm.ACLOperation{"Read": kadm.OpRead, "Write": kadm.OpWrite, "Describe": kadm.OpDescribe,
		"DescribeConfigs": kadm.OpDescribeConfigs, "Create": kadm.OpCreate}[g.op]
	b.Operations(op)
	if g.prefixed {
		b.ResourcePatternType(kadm.ACLPatternPrefixed)
	} else {
		b.ResourcePatternType(kadm.ACLPatternLiteral)
	}
	return b
}

// line is g as a kafka-acls.sh command line, as docs/security.md shows it.
func (g grant) line() string {
	s := fmt.Sprintf(`kafka-acls.sh --bootstrap-server "$BROKERS" --command-config admin.properties --add --allow-principal "$P" --operation %s --%s "%s"`,
		g.op, g.resource, g.name)
	if g.prefixed {
		s += " --resource-pattern-type prefixed"
	}
	return s
}

// TestSecurityDocACLs: each role's section of docs/security.md holds the
// kafka-acls.sh lines of exactly the ACLs TestSecuredKafka grants it.
func TestSecurityDocACLs(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	for _, part := range strings.Split(string(raw), "\n### ")[1:] {
		title, body, _ := strings.Cut(part, "\n")
		sections[title] = body
	}
	for _, c := range []struct {
		title  string
		grants []grant
	}{
		{"Every instance", commonACLs},
		{"Gateway: role dispatch", gatewayACLs},
		{"Processor: role process", processorACLs},
		{"Projector: role project", projectorACLs},
		{"Creating the topics", createACLs},
	} {
		body, ok := sections[c.title]
		if !ok {
			t.Errorf("docs/security.md has no section %q", c.title)
			continue
		}
		if n := strings.Count(body, "kafka-acls.sh --bootstrap-server"); n != len(c.grants) {
			t.Errorf("%s: %d kafka-acls.sh lines, want %d", c.title, n, len(c.grants))
		}
		for _, g := range c.grants {
			if !strings.Contains(body, g.line()) {
				t.Errorf("%s: the line is missing:\n%s", c.title, g.line())
			}
		}
	}
}

// secured is the broker and the application every step of
// TestSecuredKafka uses.
type secured struct {
	t      *testing.T
	broker *securekafka.Broker
	adm    *kadm.Client
	app    string
}

func (s *secured) setACLs(ctx context.Context, user string, grants []grant, add bool) {
	s.t.Helper()
	for _, g := range grants {
		g = g.resolve(s.app)
		var err error
		if add {
			var res kadm.CreateACLsResults
			res, err = s.adm.CreateACLs(ctx, g.builder(user))
			for _, r := range res {
				err = errors.Join(err, r.Err)
			}
		} else {
			var res kadm.DeleteACLsResults
			res, err = s.adm.DeleteACLs(ctx, g.builder(user))
			n := 0
			for _, r := range res {
				err = errors.Join(err, r.Err)
				n += len(r.Deleted)
			}
			if err == nil && n != 1 {
				err = fmt.Errorf("%d ACLs deleted, want 1", n)
			}
		}
		if err != nil {
			s.t.Fatalf("ACL %+v of %s (add %v): %v", g, user, add, err)
		}
	}
}

// user creates a user with a SCRAM-SHA-512 password and the grants.
func (s *secured) user(ctx context.Context, name string, grants ...[]grant) {
	s.t.Helper()
	if err := s.broker.AddUser(ctx, s.adm, name, "pw-"+name); err != nil {
		s.t.Fatal(err)
	}
	s.setACLs(ctx, name, slices.Concat(grants...), true)
}

// env is the environment of a command run as user, its password in a file.
func (s *secured) env(user, password string) env {
	pw := filepath.Join(s.t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return env{
		"INTERLOCK_BROKERS": s.broker.Addr, "INTERLOCK_NAME": s.app, "INTERLOCK_PARTITIONS": "2",
		"INTERLOCK_TLS_CA_FILE": s.broker.CAFile, "INTERLOCK_SASL_MECHANISM": "SCRAM-SHA-512",
		"INTERLOCK_SASL_USERNAME": user, "INTERLOCK_SASL_PASSWORD_FILE": pw,
	}
}

// run runs a command of the service binary as user.
func (s *secured) run(ctx context.Context, e env, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	r := &runner{prog: "interlock", build: auditBuild(nil), stdout: &out, stderr: &errOut, getenv: e.get}
	err := r.run(ctx, args)
	return out.String() + errOut.String(), err
}

// auditBuild builds the bank's accounts with an "audit" projection (Kafka
// sink) that sends each deposit's amount to seen.
func auditBuild(seen chan<- int64) func(context.Context, *Config) (*interlock.Builder, error) {
	return func(_ context.Context, cfg *Config) (*interlock.Builder, error) {
		p := projections.New("audit", projections.Kafka())
		projections.On(p, func(_ context.Context, _ *projections.Output, e projections.Event[bank.MoneyDeposited]) error {
			if seen != nil {
				seen <- e.Data.Amount
			}
			return nil
		})
		return interlock.NewBuilder(cfg.Options()...).RegisterAggregate(bank.Accounts()).RegisterProjection(p), nil
	}
}

// start builds and starts the application as user in roles, its log in
// logs.
func (s *secured) start(ctx context.Context, user, roles string, seen chan<- int64, logs io.Writer) (*interlock.App, error) {
	s.t.Helper()
	e := s.env(user, "pw-"+user)
	e["INTERLOCK_ROLES"] = roles
	e["INTERLOCK_INSTANCE_ID"] = user + "-" + roles
	cfg, err := parseWith(e, logs)
	if err != nil {
		s.t.Fatal(err)
	}
	b, err := auditBuild(seen)(ctx, cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	app, err := b.Build()
	if err != nil {
		s.t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := app.Start(sctx); err != nil {
		return nil, err
	}
	s.t.Cleanup(func() { app.Close(context.Background()) })
	return app, nil
}

// parseWith resolves serve's settings from e, logging to logs.
func parseWith(e env, logs io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	vals := addFlags(fs, true)
	return resolve(fs, vals, e.get, logs)
}

// TestSecuredKafka runs the bank against a Kafka that speaks only
// SASL_SSL with SCRAM-SHA-512 and enforces ACLs: a gateway, a processor
// and a projector, each as its own user with exactly its role's ACLs of
// docs/security.md (and Create for the processor while it makes the
// topics). A command is applied, its events are read back, the projection
// sees them. Then every refusal is tried (connectionRefusals,
// missingACLs).
func TestSecuredKafka(t *testing.T) {
	broker := securekafka.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := &secured{t: t, broker: broker, adm: broker.AdminClient(t), app: "bank"}
	s.user(ctx, "gateway", commonACLs, gatewayACLs)
	s.user(ctx, "processor", commonACLs, processorACLs)
	s.user(ctx, "projector", commonACLs, projectorACLs)

	logs := &logbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the applications' log:\n%s", logs.Tail(80))
		}
	})
	// Without CREATE, an instance cannot make the missing topics, and
	// says so.
	_, err := s.start(ctx, "processor", "process", nil, logs)
	if !errors.Is(err, kerr.TopicAuthorizationFailed) || !strings.Contains(err.Error(), "bank.bank-account.commands") ||
		!strings.Contains(err.Error(), "do not exist and this principal may not create them") {
		t.Fatalf("starting without CREATE before the topics exist: %v", err)
	}
	// With CREATE the processor makes them; the other instances, without
	// it, start on the existing topics, as after an admin's topics create.
	s.setACLs(ctx, "processor", createACLs, true)
	seen := make(chan int64, 16)
	proc, err := s.start(ctx, "processor", "process", nil, logs)
	if err != nil {
		t.Fatalf("the processor: %v", err)
	}
	s.setACLs(ctx, "processor", createACLs, false)
	proj, err := s.start(ctx, "projector", "project", seen, logs)
	if err != nil {
		t.Fatalf("the projector: %v", err)
	}
	gw, err := s.start(ctx, "gateway", "dispatch", nil, logs)
	if err != nil {
		t.Fatalf("the gateway: %v", err)
	}
	id := interlock.NewID()
	if _, err := interlock.Dispatch(ctx, gw, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
		t.Fatalf("open: %v", err)
	}
	res, err := interlock.Dispatch(ctx, gw, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 42})
	if err != nil || res.Value.Balance != 42 || res.Version != 2 {
		t.Fatalf("deposit: %+v, %v", res, err)
	}
	select {
	case n := <-seen:
		if n != 42 {
			t.Errorf("the projection saw a deposit of %d, want 42", n)
		}
	case <-ctx.Done():
		t.Fatal("the projection never saw the deposit")
	}
	// The events, read back as the admin.
	cl, err := kgo.NewClient(append(broker.ClientOpts(securekafka.Admin, broker.AdminPassword),
		kgo.ConsumeTopics("bank.bank-account.events"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var types []string
	for len(types) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if string(r.Key) != id.String() {
				t.Errorf("an event of aggregate %s, want %s", r.Key, id)
			}
			for _, h := range r.Headers {
				if h.Key == producer.HeaderType {
					types = append(types, string(h.Value))
				}
			}
		})
	}
	if !slices.Equal(types, []string{"AccountOpened", "MoneyDeposited"}) {
		t.Fatalf("events read back: %v", types)
	}

	proc.Close(ctx)
	proj.Close(ctx)
	s.connectionRefusals(ctx)
	s.mechanisms(ctx)
	s.missingACLs(ctx, gw)
	s.bench(ctx)
}

// bench: a service binary's bench reaches the secured Kafka with the TLS
// and SASL settings of its environment, as its other commands do; without
// them it fails at once, saying that it could not connect.
func (s *secured) bench(ctx context.Context) {
	t := s.t
	w := bench.Workload{
		Aggregate: bank.Accounts(),
		Setup: func(id ulid.ULID, i int) any {
			return bank.OpenAccount{Command: interlock.To(id), Owner: fmt.Sprint("owner-", i)}
		},
		Command: func(id ulid.ULID) any {
			return bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1}
		},
	}
	run := func(e env) (string, string, error) {
		var out, progress bytes.Buffer
		r := &runner{prog: "interlock", build: auditBuild(nil), bench: &w, stdout: &out, stderr: &progress, getenv: e.get}
		err := r.run(ctx, []string{"bench", "--quick", "--json", "--brokers", s.broker.Addr,
			"--partitions", "2", "--aggregates", "10", "--commands", "100", "--restore-events", "100",
			"--senders", "4", "--dispatchers", "2", "--probe", "200ms", "--sync-duration", "200ms", "--timeout", "30s"})
		return out.String(), progress.String(), err
	}
	admin := s.env(securekafka.Admin, s.broker.AdminPassword)
	out, progress, err := run(admin)
	if err != nil {
		t.Fatalf("bench on the secured Kafka: %v\n%s", err, progress)
	}
	benchtest.Check(t, []byte(out), benchtest.Measured{})
	t0 := time.Now()
	_, _, err = run(without(admin, "INTERLOCK_TLS_CA_FILE")) // plaintext
	if err == nil || !strings.Contains(err.Error(), "bench: connecting to "+s.broker.Addr) || time.Since(t0) > 20*time.Second {
		t.Errorf("bench without the TLS settings: %v after %v, want a connection error at once", err, time.Since(t0))
	}
	_, _, err = run(s.env(securekafka.Admin, "wr0ng-pw-7731"))
	if err == nil || !strings.Contains(err.Error(), "SASL_AUTHENTICATION_FAILED") || strings.Contains(err.Error(), "wr0ng-pw-7731") {
		t.Errorf("bench with a wrong password: %v, want SASL_AUTHENTICATION_FAILED without the password", err)
	}
}

// mechanisms: each SASL mechanism of the settings logs in on the real
// broker (as the admin, whom the broker knows under each), with the
// password or token from a file; a wrong PLAIN password and an expired
// OAUTHBEARER token are refused.
func (s *secured) mechanisms(ctx context.Context) {
	t := s.t
	token := func(exp time.Time) string { return securekafka.UnsecuredToken(securekafka.Admin, exp) }
	for _, c := range []struct {
		mechanism, user, secret string
		want                    string // "" for success, else in the error
	}{
		{"PLAIN", securekafka.Admin, s.broker.AdminPassword, ""},
		{"SCRAM-SHA-256", securekafka.Admin, s.broker.AdminPassword, ""},
		{"SCRAM-SHA-512", securekafka.Admin, s.broker.AdminPassword, ""},
		{"OAUTHBEARER", "", token(time.Now().Add(time.Hour)), ""},
		{"PLAIN", securekafka.Admin, "wr0ng-pw-7731", "SASL_AUTHENTICATION_FAILED"},
		{"OAUTHBEARER", "", token(time.Now().Add(-30 * time.Second)), "SASL_AUTHENTICATION_FAILED"},
	} {
		e := s.env(c.user, c.secret)
		e["INTERLOCK_SASL_MECHANISM"] = c.mechanism
		if c.user == "" {
			delete(e, "INTERLOCK_SASL_USERNAME")
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := s.run(rctx, e, "topics", "describe")
		cancel()
		switch {
		case c.want == "" && (err != nil || !strings.Contains(out, "bank.bank-account.events")):
			t.Errorf("%s: topics describe: %v\n%s", c.mechanism, err, out)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s with a bad secret: %v, want an error with %s", c.mechanism, err, c.want)
		case strings.Contains(out+errText(err), c.secret):
			t.Errorf("%s: the secret shows:\n%s%v", c.mechanism, out, err)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// connectionRefusals: a wrong password, a client that does not trust the
// CA and a plaintext client are each refused at once, with an error that
// says which.
func (s *secured) connectionRefusals(ctx context.Context) {
	t := s.t
	// The same command succeeds with the right settings (as the admin:
	// describing topics' configs is no role's need).
	out, err := s.run(ctx, s.env(securekafka.Admin, s.broker.AdminPassword), "topics", "describe")
	if err != nil || !strings.Contains(out, "bank.bank-account.events") {
		t.Fatalf("topics describe as the admin: %v\n%s", err, out)
	}
	good := s.env("gateway", "pw-gateway")
	for _, c := range []struct {
		name string
		env  env
		want string
	}{
		{"a wrong password", s.env("gateway", "wrong"), "SASL_AUTHENTICATION_FAILED"},
		{"no trust in the CA", without(good, "INTERLOCK_TLS_CA_FILE", "INTERLOCK_TLS", "true"), "x509: certificate signed by unknown authority"},
		{"plaintext", without(good, "INTERLOCK_TLS_CA_FILE"), "is this a plaintext connection speaking to a tls endpoint?"},
	} {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		t0 := time.Now()
		out, err := s.run(rctx, c.env, "topics", "describe")
		cancel()
		took := time.Since(t0)
		switch {
		case err == nil:
			t.Errorf("%s: topics describe succeeded:\n%s", c.name, out)
		case !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: the error does not say %q (after %v): %v", c.name, c.want, took, err)
		case took > 15*time.Second:
			t.Errorf("%s: refused only after %v: %v", c.name, took, err)
		default:
			t.Logf("%s: refused after %v: %v", c.name, took.Round(time.Millisecond), err)
		}
	}
}

// without returns e without the variables keys, and with the pairs of
// set added.
func without(e env, key string, set ...string) env {
	out := env{}
	for k, v := range e {
		if k != key {
			out[k] = v
		}
	}
	for i := 0; i+1 < len(set); i += 2 {
		out[set[i]] = set[i+1]
	}
	return out
}

// missingACLs takes one ACL at a time from a role: the instance fails
// with an error (from Start, or the one it stops with) that says
// authorization failed, and for what. Commands are not lost: one sent
// while the processor could not write events is applied once it can.
func (s *secured) missingACLs(ctx context.Context, gw *interlock.App) {
	t := s.t
	id := interlock.NewID()
	// Sent now, handled once a processor can.
	if _, err := interlock.Send(ctx, gw, bank.OpenAccount{Command: interlock.To(id), Owner: "bob"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, roles string
		g           grant
		// atStart: Start fails; else the instance stops once it meets the
		// refusal (after a command, for a write).
		atStart bool
		want    []string
	}{
		{"processor", "process", grant{"transactional-id", "$APP.processor.", true, "Write"}, true,
			[]string{"TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "transactional ID bank.processor.processor-process"}},
		{"processor", "process", grant{"group", "$APP.processors", false, "Read"}, false,
			[]string{"GROUP_AUTHORIZATION_FAILED", "group bank.processors"}},
		{"processor", "process", grant{"topic", "$APP.$AGGREGATE.commands", false, "Read"}, false,
			[]string{"TOPIC_AUTHORIZATION_FAILED", "topic bank.bank-account.commands"}},
		{"processor", "process", grant{"topic", "$APP.$AGGREGATE.events", false, "Read"}, false,
			[]string{"TOPIC_AUTHORIZATION_FAILED", "bank.bank-account.events"}},
		{"processor", "process", grant{"topic", "$APP.$AGGREGATE.events", false, "Write"}, false,
			[]string{"TOPIC_AUTHORIZATION_FAILED", "bank.bank-account.events"}},
		{"projector", "project", grant{"transactional-id", "$APP.projection.$PROJECTION.", true, "Write"}, true,
			[]string{"TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "transactional ID bank.projection.audit.projector-project"}},
		{"projector", "project", grant{"group", "$APP.projection.$PROJECTION", false, "Read"}, false,
			[]string{"GROUP_AUTHORIZATION_FAILED", "group bank.projection.audit"}},
		{"gateway", "dispatch", grant{"topic", "$APP.$AGGREGATE.commands", false, "Write"}, false,
			[]string{"TOPIC_AUTHORIZATION_FAILED", "sending command OpenAccount to bank.bank-account.commands"}},
		{"gateway", "dispatch", grant{"topic", "$APP.replies", false, "Read"}, false,
			[]string{"TOPIC_AUTHORIZATION_FAILED", "reading replies from bank.replies"}},
	} {
		name := fmt.Sprintf("%s without %s on %s %s", c.user, c.g.op, c.g.resource, c.g.resolve(s.app).name)
		if !slices.Contains(slices.Concat(processorACLs, projectorACLs, gatewayACLs), c.g) {
			t.Fatalf("%s: not one of the documented ACLs", name)
		}
		s.setACLs(ctx, c.user, []grant{c.g}, false)
		logs := &logbuf.Buffer{}
		app, err := s.start(ctx, c.user, c.roles, nil, logs)
		var why string
		switch {
		case c.atStart && err == nil:
			t.Errorf("%s: started", name)
		case c.atStart:
			why = err.Error()
		case err != nil:
			t.Errorf("%s: Start: %v", name, err)
		case c.roles == "dispatch":
			// A gateway's command fails at once (one for a new account: if
			// it is written, the processor applies it later).
			dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			_, err := interlock.Dispatch(dctx, app, bank.OpenAccount{Command: interlock.To(interlock.NewID()), Owner: "eve"})
			cancel()
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: Dispatch: %v", name, err)
			} else {
				why = err.Error()
			}
			app.Close(ctx)
		default:
			if c.g.op == "Write" && c.g.resource == "topic" {
				// The processor meets the refusal at its first command
				// (sent without a deadline, so it is applied later).
				if _, err := interlock.Send(ctx, gw, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 1}); err != nil {
					t.Fatal(err)
				}
			}
			why = stopped(ctx, app, logs)
			if why == "" {
				t.Errorf("%s: still running; its log:\n%s", name, logs.Tail(10))
			}
			app.Close(ctx)
		}
		for _, w := range c.want {
			if why != "" && !strings.Contains(why, w) {
				t.Errorf("%s: the error does not say %q: %s", name, w, why)
			}
		}
		if why != "" {
			t.Logf("%s: %s", name, why)
		}
		s.setACLs(ctx, c.user, []grant{c.g}, true)
	}
	// With its ACLs back, a processor applies the commands sent meanwhile.
	proc, err := s.start(ctx, "processor", "process", nil, &logbuf.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close(ctx)
	// The gateway's reader may still hand over a refusal fetched before
	// the grant: the deposit is retried with its command ID, which applies
	// it once.
	deposit := bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id).WithID(interlock.NewID()), Amount: 10}
	res, err := interlock.Dispatch(ctx, gw, deposit)
	for i := 0; i < 5 && err != nil && strings.Contains(err.Error(), "reading replies from bank.replies"); i++ {
		res, err = interlock.Dispatch(ctx, gw, deposit)
	}
	if err != nil || res.Value.Balance != 11 || res.Version != 3 {
		t.Errorf("after the ACLs are back: %+v, %v (want the open, the deposit of 1 and this one: balance 11, version 3)", res, err)
	}
}

// stopped waits until app's processor or projection stops, and returns
// the error it stopped with ("" if it did not within 20 s): a projection's
// Err, or the processor's log line (it has no Err; it is no longer live).
func stopped(ctx context.Context, app *interlock.App, logs *logbuf.Buffer) string {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
		for _, pr := range app.Projectors() {
			if err := pr.Err(); err != nil {
				return err.Error()
			}
		}
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "processor stopped") {
				if app.Live() {
					return "live after: " + l
				}
				return l
			}
		}
	}
	if !app.Live() {
		return "not live, but no log line says why:\n" + logs.String()
	}
	return ""
}
