package snapshot_test

import (
	"context"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/snapshot"
)

// A new owner claims a partition, replays its events from the watermark,
// and writes snapshots with its token; the previous owner's writes are
// refused from then on.
func Example() {
	ctx := context.Background()
	store := snapshot.NewMemory() // or snapshot.NewRedis(ctx, snapshot.RedisConfig{URL: "redis://localhost:6379/0"})
	p := snapshot.Partition{Topic: "bank.bank-account.events", ID: 3}
	id := ulid.MustParse("01J8Z3K5X2V6W7Y8Z9A0B1C2D3")

	old, _ := store.Claim(ctx, p)
	_ = store.Save(ctx, p, old.Token, []snapshot.Snapshot{{AggregateID: id, Version: 1, Offset: 41, State: []byte(`{"Balance":10}`)}}, 42)

	cur, _ := store.Claim(ctx, p) // a new owner: replay from cur.Watermark
	fmt.Println("replay from", cur.Watermark, cur.HasWatermark)

	err := store.Save(ctx, p, old.Token, nil, 100)
	fmt.Println("old owner:", err)

	snaps, _, _ := store.Load(ctx, p, []ulid.ULID{id})
	fmt.Printf("%s at version %d\n", snaps[id].State, snaps[id].Version)
	// Output:
	// replay from 42 true
	// old owner: snapshot: fenced: the partition has another owner
	// {"Balance":10} at version 1
}
