// Package httpregistry is a schema.Registry backed by a Confluent-compatible
// schema registry over HTTP (Confluent Schema Registry, Redpanda, Karapace,
// Apicurio's ccompat API), through franz-go's pkg/sr.
//
// Only Avro schemas are registered. The registry's own compatibility
// setting still applies when a schema is registered (a registry refuses
// what breaks it), but Interlock does not rely on it: schema.Check and
// schema.Register check compatibility locally first.
package httpregistry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/interlock-go/interlock/schema"
)

// Opt configures a Registry.
type Opt interface{ apply(*config) }

type config struct {
	urls      []string
	user      string
	pass      func(context.Context) (string, error)
	token     func(context.Context) (string, error)
	auths     int  // how many of the auth options were given
	nilAuth   bool // one was given a nil function
	tls       *tls.Config
	http      *http.Client
	userAgent string
}

// fixed returns a secret function of a secret that does not change.
func fixed(s string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return s, nil }
}

type optFunc func(*config)

func (f optFunc) apply(c *config) { f(c) }

// URLs sets the registry's URLs, tried in order when one cannot be
// reached. Default: http://localhost:8081.
func URLs(urls ...string) Opt {
	return optFunc(func(c *config) { c.urls = append([]string(nil), urls...) })
}

// BasicAuth authenticates every request with HTTP basic auth (e.g. an API
// key and secret). Only one of the auth options may be given.
func BasicAuth(user, pass string) Opt { return BasicAuthFunc(user, fixed(pass)) }

// BasicAuthFunc is BasicAuth with the password pass returns before each
// request: one read from a file that is rotated, say. An error fails the
// request, saying so.
func BasicAuthFunc(user string, pass func(context.Context) (string, error)) Opt {
	return optFunc(func(c *config) {
		c.user, c.pass, c.token = user, pass, nil
		c.auths++
		c.nilAuth = c.nilAuth || pass == nil
	})
}

// BearerToken authenticates every request with "Authorization: Bearer
// token"; an empty token sets nothing. Only one of the auth options may
// be given.
func BearerToken(token string) Opt {
	if token == "" {
		return optFunc(func(*config) {})
	}
	return BearerTokenFunc(fixed(token))
}

// BearerTokenFunc is BearerToken with the token token returns before each
// request: a short-lived token read from the file its issuer rotates
// (a Kubernetes projected service account token, say). An error fails the
// request, saying so.
func BearerTokenFunc(token func(context.Context) (string, error)) Opt {
	return optFunc(func(c *config) {
		c.token, c.pass = token, nil
		c.auths++
		c.nilAuth = c.nilAuth || token == nil
	})
}

// TLS sets the TLS configuration of https URLs (CA, client certificate
// for mutual TLS). Default: the system's roots.
func TLS(cfg *tls.Config) Opt {
	return optFunc(func(c *config) { c.tls = cfg })
}

// HTTPClient sets the HTTP client (timeouts, proxies, retries in its
// Transport). Default: a client with a 5s timeout and no retries.
func HTTPClient(cl *http.Client) Opt {
	return optFunc(func(c *config) { c.http = cl })
}

// UserAgent sets the User-Agent of requests. Default: "interlock".
func UserAgent(ua string) Opt {
	return optFunc(func(c *config) { c.userAgent = ua })
}

// authorize sets the Authorization header of req from the current secret.
func (c *config) authorize(req *http.Request) error {
	if c.token != nil {
		tok, err := c.token(req.Context())
		if err != nil {
			return fmt.Errorf("httpregistry: the bearer token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
	pass, err := c.pass(req.Context())
	if err != nil {
		return fmt.Errorf("httpregistry: the password: %w", err)
	}
	req.SetBasicAuth(c.user, pass)
	return nil
}

// Registry is a schema.Registry over HTTP. It remembers the schemas it
// fetched by ID (an ID never changes its schema); subjects are asked
// every time. Safe for concurrent use.
type Registry struct {
	cl   *sr.Client
	mu   sync.RWMutex
	byID map[uint32]string
}

var _ schema.Registry = (*Registry)(nil)

// New returns a Registry of the registry at the configured URLs. It does
// not connect: the first request does.
func New(opts ...Opt) (*Registry, error) {
	c := config{urls: []string{"http://localhost:8081"}, userAgent: "interlock"}
	for _, o := range opts {
		o.apply(&c)
	}
	if len(c.urls) == 0 {
		return nil, errors.New("httpregistry: no URLs")
	}
	for _, u := range c.urls {
		p, err := url.Parse(u)
		if err != nil {
			// The text may hold a password: it is not repeated.
			return nil, errors.New("httpregistry: URL (not a URL): want http://host[:port][/path] or https://...")
		}
		if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("httpregistry: URL %q: want http://host[:port][/path] or https://...", p.Redacted())
		}
		if p.User != nil {
			return nil, fmt.Errorf("httpregistry: URL %q holds credentials: use BasicAuth", p.Redacted())
		}
	}
	if c.nilAuth {
		return nil, errors.New("httpregistry: BasicAuthFunc or BearerTokenFunc given a nil function")
	}
	if c.auths > 1 {
		return nil, errors.New("httpregistry: more than one of BasicAuth and BearerToken (or their Func forms) set: choose one")
	}
	srOpts := []sr.ClientOpt{sr.URLs(c.urls...), sr.UserAgent(c.userAgent)}
	if c.http != nil {
		srOpts = append(srOpts, sr.HTTPClient(c.http))
	}
	if c.tls != nil {
		srOpts = append(srOpts, sr.DialTLSConfig(c.tls))
	}
	if c.pass != nil || c.token != nil {
		srOpts = append(srOpts, sr.PreReq(c.authorize))
	}
	cl, err := sr.NewClient(srOpts...)
	if err != nil {
		return nil, fmt.Errorf("httpregistry: %w", err)
	}
	return &Registry{cl: cl, byID: map[uint32]string{}}, nil
}

// Register registers the Avro schema text under subject and returns its
// ID. A registry that refuses it (HTTP 409: incompatible under the
// registry's own setting; 422: invalid) answers with an error that says so.
func (r *Registry) Register(ctx context.Context, subject, text string) (uint32, error) {
	id, err := r.cl.RegisterSchema(ctx, subject, sr.Schema{Schema: text, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		return 0, fmt.Errorf("httpregistry: registering under subject %q: %w", subject, err)
	}
	if id <= 0 || id > 1<<31-1 {
		return 0, fmt.Errorf("httpregistry: registering under subject %q: the registry answered ID %d", subject, id)
	}
	r.remember(uint32(id), text)
	return uint32(id), nil
}

// SchemaByID returns the schema text of id; an error wrapping
// schema.ErrUnknownSchema when the registry has none.
func (r *Registry) SchemaByID(ctx context.Context, id uint32) (string, error) {
	r.mu.RLock()
	text, ok := r.byID[id]
	r.mu.RUnlock()
	if ok {
		return text, nil
	}
	if id > 1<<31-1 { // not an ID a registry hands out: not worth a request
		return "", fmt.Errorf("httpregistry: schema ID %d: %w", id, schema.ErrUnknownSchema)
	}
	s, err := r.cl.SchemaByID(ctx, int(id))
	if err != nil {
		if code(err) == sr.ErrSchemaNotFound.Code {
			return "", fmt.Errorf("httpregistry: schema ID %d: %w (%w)", id, schema.ErrUnknownSchema, err)
		}
		return "", fmt.Errorf("httpregistry: schema ID %d: %w", id, err)
	}
	if t := s.Type; t != sr.TypeAvro {
		return "", fmt.Errorf("httpregistry: schema ID %d is a %v schema, not Avro: %w", id, t, schema.ErrUnknownSchema)
	}
	r.remember(id, s.Schema)
	return s.Schema, nil
}

// Versions returns the schemas registered under subject, oldest first
// (soft-deleted versions left out); none for an unknown subject.
func (r *Registry) Versions(ctx context.Context, subject string) ([]schema.Version, error) {
	ss, err := r.cl.Schemas(ctx, subject)
	if err != nil {
		if code(err) == sr.ErrSubjectNotFound.Code {
			return nil, nil
		}
		return nil, fmt.Errorf("httpregistry: versions of subject %q: %w", subject, err)
	}
	vs := make([]schema.Version, 0, len(ss))
	for _, s := range ss {
		if s.Type != sr.TypeAvro {
			return nil, fmt.Errorf("httpregistry: subject %q version %d is a %v schema, not Avro", subject, s.Version, s.Type)
		}
		vs = append(vs, schema.Version{Version: s.Version, ID: uint32(s.ID), Schema: s.Schema.Schema})
		r.remember(uint32(s.ID), s.Schema.Schema)
	}
	return vs, nil
}

func (r *Registry) remember(id uint32, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[id] = strings.Clone(text)
}

// code returns the registry's error code of err, or 0.
func code(err error) int {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return 0
}
