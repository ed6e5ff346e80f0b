// Package redisview is the Redis sink of projections: read models kept as
// Redis hashes, one per aggregate, by idempotent upserts. It is at least
// once: the projection's offsets are committed to Kafka after a batch is
// written, so after a crash some events are applied again; each update is
// guarded by the event's aggregate version, stored in the hash, so an event
// applied twice changes nothing the second time.
//
//	view := projections.New("balances-cache", redisview.NewSink(client, "bank"))
//	projections.On(view, func(ctx context.Context, b *redisview.Batch, e projections.Event[bank.MoneyDeposited]) error {
//		b.Update(e.EventEnvelope).Incr("balance", e.Data.Amount)
//		return nil
//	})
//
// The hash of aggregate ID is at <prefix>:<aggregate ID>; its field
// "_version" is the version of the last event applied. The guard only
// works for hashes written by one aggregate's events, in order, which is
// how a projection receives them.
package redisview

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/projections"
)

// VersionField is the hash field that holds the version of the last event
// applied.
const VersionField = "_version"

// Sink writes projections into Redis hashes.
type Sink struct {
	client redis.UniversalClient
	prefix string
}

// NewSink returns a sink on client whose keys start with prefix.
func NewSink(client redis.UniversalClient, prefix string) *Sink {
	return &Sink{client: client, prefix: prefix}
}

var _ projections.Sink[*Batch] = (*Sink)(nil)

// Key returns the Redis key of aggregate id's hash.
func (s *Sink) Key(id fmt.Stringer) string { return s.prefix + ":" + id.String() }

// Batch collects a batch's updates; they are written when the handlers of
// the batch have all returned nil.
type Batch struct {
	sink    *Sink
	updates []*Update
}

// Update is the change one event makes to its aggregate's hash.
type Update struct {
	key     string
	version int64
	args    []any
}

// Update starts the change event e makes to its aggregate's hash: it is
// written only if the hash has not seen e's version yet.
func (b *Batch) Update(e aggregate.EventEnvelope) *Update {
	return b.UpdateKey(e.AggregateID.String(), e.Version)
}

// UpdateKey starts a change of the hash <prefix>:<key> made at version: it
// is written only if the hash is at a lower version. Use it for hashes
// keyed otherwise than by aggregate ID, with versions that increase.
func (b *Batch) UpdateKey(key string, version int64) *Update {
	key = b.sink.prefix + ":" + key
	for _, u := range b.updates {
		if u.key == key && u.version == version {
			return u // one event's changes are one guarded update
		}
	}
	u := &Update{key: key, version: version}
	b.updates = append(b.updates, u)
	return u
}

// Set sets field to value.
func (u *Update) Set(field string, value any) *Update {
	u.args = append(u.args, "set", field, value)
	return u
}

// Incr adds by to the integer in field.
func (u *Update) Incr(field string, by int64) *Update {
	u.args = append(u.args, "incr", field, by)
	return u
}

// guarded applies an update unless the hash already has its version.
var guarded = redis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], '_version') or '0')
if v >= tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV, 3 do
  if ARGV[i] == 'set' then
    redis.call('HSET', KEYS[1], ARGV[i+1], ARGV[i+2])
  else
    redis.call('HINCRBY', KEYS[1], ARGV[i+1], ARGV[i+2])
  end
end
redis.call('HSET', KEYS[1], '_version', ARGV[1])
return 1
`)

// Apply runs fn, then writes its updates in one pipeline, in order.
func (s *Sink) Apply(ctx context.Context, _ string, _ []projections.Checkpoint, fn func(context.Context, *Batch) error) error {
	b := &Batch{sink: s}
	if err := fn(ctx, b); err != nil {
		return err
	}
	if len(b.updates) == 0 {
		return nil
	}
	err := s.write(ctx, b.updates)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis lost its scripts (a restart): load it, write again.
		if err = guarded.Load(ctx, s.client).Err(); err == nil {
			err = s.write(ctx, b.updates)
		}
	}
	if err != nil {
		return fmt.Errorf("redis view: %w", err)
	}
	return nil
}

func (s *Sink) write(ctx context.Context, updates []*Update) error {
	pipe := s.client.Pipeline()
	for _, u := range updates {
		guarded.EvalSha(ctx, pipe, []string{u.key}, append([]any{strconv.FormatInt(u.version, 10)}, u.args...)...)
	}
	_, err := pipe.Exec(ctx)
	return err
}
