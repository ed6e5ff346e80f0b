package httpregistry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/interlock-go/interlock/schema"
	"github.com/interlock-go/interlock/schema/registrytest"
)

func TestConformance(t *testing.T) {
	fake := srfake.New()
	t.Cleanup(fake.Close)
	open := func(t *testing.T) schema.Registry {
		r, err := New(URLs(fake.URL()))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	registrytest.Run(t, open, func(t *testing.T, _ schema.Registry) schema.Registry { return open(t) })
}

func TestAuthAndTLS(t *testing.T) {
	ctx := context.Background()
	const v1 = `{"type":"record","name":"a.B","fields":[{"name":"x","type":"long"}]}`
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("key:secret"))

	tlsFake := srfake.NewRegistry(srfake.WithAuth("Bearer tok"))
	tlsSrv := httptest.NewTLSServer(tlsFake.Handler())
	t.Cleanup(tlsSrv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())

	basicFake := srfake.New(srfake.WithAuth(basic))
	t.Cleanup(basicFake.Close)

	tests := []struct {
		name    string
		opts    []Opt
		wantErr string // "" for success
	}{
		{"basic auth", []Opt{URLs(basicFake.URL()), BasicAuth("key", "secret")}, ""},
		{"basic auth and an empty token", []Opt{URLs(basicFake.URL()), BasicAuth("key", "secret"), BearerToken("")}, ""},
		{"basic auth, wrong secret", []Opt{URLs(basicFake.URL()), BasicAuth("key", "nope")}, "User not authorized"},
		{"no auth", []Opt{URLs(basicFake.URL())}, "Missing Authorization header"},
		{"TLS and bearer token", []Opt{URLs(tlsSrv.URL), TLS(&tls.Config{RootCAs: roots}), BearerToken("tok")}, ""},
		{"TLS, unknown CA", []Opt{URLs(tlsSrv.URL), BearerToken("tok")}, "certificate"},
		{"TLS, wrong token", []Opt{URLs(tlsSrv.URL), TLS(&tls.Config{RootCAs: roots}), BearerToken("other")}, "User not authorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			id, err := r.Register(ctx, "s", v1)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// A new Registry, so the ID is fetched, not remembered.
			r2, _ := New(tc.opts...)
			if got, err := r2.SchemaByID(ctx, id); err != nil || got != v1 {
				t.Errorf("SchemaByID(%d) = %q, %v", id, got, err)
			}
		})
	}
}

// TestRotatedSecrets: the Func forms ask for the secret before every
// request, so a token or password rotated while the process runs is used
// from the next request on; an error getting it fails the request.
func TestRotatedSecrets(t *testing.T) {
	ctx := context.Background()
	const v1 = `{"type":"record","name":"a.B","fields":[{"name":"x","type":"long"}]}`
	for _, tc := range []struct {
		name string
		auth string // the registry's, for the secret "new"
		opt  func(func(context.Context) (string, error)) Opt
	}{
		{"bearer token", "Bearer new", BearerTokenFunc},
		{"basic auth", "Basic " + base64.StdEncoding.EncodeToString([]byte("key:new")),
			func(f func(context.Context) (string, error)) Opt { return BasicAuthFunc("key", f) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := srfake.New(srfake.WithAuth(tc.auth))
			t.Cleanup(fake.Close)
			var mu sync.Mutex
			secret, fail := "old", error(nil)
			r, err := New(URLs(fake.URL()), tc.opt(func(context.Context) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				return secret, fail
			}))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Register(ctx, "s", v1); err == nil || !strings.Contains(err.Error(), "not authorized") {
				t.Fatalf("with the old secret: %v, want refused", err)
			}
			mu.Lock()
			secret = "new"
			mu.Unlock()
			if _, err := r.Register(ctx, "s", v1); err != nil {
				t.Fatalf("with the rotated secret: %v", err)
			}
			mu.Lock()
			fail = errors.New("token file gone")
			mu.Unlock()
			if _, err := r.Versions(ctx, "s"); err == nil || !strings.Contains(err.Error(), "token file gone") {
				t.Fatalf("when the secret cannot be had: %v", err)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		opts []Opt
		want string
	}{
		{[]Opt{URLs()}, "no URLs"},
		{[]Opt{URLs("ftp://x")}, `URL "ftp://x"`},
		{[]Opt{URLs("localhost:8081")}, `URL "localhost:8081"`},
		{[]Opt{URLs("http://u:p@host")}, "holds credentials: use BasicAuth"},
		{[]Opt{BasicAuth("a", "b"), BearerToken("t")}, "choose one"},
		{[]Opt{BearerTokenFunc(fixed("t")), BearerToken("t")}, "choose one"},
		{[]Opt{BearerTokenFunc(nil)}, "nil function"},
		{[]Opt{BasicAuthFunc("u", nil)}, "nil function"},
		// A mistyped scheme with credentials: the error must not show them.
		{[]Opt{URLs("htps://key:s3cret@host")}, `URL "htps://key:xxxxx@host"`},
		{[]Opt{URLs("http://key:s3cret@host:bad port")}, "URL (not a URL): want"},
	}
	for _, tc := range tests {
		_, err := New(tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("err = %v shows the password", err)
		}
	}
}

func TestRegistryErrors(t *testing.T) {
	ctx := context.Background()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	r, _ := New(URLs(fake.URL()))
	// The registry refuses a schema (its own compatibility setting).
	fake.Intercept(func(w http.ResponseWriter, req *http.Request) bool {
		if req.Method != http.MethodPost {
			return false
		}
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema"}`))
		return true
	})
	if _, err := r.Register(ctx, "s", `"long"`); err == nil || !strings.Contains(err.Error(), "incompatible with an earlier schema") {
		t.Errorf("refused registration: err = %v", err)
	}
	fake.ClearInterceptors()

	// Down: an error that is not ErrUnknownSchema.
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	r, _ = New(URLs(down.URL))
	if _, err := r.SchemaByID(ctx, 1); err == nil || errors.Is(err, schema.ErrUnknownSchema) {
		t.Errorf("registry down: err = %v, want a failure that is not ErrUnknownSchema", err)
	}
	if _, err := r.Versions(ctx, "s"); err == nil {
		t.Error("registry down: Versions succeeded")
	}
}

// The fake registry says "compatible" to everything: the check that
// refuses an incompatible change is Interlock's own, made before the
// registry is asked to register anything.
func TestLocalCompatibilityCheck(t *testing.T) {
	ctx := context.Background()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	r, err := New(URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := schema.Avro(schema.AvroRegistry(r)).For(reflect.TypeFor[depositedV1]())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Register(ctx, v1, "bank.events"); err != nil {
		t.Fatal(err)
	}
	v2, err := schema.Avro(schema.AvroRegistry(r)).For(reflect.TypeFor[depositedV2]())
	if err != nil {
		t.Fatal(err)
	}
	_, err = schema.Register(ctx, v2, "bank.events")
	var ie *schema.IncompatibleError
	if !errors.As(err, &ie) || !strings.HasSuffix(ie.Path, ".currency") || !strings.Contains(ie.Rule, "without a default") {
		t.Fatalf("err = %v, want the new field currency refused", err)
	}
	if fake.SubjectExists("bank.events-bank.Deposited") {
		if s, ok := fake.GetSchema("bank.events-bank.Deposited", 2); ok {
			t.Errorf("the incompatible schema was registered: %+v", s)
		}
	}
}

type depositedV1 struct {
	Amount int64 `avro:"amount"`
}

func (depositedV1) AvroSchema() string {
	return `{"type":"record","name":"bank.Deposited","fields":[{"name":"amount","type":"long"}]}`
}

type depositedV2 struct {
	Amount   int64  `avro:"amount"`
	Currency string `avro:"currency"`
}

func (depositedV2) AvroSchema() string {
	return `{"type":"record","name":"bank.Deposited","fields":[{"name":"amount","type":"long"},{"name":"currency","type":"string"}]}`
}
