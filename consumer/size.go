package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/producer"
)

// recordOverhead bounds what a record adds to its key, value and headers
// in a batch of one: the batch header (61 bytes) and the record's and each
// header's length and delta fields (varints, at most 5 or 10 bytes each).
const (
	recordOverhead = 61 + 40
	headerOverhead = 10
)

// defaultBatchBytes is franz-go's default ProducerBatchMaxBytes.
const defaultBatchBytes = 1000012

// recordSize is an upper bound of r's size on the wire, alone in a batch,
// uncompressed.
func recordSize(r *kgo.Record) int {
	n := recordOverhead + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += headerOverhead + len(h.Key) + len(h.Value)
	}
	return n
}

// limits are the sizes Kafka accepts: the producer's batch bound, which
// franz-go enforces, and each events topic's max.message.bytes, which the
// broker does. The session's producer reads them (as its batch bound per
// topic) from its own goroutines.
type limits struct {
	batch  int
	topics atomic.Pointer[map[string]int]
}

// forTopic is the largest record, and batch, that topic accepts.
func (l *limits) forTopic(topic string) int {
	if m := l.topics.Load(); m != nil {
		if n, ok := (*m)[topic]; ok && n < l.batch {
			return n
		}
	}
	return l.batch
}

// batchOpt makes the producer's batches fit each events topic: several
// events that each fit must not make a batch the broker refuses.
func (p *Processor) batchOpt() kgo.Opt {
	return kgo.ProducerBatchMaxBytesFn(func(topic string) int32 { return int32(p.limits.forTopic(topic)) })
}

// initLimits reads the producer's batch bound from the configured client
// options and the events topics' max.message.bytes, with a client of its
// own: the session's producer needs them from its start.
func (p *Processor) initLimits(ctx context.Context) {
	p.limits.batch = defaultBatchBytes
	cl, err := kgo.NewClient(p.cfg.ClientOpts...)
	if err != nil {
		return // the session's client will say why
	}
	defer cl.Close()
	switch v := cl.OptValue(kgo.ProducerBatchMaxBytes).(type) {
	case int32:
		p.limits.batch = int(v)
	case func(string) int32:
		p.limits.batch = int(v(""))
	}
	p.loadLimits(ctx, cl)
}

// loadLimits reads the events topics' max.message.bytes with cl, and
// reports whether one went down. A failure (no DescribeConfigs right)
// keeps the limits known: a record over a topic's is then refused by the
// broker, which makes the loop read them again.
func (p *Processor) loadLimits(ctx context.Context, cl *kgo.Client) (lowered bool) {
	topics := make([]string, 0, len(p.aggs))
	for _, a := range p.aggs {
		topics = append(topics, a.Route.EventsTopic)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		p.log.Warn("interlock: reading the events topics' max.message.bytes", "err", err)
		return false
	}
	next := map[string]int{}
	if old := p.limits.topics.Load(); old != nil {
		next = maps.Clone(*old)
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if n, err := strconv.Atoi(*c.Value); err == nil && n > 0 {
				// Against what the producer works with now, known limit
				// or not: its batch bound per topic is read once.
				if n < p.limits.forTopic(rc.Name) {
					lowered = true
				}
				next[rc.Name] = n
			}
		}
	}
	p.limits.topics.Store(&next)
	return lowered
}

// tooLarge returns an error naming the first of records that Kafka would
// refuse as too large, or nil.
func (p *Processor) tooLarge(records []*kgo.Record) error {
	for _, r := range records {
		if n, limit := recordSize(r), p.limits.forTopic(r.Topic); n > limit {
			return &tooLargeError{fmt.Sprintf("an event of %d bytes is too large: %s accepts %d (the lower of its max.message.bytes and the producer's batch size)", n, r.Topic, limit)}
		}
	}
	return nil
}

// refusedTooLarge reports whether err is Kafka refusing a record as too
// large.
func refusedTooLarge(err error) bool { return errors.Is(err, kerr.MessageTooLarge) }

// tooLargeError is a record Kafka would refuse; it matches
// kerr.MessageTooLarge without repeating the broker's wording.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string { return e.msg }
func (e *tooLargeError) Unwrap() error { return kerr.MessageTooLarge }

// replyValue encodes r to fit in a record of the replies topic under key.
// A command with more events than a reply can list (about 15 000) keeps
// the last position of each partition, which is what waiting for a
// projection needs; a result that still does not fit is left out, the
// reply saying so. A reply too large would be dropped by the producer,
// and its caller would wait for ever.
func (p *Processor) replyValue(r *producer.Reply, key []byte) []byte {
	limit := p.limits.forTopic(p.cfg.RepliesTopic) - recordOverhead - len(key)
	b := producer.EncodeReply(r)
	if len(b) <= limit {
		return b
	}
	r.Positions = lastPerPartition(r.Positions)
	if b = producer.EncodeReply(r); len(b) <= limit {
		return b
	}
	p.log.Warn("interlock: a command's result does not fit in a reply; replying without it", "command_id", r.CommandID, "bytes", len(r.Result))
	r.Reason = fmt.Sprintf("applied at version %d, but its result of %d bytes does not fit in a reply", r.Version, len(r.Result))
	r.Result = nil
	return producer.EncodeReply(r)
}

// lastPerPartition returns, of ps, the last position of each partition,
// in the order the partitions first appear.
func lastPerPartition(ps []producer.Position) []producer.Position {
	type tp struct {
		topic     string
		partition int32
	}
	at := map[tp]int{}
	var out []producer.Position
	for _, pos := range ps {
		k := tp{pos.Topic, pos.Partition}
		if i, ok := at[k]; ok {
			out[i] = pos
			continue
		}
		at[k] = len(out)
		out = append(out, pos)
	}
	return out
}
