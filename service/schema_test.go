package service

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/internal/logbuf"
	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/httpregistry"
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

// TestSchemaCheckExternalRegistry: with --schema-registry the schemas live
// in a Confluent-compatible registry (here over TLS with basic auth):
// serve's application registers them there, and schema check, with no
// Kafka at all, checks against it at the level --schema-compatibility
// sets.
func TestSchemaCheckExternalRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("key:s3cr3t-password"))
	fake := srfake.NewRegistry(srfake.WithAuth(basic))
	srv := httptest.NewTLSServer(fake.Handler())
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	password := filepath.Join(dir, "password")
	if err := os.WriteFile(password, []byte("s3cr3t-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	registryArgs := []string{"--schema-registry", srv.URL, "--schema-registry-username", "key",
		"--schema-registry-password-file", password, "--schema-registry-ca-file", ca, "--name", name}
	runIn := func(ctx context.Context, logs io.Writer, typ aggregate.Type, args ...string) (string, error) {
		var out bytes.Buffer
		build := func(_ context.Context, cfg *Config) (*interlock.Builder, error) {
			return interlock.NewBuilder(cfg.Options()...).RegisterAggregate(typ), nil
		}
		err := Run(ctx, args, &out, logs, build)
		return out.String(), err
	}
	run := func(typ aggregate.Type, args ...string) (string, error) { return runIn(ctx, io.Discard, typ, args...) }

	// The deployed version, started as serve would: its schemas go to the
	// registry, none to a built-in one.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	logs := &logbuf.Buffer{}
	go func() {
		_, err := runIn(runCtx, logs, ledgerV1(), append([]string{"serve", "--brokers", strings.Join(brokers, ","), "--partitions", "1", "--http", "off"}, registryArgs...)...)
		done <- err
	}()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(logs.String(), `"msg":"interlock: started"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve never started:\n%s", logs)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v\n%s", err, logs)
	}
	subject := schema.TopicRecordName(name+".ledger.events", "github.com.interlock_go.interlock.service.Posted")
	reg, err := httpregistry.New(httpregistry.URLs(srv.URL), httpregistry.BasicAuth("key", "s3cr3t-password"),
		httpregistry.TLS(&tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}))
	if err != nil {
		t.Fatal(err)
	}
	if vs, err := reg.Versions(ctx, subject); err != nil || len(vs) != 1 {
		t.Fatalf("serve registered %+v, %v under %s; want one version", vs, err, subject)
	}
	if tp, err := topicExists(ctx, brokers, name+"._schemas"); err != nil || tp {
		t.Errorf("the built-in registry's topic exists (%v, %v): the schemas went there too", tp, err)
	}

	check := append([]string{"schema", "check"}, registryArgs...)
	if out, err := run(ledgerV1(), check...); err != nil || !strings.Contains(out, "schemas ok") {
		t.Fatalf("schema check of the deployed version: %v\n%s", err, out)
	}
	var ie *schema.IncompatibleError
	if _, err := run(ledgerV2(), check...); !errors.As(err, &ie) || !strings.Contains(err.Error(), "Posted.currency") {
		t.Fatalf("schema check of an incompatible version: %v", err)
	}
	// At FORWARD the deployed code reads the new events (it ignores the
	// added fields): accepted.
	if out, err := run(ledgerV2(), append(check, "--schema-compatibility", "forward")...); err != nil {
		t.Fatalf("schema check at FORWARD: %v\n%s", err, out)
	}
	if err := os.WriteFile(password, []byte("wrong-password"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(ledgerV1(), check...); err == nil || !strings.Contains(err.Error(), "not authorized") || strings.Contains(err.Error(), "wrong-password") {
		t.Fatalf("schema check with a wrong password: %v", err)
	}
}

// topicExists reports whether topic exists on brokers.
func topicExists(ctx context.Context, brokers []string, topic string) (bool, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return false, err
	}
	defer cl.Close()
	tds, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return false, err
	}
	return tds.Has(topic), nil
}
