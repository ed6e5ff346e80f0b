package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Resetter is implemented by sinks that can forget a projection: its
// checkpoints and, if the sink knows them, its read model's data.
type Resetter interface {
	Reset(ctx context.Context, projection string) error
}

// ErrRunning is returned by Reset while instances of the projection run.
var ErrRunning = errors.New("projections: the projection is running")

// Reset makes the projection start over from the beginning of the log
// the next time it runs: the sink forgets it (Resetter; the read model's
// data too if the sink's Reset clears it), the group's offsets are
// deleted, and its parked events are released. Every instance that runs it
// must be stopped first (ErrRunning otherwise). An instance that only asks
// (Passive) can call it.
func (pr *Projector) Reset(ctx context.Context) error {
	adm := kadm.NewClient(pr.dlq)
	groups, err := adm.DescribeGroups(ctx, pr.cfg.Group)
	if err == nil {
		err = groups.Error()
	}
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("projection %q: describing its group: %w", pr.name, err)
	}
	if g, ok := groups[pr.cfg.Group]; ok && len(g.Members) > 0 {
		return fmt.Errorf("%w: %d instances are in group %s; stop them first", ErrRunning, len(g.Members), pr.cfg.Group)
	}
	if r, ok := pr.sink.(Resetter); ok {
		if err := r.Reset(ctx, pr.name); err != nil {
			return fmt.Errorf("projection %q: resetting its sink: %w", pr.name, err)
		}
	}
	if _, err := adm.DeleteGroup(ctx, pr.cfg.Group); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("projection %q: deleting its group's offsets: %w", pr.name, err)
	}
	recs, _, err := pr.readDLQ(ctx)
	if err != nil {
		return fmt.Errorf("projection %q: reading its dead-letter topic: %w", pr.name, err)
	}
	for key, parked := range parkedOf(recs) {
		rec := &kgo.Record{Topic: pr.cfg.DeadLetterTopic, Key: []byte(key), Headers: []kgo.RecordHeader{
			{Key: HeaderDLQResolved, Value: []byte("reset")},
			{Key: HeaderDLQCovers, Value: strconv.AppendInt(nil, parked[len(parked)-1].Offset, 10)},
		}}
		if err := pr.dlq.ProduceSync(ctx, rec).FirstErr(); err != nil {
			return fmt.Errorf("projection %q: releasing parked events: %w", pr.name, err)
		}
	}
	pr.log.Info("interlock: projection reset; it starts over from the beginning of the log", "group", pr.cfg.Group)
	return nil
}
