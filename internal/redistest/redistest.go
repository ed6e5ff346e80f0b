// Package redistest gives tests a real Redis: a client on the server named
// by INTERLOCK_TEST_REDIS_URL and a key prefix of their own, whose keys are
// deleted when the test ends.
package redistest

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"

	"github.com/interlock-go/interlock/internal/services"
)

// Client returns a client of the test Redis and a key prefix unique to t.
func Client(t testing.TB) (*redis.Client, string) {
	t.Helper()
	url := services.Lookup(t, services.EnvRedis, "Redis")
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("%s=%q: %v", services.EnvRedis, url, err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s does not answer: %v", url, err)
	}
	prefix := fmt.Sprintf("test:%s:", ulid.Make())
	t.Cleanup(func() {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return c, prefix
}

// Proxy is a TCP proxy in front of the test Redis that a test can cut and
// restore, to see what Interlock does while Redis is unreachable without
// stopping the Redis other tests share.
type Proxy struct {
	t      testing.TB
	target string
	ln     net.Listener
	addr   string

	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

// NewProxy starts a proxy to the Redis of url and returns it; URL is the
// proxy's redis:// URL. It is closed when the test ends.
func NewProxy(t testing.TB, url string) *Proxy {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, target: opts.Addr, ln: ln, addr: ln.Addr().String()}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Down()
	})
	return p
}

// URL is the redis:// URL of the proxy.
func (p *Proxy) URL() string { return "redis://" + p.addr + "/0" }

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// Down cuts every connection and refuses new ones, as a dead Redis would.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Up accepts connections again.
func (p *Proxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// URL returns the test Redis's URL (skipping or failing like Client when
// it is not configured).
func URL(t testing.TB) string {
	t.Helper()
	return services.Lookup(t, services.EnvRedis, "Redis")
}
