package service

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/kafkaregistry"
)

type ledger struct{ Total int64 }

// ledgerV1 is the version already deployed.
func ledgerV1() aggregate.Type {
	type Post struct {
		interlock.Command
		Amount int64 `avro:"amount"`
	}
	type Posted struct {
		Amount int64 `avro:"amount"`
	}
	return aggregate.Define[ledger]("ledger",
		aggregate.Handle(func(r *aggregate.Root[ledger], c Post) error { r.Emit(Posted{Amount: c.Amount}); return nil }),
		aggregate.Apply(func(s *ledger, e Posted) { s.Total += e.Amount }))
}

// ledgerV2 adds a field without a default to the command and to the event.
func ledgerV2() aggregate.Type {
	type Post struct {
		interlock.Command
		Amount int64  `avro:"amount"`
		Note   string `avro:"note"`
	}
	type Posted struct {
		Amount   int64  `avro:"amount"`
		Currency string `avro:"currency"`
	}
	return aggregate.Define[ledger]("ledger",
		aggregate.Handle(func(r *aggregate.Root[ledger], c Post) error { r.Emit(Posted{Amount: c.Amount}); return nil }),
		aggregate.Apply(func(s *ledger, e Posted) { s.Total += e.Amount }))
}

// TestSchemaCheck: `schema check` passes for the deployed version and
// fails for an incompatible one, naming every type, field and rule broken
// (Main exits 1), and registers nothing.
func TestSchemaCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithPartitions(1),
		interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))).RegisterAggregate(ledgerV1()).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(ctx); err != nil {
		t.Fatal(err)
	}

	check := func(typ aggregate.Type) (string, error) {
		var out bytes.Buffer
		build := func(_ context.Context, cfg *Config) (*interlock.Builder, error) {
			return interlock.NewBuilder(cfg.Options()...).RegisterAggregate(typ), nil
		}
		err := Run(ctx, []string{"schema", "check", "--brokers", strings.Join(brokers, ","), "--name", name}, &out, io.Discard, build)
		return out.String(), err
	}
	if out, err := check(ledgerV1()); err != nil || !strings.Contains(out, "schemas ok") {
		t.Fatalf("schema check of the deployed version: %v\n%s", err, out)
	}
	out, err := check(ledgerV2())
	var ie *schema.IncompatibleError
	if !errors.As(err, &ie) || errors.Is(err, ErrUsage) || strings.Contains(out, "schemas ok") {
		t.Fatalf("schema check of an incompatible version: %v\n%s", err, out)
	}
	for _, want := range []string{"Post.note", "Posted.currency", "field added without a default", "BACKWARD_TRANSITIVE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("schema check's error does not name %q:\n%v", want, err)
		}
	}

	reg, err := kafkaregistry.New(ctx, kafkaregistry.Topic(name+"._schemas"), kafkaregistry.ClientOpts(kgo.SeedBrokers(brokers...)))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	subject := schema.TopicRecordName(name+".ledger.events", "github.com.interlock_go.interlock.service.Posted")
	if vs, err := reg.Versions(ctx, subject); err != nil || len(vs) != 1 {
		t.Errorf("versions of %s after the checks: %+v, %v; want only the deployed one", subject, vs, err)
	}
}
