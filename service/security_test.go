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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/internal/securekafka"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/projections"
)

// grant is one ACL of docs/security.md: an operation on a resource, whose
// name may hold $APP (the application name) and $PROJECTION.
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
		{"topic", "$APP.bank-account.commands", false, "Write"},
		{"topic", "$APP.replies", false, "Read"},
	}
	// process: consume commands in the group, write events and replies in
	// transactions, read events to restore.
	processorACLs = []grant{
		{"topic", "$APP.bank-account.commands", false, "Read"},
		{"topic", "$APP.bank-account.events", false, "Read"},
		{"topic", "$APP.bank-account.events", false, "Write"},
		{"topic", "$APP.replies", false, "Write"},
		{"group", "$APP.processors", false, "Read"},
		{"transactional-id", "$APP.processor.", true, "Write"},
	}
	// project (one projection with the Kafka sink): consume events in its
	// group, park failures in its dead-letter topic, in transactions.
	projectorACLs = []grant{
		{"topic", "$APP.bank-account.events", false, "Read"},
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

func (g grant) resolve(app, projection string) grant {
	g.name = strings.NewReplacer("$APP", app, "$PROJECTION", projection).Replace(g.name)
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

// line is g as a kafka-acls.sh command line.
func (g grant) line(principal string) string {
	s := fmt.Sprintf(`kafka-acls.sh --bootstrap-server "$BROKERS" --command-config admin.properties --add --allow-principal "User:%s" --operation %s --%s "%s"`,
		principal, g.op, g.resource, g.name)
	if g.prefixed {
		s += " --resource-pattern-type prefixed"
	}
	return s
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
		g = g.resolve(s.app, "audit")
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
// docs/security.md, after an admin created the topics. A command is
// applied, its events are read back, the projection sees them.
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
	if _, err := s.start(ctx, "processor", "process", nil, logs); err != nil {
		t.Fatalf("the processor: %v", err)
	}
	s.setACLs(ctx, "processor", createACLs, false)
	if _, err := s.start(ctx, "projector", "project", seen, logs); err != nil {
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
}
