package pgtest

import (
	"context"
	"testing"
)

func TestPoolUsesItsOwnSchema(t *testing.T) {
	pool, schema := Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := pool.QueryRow(ctx, "SELECT table_schema FROM information_schema.tables WHERE table_name = 't'").Scan(&got); err != nil || got != schema {
		t.Fatalf("table created in %q (%v), want %q", got, err, schema)
	}
}
