// Package redistest gives tests a real Redis: a client on the server named
// by INTERLOCK_TEST_REDIS_URL and a key prefix of their own, whose keys are
// deleted when the test ends.
package redistest

import (
	"context"
	"fmt"
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
