package redistest

import (
	"context"
	"testing"
)

func TestClientIsolatesKeys(t *testing.T) {
	var prefix string
	t.Run("writer", func(t *testing.T) {
		c, p := Client(t)
		prefix = p
		if err := c.Set(context.Background(), p+"k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(context.Background(), p+"k").Result(); err != nil || v != "v" {
			t.Fatalf("get: %q, %v", v, err)
		}
	})
	c, p := Client(t)
	if p == prefix {
		t.Fatal("two tests got the same prefix")
	}
	if n, err := c.Exists(context.Background(), prefix+"k").Result(); err != nil || n != 0 {
		t.Fatalf("the first test's keys survived it: %d, %v", n, err)
	}
}
