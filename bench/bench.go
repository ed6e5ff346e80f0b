package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/internal/logread"
	"github.com/interlock-go/interlock/internal/prune"
	"github.com/interlock-go/interlock/snapshot"
)

// benchConfig is what the bench flags set.
type benchConfig struct {
	brokers         string
	jsonOut         bool
	quick           bool
	partitions      int
	batch           int
	restoreEvents   int
	aggregates      int
	commands        int
	senders         int
	dispatchers     int
	probe           time.Duration
	syncDuration    time.Duration
	cacheAggregates int
	cacheBytes      int64
	redisURL        string
	postgres        string
	timeout         time.Duration
	cpuProfile      string
	restoreProfile  string
	memProfile      string
	keep            bool
	verbose         bool
}

// quickCounts are the --quick values of the flags the user did not set.
var quickCounts = map[string]string{
	"restore-events": "50000",
	"aggregates":     "500",
	"commands":       "20000",
	"probe":          "2s",
	"sync-duration":  "3s",
}

func parseBench(args []string, output io.Writer) (benchConfig, error) {
	var c benchConfig
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&c.brokers, "brokers", "", "comma-separated Kafka seed brokers (default: an embedded Kafka, kfake, in this process)")
	fs.BoolVar(&c.jsonOut, "json", false, "print one JSON object on stdout instead of the table")
	fs.BoolVar(&c.quick, "quick", false, "smaller counts, for a smoke run of under a minute (explicit count flags still win)")
	fs.IntVar(&c.partitions, "partitions", 6, "partitions of every topic")
	fs.IntVar(&c.batch, "batch", 0, "records per transaction of raw_txn_produce (default: the mean batch Interlock reached in commands_async)")
	fs.IntVar(&c.restoreEvents, "restore-events", 200_000, "events written by raw_txn_produce, read by raw_consume and replayed by restore")
	fs.IntVar(&c.aggregates, "aggregates", 1000, "aggregates the commands (and the restore events) spread over, each created by the workload's Setup command")
	fs.Var(intAlias{&c.aggregates}, "accounts", "the same as --aggregates: `n` aggregates (the bank's accounts)")
	fs.IntVar(&c.commands, "commands", 100_000, "commands (the workload's Command) sent by commands_async")
	// Each Send waits for its write (acks from all replicas), so the
	// senders offer at most senders / write latency: 64 of them (run 1)
	// set the pace on a local Kafka instead of the processor.
	fs.IntVar(&c.senders, "senders", 1024, "goroutines calling Send in commands_async: enough that Send outpaces the processor (send_per_sec above per_sec)")
	fs.IntVar(&c.dispatchers, "dispatchers", 64, "goroutines calling Dispatch in the closed-loop probe of the max sync rate")
	fs.DurationVar(&c.probe, "probe", 5*time.Second, "length of the closed-loop probe of the max sync rate")
	fs.DurationVar(&c.syncDuration, "sync-duration", 10*time.Second, "length of the open-loop sync run at half the max rate")
	fs.IntVar(&c.cacheAggregates, "cache", 10_000, "cache bound of the processor, in aggregates (WithCache)")
	fs.Int64Var(&c.cacheBytes, "cache-bytes", 64<<20, "cache bound of the processor, in bytes of encoded state (WithCache)")
	fs.StringVar(&c.postgres, "postgres", "", "PostgreSQL DSN for the projection phase's read model, in a schema of its own dropped at the end (env INTERLOCK_BENCH_POSTGRES_DSN; default: that projector is not measured)")
	fs.StringVar(&c.redisURL, "redis", "", "Redis URL of the snapshot store for commands and the watermark restore, keys under interlock-bench:<app>, left in place (default: snapshot.NewMemory)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "the longest any one wait may take before the bench fails")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the commands_async phase to this file")
	fs.StringVar(&c.restoreProfile, "restore-cpuprofile", "", "write a CPU profile of the first of restore_full's runs to this file")
	fs.StringVar(&c.memProfile, "memprofile", "", "write an allocation profile (allocs) taken after commands_async to this file")
	fs.BoolVar(&c.keep, "keep", false, "keep the run's topics on --brokers (default: delete them at the end)")
	fs.BoolVar(&c.verbose, "v", false, "log what Interlock does (on stderr)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	if c.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if set["accounts"] {
			set["aggregates"] = true
		}
		for name, v := range quickCounts {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return c, err
				}
			}
		}
	}
	switch {
	case c.partitions < 1 || c.partitions > 1000:
		return c, fmt.Errorf("bench: --partitions %d: use 1 to 1000", c.partitions)
	case c.batch < 0:
		return c, fmt.Errorf("bench: --batch %d: must be positive, or 0 for Interlock's mean batch", c.batch)
	case c.aggregates < c.partitions:
		return c, fmt.Errorf("bench: --aggregates %d: need at least one per partition (%d)", c.aggregates, c.partitions)
	case c.restoreEvents < 2*c.aggregates:
		return c, fmt.Errorf("bench: --restore-events %d: need at least two per aggregate (--aggregates %d)", c.restoreEvents, c.aggregates)
	case c.commands < 1 || c.senders < 1 || c.dispatchers < 1:
		return c, errors.New("bench: --commands, --senders and --dispatchers must be positive")
	case c.probe <= 0 || c.syncDuration <= 0 || c.timeout <= 0:
		return c, errors.New("bench: --probe, --sync-duration and --timeout must be positive")
	case c.cacheAggregates < 1 || c.cacheBytes < 1:
		return c, errors.New("bench: --cache and --cache-bytes must be positive")
	}
	return c, nil
}

// benchReport is the bench's result; its JSON is what --json prints.
type benchReport struct {
	Broker        string           `json:"broker"`
	App           string           `json:"app"`
	Partitions    int              `json:"partitions"`
	Snapshots     string           `json:"snapshots"`
	Go            string           `json:"go"`
	GOMAXPROCS    int              `json:"gomaxprocs"`
	Quick         bool             `json:"quick"`
	RawTxnProduce rawProduce       `json:"raw_txn_produce"`
	RawConsume    rawConsume       `json:"raw_consume"`
	CommandsAsync asyncResult      `json:"commands_async"`
	CommandsSync  syncResult       `json:"commands_sync"`
	RestoreFull   restoreRun       `json:"restore_full"`
	RestoreMark   restoreRun       `json:"restore_watermark"`
	Projection    projectionResult `json:"projection"`
	Memory        memResult        `json:"memory"`
	Ratios        ratios           `json:"ratios"`
	Targets       targets          `json:"targets"`
}

type throughput struct {
	Records int64   `json:"records"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_sec"`
	// CPUMicros is this process's CPU time (user and system, every
	// goroutine) per record during the phase, in µs; the broker's is not
	// in it (on the embedded Kafka it is).
	CPUMicros float64 `json:"cpu_us_per_record"`
}

// cpuPer returns CPU time used per n, in µs.
func cpuPer(used time.Duration, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return float64(used) / float64(time.Microsecond) / float64(n)
}

type rawProduce struct {
	throughput
	Transactions int `json:"transactions"`
	BatchSize    int `json:"batch_size"`
	// WarmupRecords were written in a first, untimed transaction: a new
	// topic's first writes wait for its partition leaders and metadata.
	WarmupRecords int `json:"warmup_records"`
}

type rawConsume struct {
	throughput
	// Runs is how many reads the best was taken from.
	Runs int `json:"runs"`
}

type asyncResult struct {
	Commands int `json:"commands"`
	Senders  int `json:"senders"`
	// Accounts is the number of aggregates (the name is the bank
	// example's, kept so that runs compare).
	Accounts int     `json:"accounts"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"per_sec"`
	// Transactions is how many the processor committed, counted by their
	// commit markers in the events topic; MeanBatch is commands per
	// transaction.
	Transactions int64   `json:"transactions"`
	MeanBatch    float64 `json:"mean_batch"`
	// SendPerSec is how fast Send calls returned: when it is close to
	// PerSec, the senders, not the processor, set the pace.
	SendPerSec float64 `json:"send_per_sec"`
	// CPUMicros is this process's CPU time per command, in µs: the
	// senders, the dispatcher and the processor (and, embedded, the
	// broker).
	CPUMicros float64 `json:"cpu_us_per_command"`
}

type syncResult struct {
	MaxRate        float64 `json:"max_rate"`
	MaxRateWorkers int     `json:"max_rate_dispatchers"`
	OfferedRate    float64 `json:"offered_rate"`
	Dispatches     int     `json:"dispatches"`
	Seconds        float64 `json:"seconds"`
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
	P999Ms         float64 `json:"p999_ms"`
	MaxMs          float64 `json:"max_ms"`
	// LaunchLagMs is how far behind its schedule the open-loop launcher
	// fell at worst; latencies are measured from the schedule, so a late
	// launch counts against Interlock, not for it.
	LaunchLagMs float64 `json:"launch_lag_max_ms"`
	Errors      int64   `json:"errors"`
}

type restoreRun struct {
	Events          int64   `json:"events"`
	Seconds         float64 `json:"seconds"`
	PerSec          float64 `json:"per_sec"`
	Restores        int64   `json:"restores"`
	FullReplays     int64   `json:"full_replays"`
	SnapshotsLoaded int64   `json:"snapshots_loaded"`
	// HeapLive is the heap in use by live objects (after a collection)
	// once the restore is done: what the restored application holds. On
	// the embedded Kafka it includes the broker's log.
	HeapLive uint64 `json:"heap_live_bytes"`
	// CPUMicros is this process's CPU time per event replayed, in µs.
	CPUMicros float64 `json:"cpu_us_per_event"`
	// FirstCommandsMs is how long one command per partition, sent once
	// the app was ready, took to be answered (not in Seconds).
	FirstCommandsMs float64 `json:"first_commands_ms"`
	// Runs and RunsPerSec, for restore_full: the runs made, each one's
	// rate in run order; the other fields are the best run's.
	Runs       int       `json:"runs,omitempty"`
	RunsPerSec []float64 `json:"runs_per_sec,omitempty"`
}

type memResult struct {
	PeakHeapInuse   uint64 `json:"peak_heap_inuse_bytes"`
	CacheAggregates int    `json:"cache_max_aggregates"`
	CacheBytes      int64  `json:"cache_max_bytes"`
	CachedPeak      int64  `json:"cached_peak"`
	CachedAtEnd     int64  `json:"cached_at_end"`
	Evictions       int64  `json:"evictions"`
}

type ratios struct {
	AsyncVsRawProduce   float64 `json:"commands_async_vs_raw_txn_produce"`
	RestoreVsRawConsume float64 `json:"restore_full_vs_raw_consume"`
	// The projectors against raw_consume of the same topic.
	KafkaProjectionVsRawConsume    float64 `json:"projection_kafka_vs_raw_consume"`
	PostgresProjectionVsRawConsume float64 `json:"projection_postgres_vs_raw_consume"`
}

// targets are issue 5's goals, each as met or not.
type targets struct {
	AsyncHalfOfRaw    bool `json:"async_ge_50pct_raw_txn_produce"`
	SyncP99Under25ms  bool `json:"sync_p99_le_25ms_at_half_max"`
	Restore70OfRaw    bool `json:"restore_ge_70pct_raw_consume"`
	CacheWithinBounds bool `json:"cache_within_bounds"`
}

// Run runs the bench of w with the command line args (the flags, see
// -h), printing the table, or with --json one JSON object, on stdout and
// its progress on stderr. It measures Interlock against the limit of the
// Kafka it runs on, in one run: raw transactional produce and
// read_committed consume of the event bytes Interlock writes for w, then
// w's commands (async and sync), restores of w's aggregates and, when w
// has projectors, the projection phase. It returns an error when w is
// incomplete (ErrNoWorkload), a flag is wrong, or a phase fails (a command
// of w rejected counts as a failure); after printing the flags for -h, it
// returns flag.ErrHelp.
func Run(ctx context.Context, w Workload, args []string, stdout, stderr io.Writer, opts ...Option) error {
	if err := w.validate(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	cfg, err := parseBench(args, stderr)
	if err != nil {
		return err
	}
	b := &bencher{cfg: cfg, work: w, progress: stderr}
	for _, o := range opts {
		o.apply(b)
	}
	level := slog.LevelWarn
	if cfg.verbose {
		level = slog.LevelInfo
	}
	b.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	b.base = "bench-" + strings.ToLower(ulid.Make().String()[20:]) // fresh topics each run
	if cfg.brokers != "" {
		b.brokers = strings.Split(cfg.brokers, ",")
		if err := b.connect(ctx); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if !cfg.keep {
			defer b.deleteTopics(ctx)
		}
	} else {
		b.clientOpts = nil // the embedded Kafka speaks plaintext, unauthenticated
		// One embedded cluster for every client and application of the run.
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return fmt.Errorf("bench: starting the embedded Kafka: %w", err)
		}
		defer cluster.Close()
		b.brokers = cluster.ListenAddrs()
	}
	if cfg.redisURL != "" {
		store, err := snapshot.NewRedis(ctx, snapshot.RedisConfig{URL: cfg.redisURL, KeyPrefix: "interlock-bench:" + b.base})
		if err != nil {
			return fmt.Errorf("bench: snapshot store: %w", err)
		}
		defer store.Close()
		b.store, b.storeName = store, "redis"
	} else {
		b.store, b.storeName = snapshot.NewMemory(), "memory"
	}
	if err := b.run(ctx); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if cfg.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(b.rep)
	}
	return printBench(stdout, &b.rep)
}

type bencher struct {
	cfg        benchConfig
	work       Workload
	progress   io.Writer
	log        *slog.Logger
	base       string
	brokers    []string
	clientOpts []kgo.Opt // WithClientOptions
	store      snapshot.Store
	storeName  string
	rep        benchReport
}

// Option configures Run beyond its flags.
type Option interface{ apply(*bencher) }

type optionFunc func(*bencher)

func (f optionFunc) apply(b *bencher) { f(b) }

// WithClientOptions adds franz-go options to every Kafka client of a run
// on --brokers: the raw phases', the admin's and the applications' (as
// interlock.WithClientOptions). Give TLS (kgo.DialTLSConfig) and SASL
// (kgo.SASL) here: the bench of package service passes those of its
// environment and configuration file. The embedded Kafka ignores them.
// Default: none.
func WithClientOptions(opts ...kgo.Opt) Option {
	return optionFunc(func(b *bencher) { b.clientOpts = append(b.clientOpts, opts...) })
}

// client returns a new client of the run's Kafka with the run's client
// options and opts.
func (b *bencher) client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(b.clientOptions(opts...)...)
}

// clientOptions are the run's brokers and client options, then opts.
func (b *bencher) clientOptions(opts ...kgo.Opt) []kgo.Opt {
	return slices.Concat([]kgo.Opt{kgo.SeedBrokers(b.brokers...)}, b.clientOpts, opts)
}

// connect checks that the brokers answer with the run's client options,
// so that a wrong address, a missing TLS or SASL setting or a refused
// password fails the run at once, saying so, instead of its first phase
// after its timeout.
func (b *bencher) connect(ctx context.Context) error {
	cl, err := b.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	wctx, cancel := context.WithTimeout(ctx, min(b.cfg.timeout, 30*time.Second))
	defer cancel()
	if err := cl.Ping(wctx); err != nil {
		return fmt.Errorf("connecting to %s: %w", strings.Join(b.brokers, ","), err)
	}
	return nil
}

func (b *bencher) say(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench: "+format+"\n", args...)
}

// wait bounds one wait by --timeout.
func (b *bencher) wait(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.timeout)
}

func (b *bencher) run(ctx context.Context) error {
	c := b.cfg
	b.rep = benchReport{
		Broker: "embedded (kfake)", App: b.base, Partitions: c.partitions, Snapshots: b.storeName,
		Go: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), Quick: c.quick,
	}
	if c.brokers != "" {
		b.rep.Broker = c.brokers
	}
	b.say("app %s on %s, %d partitions, snapshots in %s", b.base, b.rep.Broker, c.partitions, b.storeName)
	// Commands first: the embedded Kafka keeps its log in this process's
	// heap, so the restore data must not be there yet when memory is
	// sampled.
	if err := b.commands(ctx); err != nil {
		return err
	}
	if err := b.rawAndRestore(ctx); err != nil {
		return err
	}
	dsn := c.postgres
	if dsn == "" {
		dsn = os.Getenv("INTERLOCK_BENCH_POSTGRES_DSN")
	}
	proj, err := b.projectionPhase(ctx, b.base+"-r", b.rep.RawConsume.Records, dsn)
	if err != nil {
		return err
	}
	b.rep.Projection = proj
	r := &b.rep
	r.Ratios.KafkaProjectionVsRawConsume = r.Projection.KafkaToKafka.PerSec / r.RawConsume.PerSec
	r.Ratios.PostgresProjectionVsRawConsume = r.Projection.Postgres.PerSec / r.RawConsume.PerSec
	r.Ratios.AsyncVsRawProduce = r.CommandsAsync.PerSec / r.RawTxnProduce.PerSec
	r.Ratios.RestoreVsRawConsume = r.RestoreFull.PerSec / r.RawConsume.PerSec
	r.Targets = targets{
		AsyncHalfOfRaw:    r.Ratios.AsyncVsRawProduce >= 0.5,
		SyncP99Under25ms:  r.CommandsSync.P99Ms <= 25 && r.CommandsSync.Errors == 0,
		Restore70OfRaw:    r.Ratios.RestoreVsRawConsume >= 0.7,
		CacheWithinBounds: r.Memory.CachedAtEnd <= int64(r.Memory.CacheAggregates),
	}
	return nil
}

// app builds and starts an application of the workload's aggregate named
// name.
func (b *bencher) app(ctx context.Context, name, clientID string, store snapshot.Store, roles interlock.Role) (*interlock.App, error) {
	app, err := interlock.NewBuilder(
		interlock.WithName(name),
		interlock.WithRoles(roles),
		interlock.WithBrokers(b.brokers...),
		interlock.WithPartitions(int32(b.cfg.partitions)),
		interlock.WithLogger(b.log),
		interlock.WithSnapshotStore(store),
		interlock.WithCache(b.cfg.cacheAggregates, b.cfg.cacheBytes),
		// The client ID tells this instance's group membership from a
		// predecessor's that has not left yet.
		interlock.WithClientOptions(append(slices.Clip(b.clientOpts), kgo.ClientID(clientID))...),
		interlock.WithCodec(b.work.codec()),
	).RegisterAggregate(b.work.Aggregate).Build()
	if err != nil {
		return nil, err
	}
	wctx, cancel := b.wait(ctx)
	defer cancel()
	if err := app.Start(wctx); err != nil {
		return nil, err
	}
	return app, nil
}

func (b *bencher) closeApp(ctx context.Context, app *interlock.App) error {
	wctx, cancel := b.wait(context.WithoutCancel(ctx))
	defer cancel()
	return app.Close(wctx)
}

// waitAssigned waits until the processors' group of app name is stable
// with every commands partition assigned to members with clientID, so
// timings do not include joining the group.
func (b *bencher) waitAssigned(ctx context.Context, name, clientID string) error {
	cl, err := b.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	wctx, cancel := b.wait(ctx)
	defer cancel()
	// WithName documents the name as the group's prefix; ".processors"
	// is the rest.
	group, topic := name+".processors", b.commandsTopic(name)
	var last string
	for {
		gs, err := adm.DescribeGroups(wctx, group)
		if err == nil {
			g := gs[group]
			ours := len(g.Members) > 0
			for _, m := range g.Members {
				ours = ours && m.ClientID == clientID
			}
			if g.Err == nil && g.State == "Stable" && ours && len(g.AssignedPartitions()[topic]) == b.cfg.partitions {
				return nil
			}
			last = fmt.Sprintf("state %q, %d members, %d of %d partitions assigned", g.State, len(g.Members), len(g.AssignedPartitions()[topic]), b.cfg.partitions)
		} else {
			last = err.Error()
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("waiting for group %s to be assigned (%s): %w", group, last, wctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

func (b *bencher) commandsTopic(name string) string {
	return name + "." + b.work.Aggregate.Name() + ".commands"
}

func (b *bencher) eventsTopic(name string) string {
	return name + "." + b.work.Aggregate.Name() + ".events"
}

// send sends the workload's next command to aggregate id.
func (b *bencher) send(ctx context.Context, app *interlock.App, id ulid.ULID) error {
	_, err := interlock.SendValue(ctx, app, b.work.Command(id))
	return err
}

// dispatch dispatches the workload's next command to aggregate id.
func (b *bencher) dispatch(ctx context.Context, app *interlock.App, id ulid.ULID) error {
	_, err := interlock.DispatchValue(ctx, app, b.work.Command(id))
	return err
}

// commands runs commands_async and commands_sync on one application.
func (b *bencher) commands(ctx context.Context) (err error) {
	c := b.cfg
	clientID := b.base + "-commands"
	app, err := b.app(ctx, b.base, clientID, b.store, interlock.RoleDispatch|interlock.RoleProcess)
	if err != nil {
		return fmt.Errorf("starting the commands app: %w", err)
	}
	defer func() {
		if cerr := b.closeApp(ctx, app); err == nil && cerr != nil {
			err = fmt.Errorf("closing the commands app: %w", cerr)
		}
	}()
	if err := b.waitAssigned(ctx, b.base, clientID); err != nil {
		return err
	}

	ids := make([]ulid.ULID, c.aggregates)
	for i := range ids {
		ids[i] = interlock.NewID()
	}
	b.say("setting up %d aggregates", len(ids))
	before := app.Stats()
	if err := b.parallel(ctx, c.senders, len(ids), func(ctx context.Context, i int) error {
		_, err := interlock.SendValue(ctx, app, b.work.Setup(ids[i], i))
		return err
	}); err != nil {
		return fmt.Errorf("setting up aggregates: %w", err)
	}
	if err := b.until(ctx, 5*time.Millisecond, func() (bool, string) {
		n := handled(app.Stats()) - handled(before)
		return n >= int64(len(ids)), fmt.Sprintf("%d of %d aggregates set up", n, len(ids))
	}); err != nil {
		return fmt.Errorf("setting up aggregates: %w", err)
	}
	if after := app.Stats(); after.CommandsApplied-before.CommandsApplied != int64(len(ids)) {
		return fmt.Errorf("setting up aggregates: %d of %d applied, %d rejected, %d failed", after.CommandsApplied-before.CommandsApplied, len(ids),
			after.CommandsRejected-before.CommandsRejected, after.CommandsFailed-before.CommandsFailed)
	}

	if err := b.async(ctx, app, ids); err != nil {
		return err
	}
	return b.sync(ctx, app, ids)
}

// parallel runs do(0..n-1) on workers goroutines, all bounded by
// --timeout (one deadline: a timer per call would cost the senders more
// than Send does); it returns the first error.
func (b *bencher) parallel(ctx context.Context, workers, n int, do func(context.Context, int) error) error {
	ctx, cancel := b.wait(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if err := do(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// handled is the number of commands the processor has finished with.
func handled(s interlock.ProcessorStats) int64 {
	return s.CommandsApplied + s.CommandsRejected + s.CommandsFailed
}

func (b *bencher) async(ctx context.Context, app *interlock.App, ids []ulid.ULID) error {
	c := b.cfg
	b.say("commands_async: %d commands with Send from %d goroutines over %d aggregates", c.commands, c.senders, len(ids))
	events := b.eventsTopic(b.base)
	endsBefore, err := b.endOffsets(ctx, events)
	if err != nil {
		return fmt.Errorf("commands_async: %w", err)
	}
	before := app.Stats()
	stopProfile, err := startCPUProfile(c.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	runtime.GC() // peak heap from a clean start
	sampler := startHeapSampler(func() int64 { return app.Stats().Cached })
	start, cpu := time.Now(), processCPU()
	err = b.parallel(ctx, c.senders, c.commands, func(ctx context.Context, i int) error {
		return b.send(ctx, app, ids[rand.IntN(len(ids))])
	})
	sent := time.Since(start)
	if err != nil {
		sampler.stop()
		return fmt.Errorf("commands_async: sending: %w", err)
	}
	want := handled(before) + int64(c.commands)
	werr := b.until(ctx, time.Millisecond, func() (bool, string) {
		n := handled(app.Stats())
		return n >= want, fmt.Sprintf("%d of %d commands handled", n-handled(before), c.commands)
	})
	elapsed, cpuUs := time.Since(start), cpuPer(processCPU()-cpu, int64(c.commands))
	peak, peakCached := sampler.stop()
	if err := stopProfile(); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("commands_async: %w", werr)
	}
	// The processor evicts between batches, so the cache may be over its
	// bound by a batch for a moment; one that stays over is reported.
	for settle := time.Now().Add(2 * time.Second); app.Stats().Cached > int64(c.cacheAggregates) && time.Now().Before(settle); {
		time.Sleep(5 * time.Millisecond)
	}
	after := app.Stats()
	if n := (after.CommandsRejected - before.CommandsRejected) + (after.CommandsFailed - before.CommandsFailed); n > 0 {
		return fmt.Errorf("commands_async: %d commands were rejected or failed", n)
	}
	if c.memProfile != "" {
		if err := writeProfile(c.memProfile, "allocs"); err != nil {
			return err
		}
	}
	endsAfter, err := b.endOffsets(ctx, events)
	if err != nil {
		return fmt.Errorf("commands_async: %w", err)
	}
	txns, err := b.transactions(ctx, events, endsBefore, endsAfter)
	if err != nil {
		return fmt.Errorf("commands_async: counting transactions: %w", err)
	}
	b.rep.CommandsAsync = asyncResult{
		Commands: c.commands, Senders: c.senders, Accounts: len(ids),
		Seconds: elapsed.Seconds(), PerSec: float64(c.commands) / elapsed.Seconds(),
		SendPerSec: float64(c.commands) / sent.Seconds(), Transactions: txns, CPUMicros: cpuUs,
	}
	if txns > 0 {
		b.rep.CommandsAsync.MeanBatch = float64(c.commands) / float64(txns)
	}
	b.rep.Memory = memResult{
		PeakHeapInuse: peak, CacheAggregates: c.cacheAggregates, CacheBytes: c.cacheBytes,
		CachedPeak: peakCached, CachedAtEnd: after.Cached, Evictions: after.Evictions - before.Evictions,
	}
	b.say("commands_async: %.0f commands/s (Send returned at %.0f/s) in %d transactions, peak heap %s", b.rep.CommandsAsync.PerSec, b.rep.CommandsAsync.SendPerSec, txns, mib(peak))
	return nil
}

// startCPUProfile starts a CPU profile written to path (none when path is
// empty); stop ends it and may be called more than once.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	var once sync.Once
	var cerr error
	return func() error {
		once.Do(func() {
			pprof.StopCPUProfile()
			if cerr = f.Close(); cerr != nil {
				cerr = fmt.Errorf("cpu profile: %w", cerr)
			}
		})
		return cerr
	}, nil
}

func writeProfile(path, name string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("%s profile: %w", name, err)
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		return fmt.Errorf("%s profile: %w", name, err)
	}
	return f.Close()
}

// until polls cond every interval until it holds, or fails after --timeout
// saying how far it got.
func (b *bencher) until(ctx context.Context, interval time.Duration, cond func() (bool, string)) error {
	wctx, cancel := b.wait(ctx)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, state := cond()
		if ok {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("gave up waiting (%s): %w", state, wctx.Err())
		case <-t.C:
		}
	}
}

type heapSampler struct {
	done chan struct{}
	peak chan [2]int64
}

// startHeapSampler samples runtime.MemStats.HeapInuse and cached() every
// 20ms.
func startHeapSampler(cached func() int64) *heapSampler {
	s := &heapSampler{done: make(chan struct{}), peak: make(chan [2]int64, 1)}
	go func() {
		var heap, aggs int64
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			heap, aggs = max(heap, int64(ms.HeapInuse)), max(aggs, cached())
			select {
			case <-s.done:
				s.peak <- [2]int64{heap, aggs}
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop returns the peaks of the heap in use and of the cached aggregates.
func (s *heapSampler) stop() (heap uint64, cached int64) {
	close(s.done)
	p := <-s.peak
	return uint64(p[0]), p[1]
}

func (b *bencher) sync(ctx context.Context, app *interlock.App, ids []ulid.ULID) error {
	c := b.cfg
	dispatch := func(ctx context.Context) error {
		return b.dispatch(ctx, app, ids[rand.IntN(len(ids))])
	}

	b.say("commands_sync: max rate, closed loop, %d dispatchers for %v", c.dispatchers, c.probe)
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(c.probe)
	pctx, cancel := b.wait(ctx)
	defer cancel()
	for range c.dispatchers {
		wg.Go(func() {
			for time.Now().Before(deadline) && pctx.Err() == nil {
				if err := dispatch(pctx); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	probe := time.Since(start)
	if firstErr != nil {
		return fmt.Errorf("commands_sync: probe: %w", firstErr)
	}
	if done.Load() == 0 {
		return fmt.Errorf("commands_sync: no dispatch completed in %v", probe)
	}
	maxRate := float64(done.Load()) / probe.Seconds()
	rate := maxRate / 2
	n := max(1, int(rate*c.syncDuration.Seconds()))
	b.say("commands_sync: max %.0f/s; open loop at %.0f/s for %v (%d dispatches)", maxRate, rate, c.syncDuration, n)

	lat := make([]time.Duration, n)
	failed := make([]bool, n)
	var errs atomic.Int64
	var lag time.Duration
	interval := time.Duration(float64(time.Second) / rate)
	octx, ocancel := context.WithTimeout(ctx, c.syncDuration+b.cfg.timeout)
	defer ocancel()
	start = time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		lag = max(lag, time.Since(due))
		if ctx.Err() != nil {
			wg.Wait()
			return ctx.Err()
		}
		wg.Go(func() {
			if err := dispatch(octx); err != nil {
				failed[i] = true
				if errs.Add(1) == 1 {
					b.say("commands_sync: first error: %v", err)
				}
				return
			}
			// From the schedule, not the launch: coordinated omission
			// would hide the queueing a late launch means.
			lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	ok := make([]time.Duration, 0, n)
	for i, l := range lat {
		if !failed[i] {
			ok = append(ok, l)
		}
	}
	if len(ok) == 0 {
		return fmt.Errorf("commands_sync: all %d dispatches failed", n)
	}
	slices.Sort(ok)
	b.rep.CommandsSync = syncResult{
		MaxRate: maxRate, MaxRateWorkers: c.dispatchers, OfferedRate: rate, Dispatches: n,
		Seconds: elapsed.Seconds(),
		P50Ms:   ms(quantile(ok, 0.5)), P99Ms: ms(quantile(ok, 0.99)), P999Ms: ms(quantile(ok, 0.999)),
		MaxMs: ms(ok[len(ok)-1]), LaunchLagMs: ms(lag), Errors: errs.Load(),
	}
	s := b.rep.CommandsSync
	b.say("commands_sync: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, %d errors", s.P50Ms, s.P99Ms, s.P999Ms, s.Errors)
	return nil
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// rawAndRestore writes --restore-events events into the events topic of a
// fresh application (raw_txn_produce), reads them back (raw_consume), then
// measures restores of that application: full replay, and replay from the
// snapshot watermark.
func (b *bencher) rawAndRestore(ctx context.Context) error {
	name := b.base + "-r"
	topic := b.eventsTopic(name)
	// An instance that only dispatches creates the topics with
	// Interlock's settings, for the raw baseline to write into. (A
	// processor would restore the empty partitions at once and never see
	// events written behind its back.)
	creator, err := b.app(ctx, name, name+"-0", b.store, interlock.RoleDispatch)
	if err != nil {
		return fmt.Errorf("creating the restore app's topics: %w", err)
	}
	if err := b.closeApp(ctx, creator); err != nil {
		return fmt.Errorf("creating the restore app's topics: %w", err)
	}
	stream, err := newEventStream(b.work, topic, b.cfg.aggregates, b.cfg.partitions)
	if err != nil {
		return err
	}
	batch := b.cfg.batch
	if batch == 0 {
		// Batched as Interlock batched under the async load.
		batch = max(1, int(math.Round(b.rep.CommandsAsync.MeanBatch)))
	}
	if err := b.rawProduce(ctx, stream, batch); err != nil {
		return err
	}
	if err := b.rawConsume(ctx, topic, int64(stream.next)); err != nil {
		return err
	}
	triggers := make([]ulid.ULID, 0, len(stream.first))
	for _, id := range stream.first {
		triggers = append(triggers, id)
	}

	// The first owner replays everything and, closing, leaves its
	// snapshots and watermarks in the shared store.
	b.say("restore: a first owner replays %d events and flushes its snapshots to the store", stream.next)
	if _, err := b.restoreWith(ctx, name, name+"-1", b.store, triggers, ""); err != nil {
		return fmt.Errorf("restore (first owner): %w", err)
	}

	b.say("restore_watermark: a new owner with the same snapshot store")
	mark, err := b.restoreWith(ctx, name, name+"-2", b.store, triggers, "")
	if err != nil {
		return fmt.Errorf("restore_watermark: %w", err)
	}
	b.rep.RestoreMark = mark
	b.say("restore_watermark: %d events replayed in %.3fs, %d snapshots loaded", mark.Events, mark.Seconds, mark.SnapshotsLoaded)

	// As many runs as raw_consume reads, each a new owner with an empty
	// snapshot store, and the best of them, as raw_consume's: the ratio
	// compares like with like (one run against the best of three read it
	// low by the run-to-run spread; all runs are reported).
	var best restoreRun
	var rates []float64
	for i := range consumeRuns {
		b.say("restore_full: a new owner with an empty snapshot store (%d of %d)", i+1, consumeRuns)
		profile := ""
		if i == 0 {
			profile = b.cfg.restoreProfile
		}
		full, err := b.restoreWith(ctx, name, fmt.Sprintf("%s-full-%d", name, i+1), snapshot.NewMemory(), triggers, profile)
		if err != nil {
			return fmt.Errorf("restore_full: %w", err)
		}
		if full.Events < int64(stream.next) {
			return fmt.Errorf("restore_full: replayed %d events, fewer than the %d written", full.Events, stream.next)
		}
		b.say("restore_full: %d events in %.3fs: %.0f events/s", full.Events, full.Seconds, full.PerSec)
		rates = append(rates, full.PerSec)
		if full.PerSec > best.PerSec {
			best = full
		}
	}
	best.Runs, best.RunsPerSec = len(rates), rates
	b.rep.RestoreFull = best
	return nil
}

// restoreWith starts a new owner of application name's partitions, times
// its restore and closes it.
func (b *bencher) restoreWith(ctx context.Context, name, clientID string, store snapshot.Store, triggers []ulid.ULID, profile string) (restoreRun, error) {
	app, err := b.app(ctx, name, clientID, store, interlock.RoleDispatch|interlock.RoleProcess)
	if err != nil {
		return restoreRun{}, err
	}
	res, err := b.restore(ctx, app, name, clientID, triggers, profile)
	if cerr := b.closeApp(ctx, app); err == nil && cerr != nil {
		err = fmt.Errorf("closing: %w", cerr)
	}
	return res, err
}

// restore times app's restore of its partitions, from the moment the group
// assigns them until the app is ready: every partition it owns replayed.
// Then, untimed, one command per partition proves that every partition
// serves; how long they took is reported apart (first_commands_ms): a
// transaction's round trips, not the replay. app is new, so its counters
// are the restore's.
func (b *bencher) restore(ctx context.Context, app *interlock.App, name, clientID string, triggers []ulid.ULID, profile string) (restoreRun, error) {
	stop, err := startCPUProfile(profile)
	if err != nil {
		return restoreRun{}, err
	}
	defer stop()
	if err := b.waitAssigned(ctx, name, clientID); err != nil {
		return restoreRun{}, err
	}
	start, cpu := time.Now(), processCPU()
	err = b.until(ctx, time.Millisecond, func() (bool, string) { return app.Ready(), "not ready" })
	elapsed, cpuUsed := time.Since(start), processCPU()-cpu
	if perr := stop(); err == nil {
		err = perr
	}
	if err != nil {
		return restoreRun{}, err
	}
	served := time.Now()
	if err := b.parallel(ctx, len(triggers), len(triggers), func(ctx context.Context, i int) error {
		return b.dispatch(ctx, app, triggers[i])
	}); err != nil {
		return restoreRun{}, fmt.Errorf("a command after the restore: %w", err)
	}
	firstCommands := time.Since(served)
	after := app.Stats()
	runtime.GC()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	r := restoreRun{
		Events:          after.EventsReplayed,
		Seconds:         elapsed.Seconds(),
		Restores:        after.Restores,
		FullReplays:     after.FullReplays,
		SnapshotsLoaded: after.SnapshotsLoaded,
		HeapLive:        mem.HeapAlloc,
		FirstCommandsMs: ms(firstCommands),
	}
	r.PerSec = float64(r.Events) / r.Seconds
	r.CPUMicros = cpuPer(cpuUsed, r.Events)
	return r, nil
}

// rawProduce is the limit: franz-go's own transactional producer writing
// the same records in transactions of batch records, as a processor writes
// a batch's events in one transaction.
func (b *bencher) rawProduce(ctx context.Context, s *eventStream, batch int) error {
	c := b.cfg
	b.say("raw_txn_produce: %d records in transactions of %d", c.restoreEvents, batch)
	// As the processor's producer: acks from all, idempotent (franz-go's
	// defaults), no linger, records placed on their partitions by hand.
	cl, err := b.client(
		kgo.TransactionalID(b.base+"-raw"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	wctx, cancel := b.wait(ctx)
	defer cancel()
	var produceErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	txn := func(n int) error {
		if err := cl.BeginTransaction(); err != nil {
			return fmt.Errorf("raw_txn_produce: %w", err)
		}
		now := time.Now()
		for range n {
			r, err := s.record(now)
			if err != nil {
				return fmt.Errorf("raw_txn_produce: encoding: %w", err)
			}
			cl.Produce(wctx, r, promise)
		}
		if err := cl.Flush(wctx); err != nil {
			return fmt.Errorf("raw_txn_produce: %w", err)
		}
		if p := produceErr.Load(); p != nil {
			return fmt.Errorf("raw_txn_produce: %w", *p)
		}
		if err := cl.EndTransaction(wctx, kgo.TryCommit); err != nil {
			return fmt.Errorf("raw_txn_produce: committing: %w", err)
		}
		return nil
	}
	warmup := min(batch, max(1, c.restoreEvents/10))
	if err := txn(warmup); err != nil {
		return err
	}
	txns := 0
	start, cpu := time.Now(), processCPU()
	for s.next < c.restoreEvents {
		if err := txn(min(batch, c.restoreEvents-s.next)); err != nil {
			return err
		}
		txns++
	}
	elapsed := time.Since(start)
	n := int64(s.next - warmup)
	b.rep.RawTxnProduce = rawProduce{
		throughput:   throughput{Records: n, Seconds: elapsed.Seconds(), PerSec: float64(n) / elapsed.Seconds(), CPUMicros: cpuPer(processCPU()-cpu, n)},
		Transactions: txns, BatchSize: batch, WarmupRecords: warmup,
	}
	b.say("raw_txn_produce: %.0f records/s", b.rep.RawTxnProduce.PerSec)
	return nil
}

// deleteTopics deletes the topics of the run (its events topics are kept
// forever otherwise), reporting but not failing on errors.
func (b *bencher) deleteTopics(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	cl, err := b.client()
	if err != nil {
		b.say("deleting the run's topics: %v", err)
		return
	}
	defer cl.Close()
	n, err := prune.Topics(ctx, kadm.NewClient(cl), func(t string) bool {
		return strings.HasPrefix(t, b.base+".") || strings.HasPrefix(t, b.base+"-r.")
	})
	switch {
	case err != nil:
		b.say("deleting the run's topics: %v", err)
	case n > 0:
		b.say("deleted the run's %d topics (--keep keeps them)", n)
	}
}

// rawConsume is the limit of restore: a read_committed consume of the
// whole events topic from its start, by a new client, the best of
// consumeRuns (a read of a fraction of a second is at the mercy of a pause
// in the broker or this process).
func (b *bencher) rawConsume(ctx context.Context, topic string, written int64) error {
	b.say("raw_consume: read_committed from the start of %s, best of %d", topic, consumeRuns)
	ends, err := b.endOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("raw_consume: %w", err)
	}
	best, bestCPU := time.Duration(math.MaxInt64), 0.0
	for range consumeRuns {
		var n int64
		start, cpu := time.Now(), processCPU()
		err = b.readRange(ctx, topic, nil, ends, func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				n++
			}
		})
		elapsed := time.Since(start)
		if err != nil {
			return fmt.Errorf("raw_consume: %d records read: %w", n, err)
		}
		if n != written {
			return fmt.Errorf("raw_consume: read %d records, but %d were written", n, written)
		}
		if elapsed < best {
			best, bestCPU = elapsed, cpuPer(processCPU()-cpu, written)
		}
	}
	b.rep.RawConsume = rawConsume{
		throughput: throughput{Records: written, Seconds: best.Seconds(), PerSec: float64(written) / best.Seconds(), CPUMicros: bestCPU},
		Runs:       consumeRuns,
	}
	b.say("raw_consume: %.0f records/s", b.rep.RawConsume.PerSec)
	return nil
}

// consumeRuns is how many times raw_consume reads the topic.
const consumeRuns = 3

// endOffsets returns the end offset of each partition of topic.
func (b *bencher) endOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	wctx, cancel := b.wait(ctx)
	defer cancel()
	cl, err := b.client()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(wctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// readRange reads topic read_committed, control records included, from
// the offsets in from (0 when missing) up to those in to, calling fn for
// each record.
func (b *bencher) readRange(ctx context.Context, topic string, from, to map[int32]int64, fn func(*kgo.Record)) error {
	wctx, cancel := b.wait(ctx)
	defer cancel()
	return logread.Range(wctx, b.clientOptions(), topic, from, to, fn,
		func(p int32, err error) { b.say("reading %s/%d: %v", topic, p, err) })
}

// transactions counts the transactions that wrote to topic between the
// offsets from and to, by their commit markers. With transaction.version
// 2 every transaction has its own producer epoch, so distinct epochs count
// them exactly; otherwise the most markers in one partition is a lower
// bound (exact when every transaction touches some one partition).
func (b *bencher) transactions(ctx context.Context, topic string, from, to map[int32]int64) (int64, error) {
	type producerEpoch struct {
		id    int64
		epoch int16
	}
	epochs := map[producerEpoch]bool{}
	perPartition := map[int32]int64{}
	err := b.readRange(ctx, topic, from, to, func(r *kgo.Record) {
		if r.Attrs.IsControl() {
			epochs[producerEpoch{r.ProducerID, r.ProducerEpoch}] = true
			perPartition[r.Partition]++
		}
	})
	most := int64(0)
	for _, n := range perPartition {
		most = max(most, n)
	}
	return max(most, int64(len(epochs))), err
}

func printBench(w io.Writer, r *benchReport) error {
	fmt.Fprintf(w, "Interlock bench: app %s on %s, %d partitions, snapshots in %s, %s, GOMAXPROCS %d\n\n",
		r.App, r.Broker, r.Partitions, r.Snapshots, r.Go, r.GOMAXPROCS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tcount\tseconds\trate\tnotes")
	fmt.Fprintf(tw, "raw_txn_produce\t%d\t%.2f\t%.0f records/s\t%d transactions of %d (after a warm-up one of %d)\n",
		r.RawTxnProduce.Records, r.RawTxnProduce.Seconds, r.RawTxnProduce.PerSec, r.RawTxnProduce.Transactions, r.RawTxnProduce.BatchSize, r.RawTxnProduce.WarmupRecords)
	fmt.Fprintf(tw, "raw_consume\t%d\t%.2f\t%.0f records/s\tread_committed, all partitions, best of %d\n",
		r.RawConsume.Records, r.RawConsume.Seconds, r.RawConsume.PerSec, r.RawConsume.Runs)
	a := r.CommandsAsync
	fmt.Fprintf(tw, "commands_async\t%d\t%.2f\t%.0f commands/s\t%d senders, %d aggregates, %d transactions (mean batch %.0f); Send returned at %.0f/s\n",
		a.Commands, a.Seconds, a.PerSec, a.Senders, a.Accounts, a.Transactions, a.MeanBatch, a.SendPerSec)
	s := r.CommandsSync
	fmt.Fprintf(tw, "commands_sync max\t\t\t%.0f commands/s\tclosed loop, %d dispatchers\n", s.MaxRate, s.MaxRateWorkers)
	fmt.Fprintf(tw, "commands_sync\t%d\t%.2f\t%.0f commands/s offered\tp50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms, %d errors\n",
		s.Dispatches, s.Seconds, s.OfferedRate, s.P50Ms, s.P99Ms, s.P999Ms, s.MaxMs, s.Errors)
	runs := make([]string, len(r.RestoreFull.RunsPerSec))
	for i, v := range r.RestoreFull.RunsPerSec {
		runs[i] = fmt.Sprintf("%.0f", v)
	}
	fmt.Fprintf(tw, "restore_full\t%d\t%.2f\t%.0f events/s\tbest of %d (%s/s); %d restores, %d full replays; live heap after %s; then a command per partition in %.1f ms\n",
		r.RestoreFull.Events, r.RestoreFull.Seconds, r.RestoreFull.PerSec, r.RestoreFull.Runs, strings.Join(runs, ", "), r.RestoreFull.Restores, r.RestoreFull.FullReplays, mib(r.RestoreFull.HeapLive), r.RestoreFull.FirstCommandsMs)
	fmt.Fprintf(tw, "restore_watermark\t%d\t%.2f\t\t%d restores, %d full replays, %d snapshots loaded; then a command per partition in %.1f ms\n",
		r.RestoreMark.Events, r.RestoreMark.Seconds, r.RestoreMark.Restores, r.RestoreMark.FullReplays, r.RestoreMark.SnapshotsLoaded, r.RestoreMark.FirstCommandsMs)
	if k := r.Projection.KafkaToKafka; k.Records > 0 {
		fmt.Fprintf(tw, "projection kafka_to_kafka\t%d\t%.2f\t%.0f events/s\texactly once into another topic, from the start of the restore topic\n",
			k.Records, k.Seconds, k.PerSec)
	} else {
		fmt.Fprintf(tw, "projection kafka_to_kafka\t\t\t\tnot measured (the workload has no Export)\n")
	}
	if p := r.Projection.Postgres; p.Records > 0 {
		fmt.Fprintf(tw, "projection postgres\t%d\t%.2f\t%.0f events/s\texactly once into the read model\n",
			p.Records, p.Seconds, p.PerSec)
	} else {
		fmt.Fprintf(tw, "projection postgres\t\t\t\tnot measured (no --postgres, or the workload has no ReadModel)\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	m := r.Memory
	fmt.Fprintf(w, "\nmemory: peak heap in use %s during commands_async; cache bounds %d aggregates, %s; cached at most %d, %d at the end; %d evictions\n",
		mib(m.PeakHeapInuse), m.CacheAggregates, mib(uint64(m.CacheBytes)), m.CachedPeak, m.CachedAtEnd, m.Evictions)
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "cpu of this process: %.2f µs per raw record produced, %.2f per command (commands_async), %.2f per raw record consumed, %.2f per event restored\n",
		r.RawTxnProduce.CPUMicros, r.CommandsAsync.CPUMicros, r.RawConsume.CPUMicros, r.RestoreFull.CPUMicros)
	fmt.Fprintf(w, "\ntargets (issue 5):\n")
	fmt.Fprintf(w, "  commands_async / raw_txn_produce  %5.2f   target >= 0.50    %s\n", r.Ratios.AsyncVsRawProduce, met(r.Targets.AsyncHalfOfRaw))
	fmt.Fprintf(w, "  sync p99 at half the max rate     %5.2f ms target <= 25 ms  %s\n", s.P99Ms, met(r.Targets.SyncP99Under25ms))
	fmt.Fprintf(w, "  restore_full / raw_consume        %5.2f   target >= 0.70    %s\n", r.Ratios.RestoreVsRawConsume, met(r.Targets.Restore70OfRaw))
	fmt.Fprintf(w, "  cached aggregates <= cache bound  %5d   bound %d         %s\n", m.CachedAtEnd, m.CacheAggregates, met(r.Targets.CacheWithinBounds))
	fmt.Fprintf(w, "\nprojections / raw_consume: kafka_to_kafka %.2f, postgres %.2f\n", r.Ratios.KafkaProjectionVsRawConsume, r.Ratios.PostgresProjectionVsRawConsume)
	return nil
}
