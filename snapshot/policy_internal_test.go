package snapshot

import (
	"errors"
	"testing"
)

func TestEvictionPolicy(t *testing.T) {
	for policy, ok := range map[string]bool{"noeviction": true, "volatile-lru": true, "volatile-ttl": true, "allkeys-lru": false, "allkeys-random": false, "": true} {
		if err := checkPolicy(policy); (err == nil) != ok || (err != nil && !errors.Is(err, ErrEvictionPolicy)) {
			t.Errorf("policy %q: %v", policy, err)
		}
	}
}
