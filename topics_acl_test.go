package interlock_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/projections"
)

// TestStartWithoutCreate: a principal that may not create topics (on an
// embedded Kafka with ACLs) is told which topics are missing, and starts
// once an admin has created them; its commands are applied. The real
// broker's version of this is service.TestSecuredKafka.
func TestStartWithoutCreate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	allow := func(rt kmsg.ACLResourceType, name string, op kmsg.ACLOperation) kfake.ACL {
		return kfake.ACL{Resource: rt, Name: name, Pattern: kmsg.ACLResourcePatternTypePrefixed, Operation: op, Allow: true}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-512", "admin", "admin-pw"),
		kfake.User("SCRAM-SHA-512", "svc", "svc-pw",
			allow(kmsg.ACLResourceTypeTopic, "shop.", kmsg.ACLOperationRead),
			allow(kmsg.ACLResourceTypeTopic, "shop.", kmsg.ACLOperationWrite),
			allow(kmsg.ACLResourceTypeTopic, "shop.", kmsg.ACLOperationDescribeConfigs),
			allow(kmsg.ACLResourceTypeGroup, "shop.", kmsg.ACLOperationRead),
			allow(kmsg.ACLResourceTypeTransactionalId, "shop.", kmsg.ACLOperationWrite)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	as := func(user, pw string) *interlock.App {
		app, err := interlock.NewBuilder(interlock.WithBrokers(c.ListenAddrs()...), interlock.WithName("shop"), interlock.WithPartitions(2),
			interlock.WithLogger(testLogger()), interlock.WithInstanceID(user),
			interlock.WithClientOptions(kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha512Mechanism())),
		).RegisterAggregate(bank.Accounts()).Build()
		if err != nil {
			t.Fatal(err)
		}
		return app
	}

	svc := as("svc", "svc-pw")
	err = svc.Start(ctx)
	if !errors.Is(err, kerr.TopicAuthorizationFailed) || !strings.Contains(err.Error(), "shop.bank-account.commands") ||
		!strings.Contains(err.Error(), "do not exist and this principal may not create them") {
		t.Fatalf("starting without Create before the topics exist: %v", err)
	}
	if err := as("admin", "admin-pw").CreateTopics(ctx); err != nil {
		t.Fatalf("topics create as the admin: %v", err)
	}
	svc = as("svc", "svc-pw")
	if err := svc.Start(ctx); err != nil {
		t.Fatalf("starting without Create on existing topics: %v", err)
	}
	defer svc.Close(ctx)
	if !svc.Live() {
		t.Error("not live right after Start")
	}
	res, err := interlock.Dispatch(ctx, svc, bank.OpenAccount{Command: interlock.To(interlock.NewID()), Owner: "ada"})
	if err != nil || res.Version != 1 {
		t.Fatalf("open: %+v, %v", res, err)
	}
}

// TestRefusedACLs: on an embedded Kafka with ACLs, an instance missing one
// ACL fails with an error that names what was refused, instead of
// retrying while it looks healthy. The real broker's version of this is
// service.TestSecuredKafka.
func TestRefusedACLs(t *testing.T) {
	all := []kfake.ACL{
		{Resource: kmsg.ACLResourceTypeTopic, Name: "shop.", Operation: kmsg.ACLOperationRead},
		{Resource: kmsg.ACLResourceTypeTopic, Name: "shop.", Operation: kmsg.ACLOperationWrite},
		{Resource: kmsg.ACLResourceTypeTopic, Name: "shop.", Operation: kmsg.ACLOperationDescribeConfigs},
		{Resource: kmsg.ACLResourceTypeTopic, Name: "shop.", Operation: kmsg.ACLOperationCreate},
		{Resource: kmsg.ACLResourceTypeGroup, Name: "shop.", Operation: kmsg.ACLOperationRead},
		{Resource: kmsg.ACLResourceTypeTransactionalId, Name: "shop.", Operation: kmsg.ACLOperationWrite},
	}
	for i := range all {
		all[i].Pattern, all[i].Allow = kmsg.ACLResourcePatternTypePrefixed, true
	}
	deny := func(rt kmsg.ACLResourceType, name string, op kmsg.ACLOperation) kfake.ACL {
		return kfake.ACL{Resource: rt, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op}
	}
	for _, c := range []struct {
		name  string
		deny  kfake.ACL
		roles interlock.Role
		// atStart: Start fails; otherwise Dispatch does (gateway), or the
		// processor stops (not live).
		atStart bool
		want    string
	}{
		{"transactional ID", deny(kmsg.ACLResourceTypeTransactionalId, "shop.processor.svc", kmsg.ACLOperationWrite), interlock.RoleProcess, true,
			"transactional ID shop.processor.svc"},
		{"group", deny(kmsg.ACLResourceTypeGroup, "shop.processors", kmsg.ACLOperationRead), interlock.RoleProcess, false,
			"group shop.processors"},
		{"replies", deny(kmsg.ACLResourceTypeTopic, "shop.replies", kmsg.ACLOperationRead), interlock.RoleDispatch, false,
			"reading replies from shop.replies"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
				kfake.Superuser("SCRAM-SHA-512", "admin", "admin-pw"),
				kfake.User("SCRAM-SHA-512", "svc", "svc-pw", append(all[:len(all):len(all)], c.deny)...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			logs := &logbuf.Buffer{}
			app, err := interlock.NewBuilder(interlock.WithBrokers(cl.ListenAddrs()...), interlock.WithName("shop"), interlock.WithPartitions(2),
				interlock.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), interlock.WithInstanceID("svc"), interlock.WithRoles(c.roles),
				interlock.WithClientOptions(kgo.SASL(scram.Auth{User: "svc", Pass: "svc-pw"}.AsSha512Mechanism())),
			).RegisterAggregate(bank.Accounts()).Build()
			if err != nil {
				t.Fatal(err)
			}
			err = app.Start(ctx)
			var why string
			switch {
			case c.atStart:
				if err == nil {
					app.Close(ctx)
					t.Fatal("started")
				}
				why = err.Error()
			case err != nil:
				t.Fatal(err)
			case c.roles == interlock.RoleDispatch:
				defer app.Close(ctx)
				_, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(interlock.NewID()), Owner: "ada"})
				if err == nil || errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Dispatch: %v", err)
				}
				why = err.Error()
			default:
				defer app.Close(ctx)
				for app.Live() && ctx.Err() == nil {
					time.Sleep(10 * time.Millisecond) // polling the probe, as Kubernetes does
				}
				if app.Live() || app.Ready() {
					t.Fatalf("stopped, yet live %v, ready %v", app.Live(), app.Ready())
				}
				why = logs.String()
			}
			if !strings.Contains(why, c.want) || !strings.Contains(why, "AUTHORIZATION_FAILED") {
				t.Errorf("the error does not say %q and AUTHORIZATION_FAILED: %s", c.want, why)
			}
		})
	}
}

// TestRefusedProjectionOutput: a projection on the Kafka sink that may not
// write the topic its handler produces to stops, naming the topic,
// instead of aborting and retrying its batch forever.
func TestRefusedProjectionOutput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefixed := func(rt kmsg.ACLResourceType, op kmsg.ACLOperation) kfake.ACL {
		return kfake.ACL{Resource: rt, Name: "shop.", Pattern: kmsg.ACLResourcePatternTypePrefixed, Operation: op, Allow: true}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(), kfake.SeedTopics(1, "feed"),
		kfake.Superuser("SCRAM-SHA-512", "admin", "admin-pw"),
		kfake.User("SCRAM-SHA-512", "svc", "svc-pw",
			prefixed(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationCreate), prefixed(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationRead),
			prefixed(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationWrite), prefixed(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationDescribeConfigs),
			prefixed(kmsg.ACLResourceTypeGroup, kmsg.ACLOperationRead), prefixed(kmsg.ACLResourceTypeTransactionalId, kmsg.ACLOperationWrite)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	feed := projections.New("feed", projections.Kafka())
	projections.On(feed, func(_ context.Context, out *projections.Output, e projections.Event[bank.AccountOpened]) error {
		out.Produce(&kgo.Record{Topic: "feed", Value: []byte(e.Data.Owner)}) // not the service's: no Write on it
		return nil
	})
	app, err := interlock.NewBuilder(interlock.WithBrokers(c.ListenAddrs()...), interlock.WithName("shop"), interlock.WithPartitions(1),
		interlock.WithLogger(testLogger()), interlock.WithInstanceID("svc"),
		interlock.WithClientOptions(kgo.SASL(scram.Auth{User: "svc", Pass: "svc-pw"}.AsSha512Mechanism())),
	).RegisterAggregate(bank.Accounts()).RegisterProjection(feed).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(interlock.NewID()), Owner: "ada"}); err != nil {
		t.Fatal(err)
	}
	pr := app.Projection("feed")
	for pr.Err() == nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // polling Err, as projections status does
	}
	if err := pr.Err(); !errors.Is(err, kerr.TopicAuthorizationFailed) || !strings.Contains(err.Error(), "producing to feed") {
		t.Fatalf("the projection's error: %v", err)
	}
}
