package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/projections"
)

// projectionResult is the projection phase: events/s through projectors
// that read the restore phase's events topic from its start, beside
// raw_consume of the same topic.
type projectionResult struct {
	// KafkaToKafka is the workload's Export: each event as a record of
	// another topic, in Kafka transactions with the consumed offsets
	// (projections.Kafka()). Zero when the workload has no Export.
	KafkaToKafka throughput `json:"kafka_to_kafka"`
	// Postgres is the workload's ReadModel (the bank's balances), each
	// batch and its offsets in one database transaction (package
	// postgres). Zero when no --postgres DSN is given or the workload has
	// no ReadModel.
	Postgres throughput `json:"postgres"`
}

// projectionPhase runs the workload's projectors over the events of the
// app name (events written in its events topic) and times each from its
// start until it has applied the last event of every partition. dsn is
// the PostgreSQL of the read model ("" skips it).
func (b *bencher) projectionPhase(ctx context.Context, name string, events int64, dsn string) (projectionResult, error) {
	var res projectionResult
	if b.work.Export == nil && b.work.ReadModel == nil {
		b.say("projection: the workload has no projectors (Export, ReadModel); not measured")
		return res, nil
	}
	topic := b.eventsTopic(name)
	ends, err := b.endOffsets(ctx, topic)
	if err != nil {
		return res, err
	}
	last := map[int32]int64{}
	if err := b.readRange(ctx, topic, nil, ends, func(r *kgo.Record) {
		if !r.Attrs.IsControl() {
			last[r.Partition] = r.Offset
		}
	}); err != nil {
		return res, err
	}
	var positions []interlock.Position
	for p, o := range last {
		positions = append(positions, interlock.Position{Topic: topic, Partition: p, Offset: o})
	}

	if b.work.Export == nil {
		b.say("projection kafka_to_kafka: the workload has no Export; not measured")
	} else {
		export := name + ".export"
		if err := b.createTopic(ctx, export); err != nil {
			return res, err
		}
		b.say("projection kafka_to_kafka: %d events into %s, exactly once", events, export)
		if res.KafkaToKafka, err = b.project(ctx, name, b.work.Export(export), positions, events); err != nil {
			return res, fmt.Errorf("projection kafka_to_kafka: %w", err)
		}
		b.say("projection kafka_to_kafka: %.0f events/s", res.KafkaToKafka.PerSec)
	}

	switch {
	case b.work.ReadModel == nil:
		b.say("projection postgres: the workload has no ReadModel; not measured")
		return res, nil
	case dsn == "":
		b.say("projection postgres: no --postgres DSN; not measured")
		return res, nil
	}
	pool, drop, err := b.benchSchema(ctx, dsn)
	if err != nil {
		return res, fmt.Errorf("projection postgres: %w", err)
	}
	defer drop()
	readModel := b.work.ReadModel(pool)
	b.say("projection postgres: %d events into the read model %s, exactly once", events, readModel.Name())
	if res.Postgres, err = b.project(ctx, name, readModel, positions, events); err != nil {
		return res, fmt.Errorf("projection postgres: %w", err)
	}
	b.say("projection postgres: %.0f events/s", res.Postgres.PerSec)
	return res, nil
}

// project starts an instance of app name that runs only p and times it
// until it has applied the events at positions.
func (b *bencher) project(ctx context.Context, name string, p projections.Runner, positions []interlock.Position, events int64) (throughput, error) {
	app, err := interlock.NewBuilder(
		interlock.WithName(name),
		interlock.WithRoles(interlock.RoleProject),
		interlock.WithBrokers(b.brokers...),
		interlock.WithPartitions(int32(b.cfg.partitions)),
		interlock.WithLogger(b.log),
		interlock.WithClientOptions(append(slices.Clip(b.clientOpts), kgo.ClientID(name+"-"+p.Name()))...),
		interlock.WithCodec(b.work.codec()),
	).RegisterAggregate(b.work.Aggregate).RegisterProjection(p).Build()
	if err != nil {
		return throughput{}, err
	}
	wctx, cancel := b.wait(ctx)
	defer cancel()
	start, cpu := time.Now(), processCPU()
	if err := app.Start(wctx); err != nil {
		return throughput{}, err
	}
	defer b.closeApp(ctx, app)
	if err := app.Projection(p.Name()).WaitFor(wctx, positions); err != nil {
		return throughput{}, err
	}
	s := time.Since(start).Seconds()
	return throughput{Records: events, Seconds: s, PerSec: float64(events) / s, CPUMicros: cpuPer(processCPU()-cpu, events)}, nil
}

// createTopic creates topic with the bench's partition count.
func (b *bencher) createTopic(ctx context.Context, topic string) error {
	cl, err := b.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	wctx, cancel := b.wait(ctx)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(wctx, int32(b.cfg.partitions), -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	return err
}

// benchSchema returns a pool on a new schema of the database at dsn, and
// a function that drops it.
func (b *bencher) benchSchema(ctx context.Context, dsn string) (*pgxpool.Pool, func(), error) {
	wctx, cancel := b.wait(ctx)
	defer cancel()
	schema := "bench_" + strings.ToLower(ulid.Make().String())
	admin, err := pgx.Connect(wctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	if _, err := admin.Exec(wctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close(wctx)
		return nil, nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		admin.Close(wctx)
		return nil, nil, err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(wctx, cfg)
	if err != nil {
		admin.Close(wctx)
		return nil, nil, err
	}
	return pool, func() {
		pool.Close()
		if !b.cfg.keep {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
		}
		admin.Close(context.Background())
	}, nil
}
