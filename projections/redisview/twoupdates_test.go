package redisview_test

import (
	"context"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/redistest"
	"github.com/interlock-go/interlock/projections/redisview"
)

func TestTwoUpdatesOfOneEvent(t *testing.T) {
	client, prefix := redistest.Client(t)
	s := redisview.NewSink(client, prefix)
	ctx := context.Background()
	e := aggregate.EventEnvelope{AggregateID: ulid.Make(), Version: 1}
	err := s.Apply(ctx, "p", nil, func(ctx context.Context, b *redisview.Batch) error {
		b.Update(e).Set("owner", "ada")
		b.Update(e).Incr("balance", 10) // a second field, written by a helper, say
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := client.HGetAll(ctx, s.Key(e.AggregateID)).Result()
	t.Logf("hash: %v", h)
	if _, ok := h["balance"]; !ok {
		t.Errorf("the second Update of the same event was dropped silently")
	}
}
