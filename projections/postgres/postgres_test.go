package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/interlock-go/interlock/internal/pgtest"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/projections/postgres"
	"github.com/interlock-go/interlock/projections/sinktest"
)

func TestConformance(t *testing.T) {
	var current *pgxpool.Pool // the pool of the sink under test
	sinktest.Run(t, sinktest.Config[pgx.Tx]{
		New: func(t *testing.T) projections.Sink[pgx.Tx] {
			pool, _ := pgtest.Pool(t)
			s := postgres.NewSink(pool)
			ctx := context.Background()
			if err := s.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, `CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			current = pool
			return s
		},
		Put: func(ctx context.Context, tx pgx.Tx, k string, v int) error {
			_, err := tx.Exec(ctx, `INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2`, k, v)
			return err
		},
		Get: func(ctx context.Context, k string) (int, bool, error) {
			var v int
			err := current.QueryRow(ctx, `SELECT v FROM kv WHERE k = $1`, k).Scan(&v)
			if errors.Is(err, pgx.ErrNoRows) {
				return 0, false, nil
			}
			return v, err == nil, err
		},
	})
}
