package service

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/projections"
)

// commands are the standard subcommands, in the order the usage lists
// them.
var commands = []*command{
	{path: "serve", summary: "run the application (processors, projections, HTTP probes and metrics) until SIGTERM, then drain", run: serve},
	{path: "topics create", summary: "create the missing topics, as the application does at start", run: topicsCreate},
	{path: "topics describe", summary: "list the topics: partitions, replicas, retention, cleanup", flags: jsonFlag, run: topicsDescribe},
	{path: "topics verify", summary: "check the topics: present, co-partitioned, events kept forever", run: topicsVerify},
	{path: "events tail", summary: "print events, decoded, with their envelopes", flags: tailFlags, run: eventsTail},
	{path: "aggregate show", args: "TYPE ID", minArgs: 2, maxArgs: 2, summary: "print an aggregate's state and version, folded from its events", flags: jsonFlag, run: aggregateShow},
	{path: "projections status", args: "[NAME]", maxArgs: 1, summary: "print projections' progress and lag (in records and time) per partition", flags: jsonFlag, run: projectionsStatus},
	{path: "projections reset", args: "NAME", minArgs: 1, maxArgs: 1, summary: "make a stopped projection start over from the beginning of the log", run: projectionsReset},
	{path: "projections rebuild", args: "NAME", minArgs: 1, maxArgs: 1, summary: "explain how to rebuild a projection without downtime", run: projectionsRebuild},
	{path: "projections dlq list", args: "NAME", minArgs: 1, maxArgs: 1, summary: "list the events parked in a projection's dead-letter topic", flags: jsonFlag, run: dlqList},
	{path: "projections dlq retry", args: "NAME KEY", minArgs: 2, maxArgs: 2, summary: "apply a key's parked events again and wait for the outcome", run: dlqRetry},
	{path: "schema check", summary: "check the schemas against the registry, registering nothing (for CI)", run: schemaCheck},
	{path: "healthcheck", summary: "ask the serve of this host whether it is ready: exit 0 if so, 1 if not (for container healthchecks)", flags: healthFlags, run: healthcheck},
}

func jsonFlag(fs *flag.FlagSet, inv *invocation) {
	fs.BoolVar(&inv.json, "json", false, "print JSON instead of text")
}

func tailFlags(fs *flag.FlagSet, inv *invocation) {
	jsonFlag(fs, inv)
	fs.StringVar(&inv.aggregate, "aggregate", "", "only events of this aggregate type")
	fs.StringVar(&inv.id, "id", "", "only events of the aggregate with this ID (needs --aggregate)")
	fs.StringVar(&inv.types, "type", "", "only events of these types (comma-separated names: MoneyDeposited,MoneyWithdrawn)")
	fs.Int64Var(&inv.offset, "offset", 0, "start at this offset in each partition")
	fs.StringVar(&inv.since, "since", "", "start at the first event written at or after this time: RFC 3339, or a duration ago (10m)")
	fs.BoolVar(&inv.follow, "follow", false, "keep printing new events until interrupted")
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func topicsCreate(ctx context.Context, inv *invocation) error {
	app, err := inv.offline(ctx)
	if err != nil {
		return err
	}
	if err := app.CreateTopics(ctx); err != nil {
		return err
	}
	topics, err := app.DescribeTopics(ctx)
	if err != nil {
		return err
	}
	for _, t := range topics {
		fmt.Fprintf(inv.stdout, "%s\t%d partitions\n", t.Name, t.Partitions)
	}
	return nil
}

func topicsDescribe(ctx context.Context, inv *invocation) error {
	app, err := inv.offline(ctx)
	if err != nil {
		return err
	}
	topics, err := app.DescribeTopics(ctx)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.stdout, topics)
	}
	tw := newTable(inv.stdout)
	fmt.Fprintln(tw, "TOPIC\tROLE\tOWNER\tPARTITIONS\tREPLICAS\tCONFIGS")
	for _, t := range topics {
		if !t.Exists {
			fmt.Fprintf(tw, "%s\t%s\t%s\tmissing\t\t\n", t.Name, t.Role, t.Owner)
			continue
		}
		var cs []string
		for _, k := range slices.Sorted(maps.Keys(t.Configs)) {
			cs = append(cs, k+"="+t.Configs[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", t.Name, t.Role, t.Owner, t.Partitions, t.ReplicationFactor, strings.Join(cs, " "))
	}
	return tw.Flush()
}

func topicsVerify(ctx context.Context, inv *invocation) error {
	app, err := inv.offline(ctx)
	if err != nil {
		return err
	}
	if err := app.VerifyTopics(ctx); err != nil {
		return err
	}
	fmt.Fprintln(inv.stdout, "topics ok: all present, co-partitioned, events kept forever")
	return nil
}

// eventLine is an event as events tail prints it with --json.
type eventLine struct {
	Topic         string            `json:"topic"`
	Partition     int32             `json:"partition"`
	Offset        int64             `json:"offset"`
	Aggregate     string            `json:"aggregate"`
	AggregateID   string            `json:"aggregate_id"`
	Version       int64             `json:"version"`
	Type          string            `json:"type"`
	Time          time.Time         `json:"time"`
	EventID       string            `json:"event_id"`
	CommandID     string            `json:"command_id"`
	CorrelationID string            `json:"correlation_id,omitempty"`
	CausationID   string            `json:"causation_id,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	Data          any               `json:"data,omitempty"`
	Error         string            `json:"error,omitempty"`
}

func eventsTail(ctx context.Context, inv *invocation) error {
	q := interlock.EventQuery{Aggregate: inv.aggregate, Offset: inv.offset, Follow: inv.follow}
	if inv.id != "" {
		id, err := ulid.ParseStrict(inv.id)
		if err != nil {
			return &usageError{fmt.Sprintf("--id %q is not an aggregate ID (ULID)", inv.id)}
		}
		if inv.aggregate == "" {
			return &usageError{"--id needs --aggregate"}
		}
		q.ID = id
	}
	if inv.offset < 0 {
		return &usageError{fmt.Sprintf("--offset %d: want 0 or more", inv.offset)}
	}
	if inv.since != "" {
		t, err := parseSince(inv.since, time.Now())
		if err != nil {
			return &usageError{err.Error()}
		}
		q.Since = t
	}
	app, err := inv.offline(ctx)
	if err != nil {
		return err
	}
	types := map[string]bool{}
	for _, t := range strings.Split(inv.types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			types[t] = true
		}
	}
	enc := json.NewEncoder(inv.stdout)
	err = app.ReadEvents(ctx, q, func(e interlock.StoredEvent) error {
		if len(types) > 0 && !types[e.Type] {
			return nil
		}
		line := eventLine{
			Topic: e.Position.Topic, Partition: e.Position.Partition, Offset: e.Position.Offset,
			Aggregate: e.AggregateType, AggregateID: e.AggregateID.String(), Version: e.Version, Type: e.Type,
			Time: e.Time, EventID: e.EventID.String(), CommandID: e.CommandID.String(),
			CorrelationID: e.CorrelationID, CausationID: e.CausationID, Metadata: e.Metadata, Data: e.Data,
		}
		if e.Err != nil {
			line.Error = e.Err.Error()
		}
		if inv.json {
			return enc.Encode(line)
		}
		data := line.Error
		if e.Err == nil {
			b, err := json.Marshal(e.Data)
			if err != nil {
				return err
			}
			data = string(b)
		}
		_, err := fmt.Fprintf(inv.stdout, "%s  %s/%d@%d  %s %s v%d  %s %s\n", e.Time.UTC().Format(time.RFC3339Nano),
			line.Topic, line.Partition, line.Offset, line.Aggregate, line.AggregateID, line.Version, line.Type, data)
		return err
	})
	if inv.follow && errors.Is(err, context.Canceled) {
		return nil // interrupted: how a follow ends
	}
	return err
}

// parseSince reads --since: an RFC 3339 time, or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: a duration ago must be positive", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (10m)", s)
	}
	return t, nil
}

func aggregateShow(ctx context.Context, inv *invocation) error {
	typ := inv.args[0]
	id, err := ulid.ParseStrict(inv.args[1])
	if err != nil {
		return &usageError{fmt.Sprintf("%q is not an aggregate ID (ULID)", inv.args[1])}
	}
	app, err := inv.offline(ctx)
	if err != nil {
		return err
	}
	inst, err := app.LoadAggregate(ctx, typ, id)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.stdout, map[string]any{"aggregate": typ, "id": id.String(), "version": inst.Version, "state": inst.State})
	}
	state, err := json.MarshalIndent(inst.State, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(inv.stdout, "%s %s version %d\n%s\n", typ, id, inst.Version, state)
	return err
}

// projections starts the application to reach its projections: as a
// dispatcher only, so they are passive (they follow the running
// instances' progress, and run nothing). It returns the projection named
// name (nil for ""), the application, and what stops it.
func (inv *invocation) projections(ctx context.Context, name string) (*projections.Projector, *interlock.App, func(), error) {
	if len(inv.cfg.Brokers) == 0 {
		return nil, nil, nil, &usageError{fmt.Sprintf("%s needs --brokers (or INTERLOCK_BROKERS): an embedded Kafka has nothing to show once its process ends", inv.cmd.path)}
	}
	app, err := inv.app(ctx, interlock.WithRoles(interlock.RoleDispatch))
	if err != nil {
		return nil, nil, nil, err
	}
	if name != "" && !slices.Contains(app.Projections(), name) {
		return nil, nil, nil, fmt.Errorf("no projection %q (registered: %s)", name, strings.Join(app.Projections(), ", "))
	}
	if err := app.Start(ctx); err != nil {
		return nil, nil, nil, err
	}
	stop := func() { app.Close(context.WithoutCancel(ctx)) }
	if name == "" {
		return nil, app, stop, nil
	}
	return app.Projection(name), app, stop, nil
}

func projectionsStatus(ctx context.Context, inv *invocation) error {
	name := ""
	if len(inv.args) > 0 {
		name = inv.args[0]
	}
	_, app, stop, err := inv.projections(ctx, name)
	if err != nil {
		return err
	}
	defer stop()
	names := app.Projections()
	if name != "" {
		names = []string{name}
	}
	var all []projections.Status
	for _, n := range names {
		st, err := app.Projection(n).Status(ctx)
		if err != nil {
			return err
		}
		all = append(all, st)
	}
	if inv.json {
		type statusJSON struct {
			projections.Status
			Err string `json:"error,omitempty"`
		}
		out := make([]statusJSON, len(all))
		for i, st := range all {
			out[i].Status = st
			if st.Err != nil {
				out[i].Err = st.Err.Error()
			}
			out[i].Status.Err = nil
		}
		return printJSON(inv.stdout, out)
	}
	if len(all) == 0 {
		fmt.Fprintln(inv.stdout, "no projection registered")
		return nil
	}
	for _, st := range all {
		state := "catching up"
		switch {
		case st.Err != nil:
			state = "stopped: " + st.Err.Error()
		case st.CaughtUp:
			state = "caught up"
		}
		fmt.Fprintf(inv.stdout, "%s: lag %d, %s\n", st.Name, st.Lag, state)
		tw := newTable(inv.stdout)
		fmt.Fprintln(tw, "  TOPIC\tPARTITION\tAPPLIED\tEND\tLAG\tBEHIND")
		for _, p := range st.Partitions {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%v\n", p.Topic, p.Partition, p.Applied, p.End, p.Lag, p.Behind.Round(time.Millisecond))
		}
		tw.Flush()
	}
	return nil
}

func projectionsReset(ctx context.Context, inv *invocation) error {
	pr, _, stop, err := inv.projections(ctx, inv.args[0])
	if err != nil {
		return err
	}
	defer stop()
	if err := pr.Reset(ctx); err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, "projection %s reset: it starts over from the beginning of the log when it runs again\n", inv.args[0])
	return nil
}

func projectionsRebuild(ctx context.Context, inv *invocation) error {
	name := inv.args[0]
	app, err := inv.app(ctx)
	if err != nil {
		return err
	}
	v := app.ProjectionVersion(name)
	if v == 0 {
		return fmt.Errorf("no projection %q (registered: %s)", name, strings.Join(app.Projections(), ", "))
	}
	family, _, _ := strings.Cut(name, ".v")
	fmt.Fprintf(inv.stdout, `Projection %[1]s is at version %[2]d. To rebuild it without downtime:

  1. Register version %[3]d beside it, with its own tables if the read model changes:
       projections.New(%[4]q, sink, projections.Version(%[3]d))
     It runs as %[4]s.v%[3]d, from the start of the log, in its own group with its own checkpoints,
     while version %[2]d keeps answering queries.
  2. Deploy. '%[5]s projections status %[4]s.v%[3]d' shows its progress; Ask switches to it
     once it has caught up.
  3. Remove version %[2]d from the code and deploy again. To drop the data its sink keeps,
     run '%[5]s projections reset %[1]s' with the previous release's binary (where
     version %[2]d is still registered) once no instance runs it, or drop its tables by hand.

To rebuild in place instead (the read model is unavailable meanwhile): stop every instance
that runs it, '%[5]s projections reset %[1]s', and start them again.
`, name, v, v+1, family, inv.prog)
	return nil
}

func dlqList(ctx context.Context, inv *invocation) error {
	pr, _, stop, err := inv.projections(ctx, inv.args[0])
	if err != nil {
		return err
	}
	defer stop()
	parked, err := pr.Parked(ctx)
	if err != nil {
		return err
	}
	if inv.json {
		if parked == nil {
			parked = []projections.Parked{}
		}
		return printJSON(inv.stdout, parked)
	}
	if len(parked) == 0 {
		fmt.Fprintf(inv.stdout, "projection %s: no parked event\n", inv.args[0])
		return nil
	}
	tw := newTable(inv.stdout)
	fmt.Fprintln(tw, "KEY\tTYPE\tFROM\tPARKED AT\tTIME\tERROR")
	for _, p := range parked {
		fmt.Fprintf(tw, "%s\t%s\t%s/%d@%d\t%d\t%s\t%s\n", p.Key, p.Type, p.From.Topic, p.From.Partition, p.From.Offset,
			p.At.Offset, p.Time.UTC().Format(time.RFC3339), p.Error)
	}
	return tw.Flush()
}

func dlqRetry(ctx context.Context, inv *invocation) error {
	pr, _, stop, err := inv.projections(ctx, inv.args[0])
	if err != nil {
		return err
	}
	defer stop()
	if err := pr.Retry(ctx, inv.args[1]); err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, "projection %s: the parked events of %s applied; its later events flow again\n", inv.args[0], inv.args[1])
	return nil
}

func schemaCheck(ctx context.Context, inv *invocation) error {
	app, err := inv.app(ctx)
	if err != nil {
		return err
	}
	if err := app.CheckSchemas(ctx); err != nil {
		return err
	}
	fmt.Fprintln(inv.stdout, "schemas ok: every command and event type is compatible with the registry (nothing to check without one)")
	return nil
}
