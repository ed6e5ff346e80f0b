package bench

import (
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/projections"
	"github.com/interlock-go/interlock/schema"
)

// Workload is the domain a bench measures: one aggregate type, the
// command that creates each of its aggregates and the command the timed
// phases send, and optionally the projectors of the projection phase.
// Aggregate, Setup and Command are required.
type Workload struct {
	// Aggregate is the aggregate type measured: the bench's applications
	// register it alone, with the bench's own options (names, partitions,
	// snapshot store, cache).
	Aggregate aggregate.Type
	// Setup returns the command that creates the aggregate id, the i-th
	// of --aggregates: sent once per aggregate before the timed phases
	// (untimed), and the first command of each aggregate in the restore
	// phase's events. Its handler must accept it.
	Setup func(id ulid.ULID, i int) any
	// Command returns a command on the aggregate id, set up already: the
	// commands phases send it to random aggregates, and the restore
	// phase's events are those of Setup then Command, run through
	// Aggregate's handlers as a processor runs them. Its handler must
	// accept it at any version (a rejection fails the bench), and it must
	// be safe to call from many goroutines at once.
	Command func(id ulid.ULID) any
	// Codec encodes the events, in the bench's applications and in the
	// bytes raw_txn_produce writes. Default: Interlock's default codec
	// (schema.Avro()).
	Codec schema.Codec
	// Export, when set, is the projection phase's kafka_to_kafka
	// projector: a projection on the projections.Kafka() sink that writes
	// each event it handles as a record of topic. Default: not measured.
	Export func(topic string) projections.Runner
	// ReadModel, when set, is the projection phase's postgres projector,
	// on pool, whose search_path is a schema of the run's own, dropped at
	// the end: measured when --postgres (or INTERLOCK_BENCH_POSTGRES_DSN)
	// names a database. Default: not measured.
	ReadModel func(pool *pgxpool.Pool) projections.Runner
}

// ErrNoWorkload is returned by Run for a Workload without an Aggregate,
// a Setup or a Command.
var ErrNoWorkload = errors.New("bench: the workload needs an Aggregate, a Setup and a Command")

func (w Workload) validate() error {
	if w.Aggregate == nil || w.Setup == nil || w.Command == nil {
		return ErrNoWorkload
	}
	return w.Aggregate.Validate()
}

func (w Workload) codec() schema.Codec {
	if w.Codec == nil {
		return schema.Avro()
	}
	return w.Codec
}

// intAlias is a flag that sets the int of another.
type intAlias struct{ p *int }

func (a intAlias) String() string {
	if a.p == nil {
		return ""
	}
	return strconv.Itoa(*a.p)
}

func (a intAlias) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return errors.New("parse error")
	}
	*a.p = int(n)
	return nil
}
