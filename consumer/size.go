package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// recordOverhead bounds what a record adds to its key, value and headers
// in a batch of one: the batch header (61 bytes) and the record's and each
// header's length and delta fields (varints, at most 5 or 10 bytes each).
const (
	recordOverhead = 61 + 40
	headerOverhead = 10
)

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
// broker does. Only the processing loop uses them.
type limits struct {
	batch  int
	topics map[string]int
}

// maxRecord is the largest record topic accepts.
func (l *limits) maxRecord(topic string) int {
	if m, ok := l.topics[topic]; ok && m < l.batch {
		return m
	}
	return l.batch
}

// loadLimits reads the producer's batch bound and the events topics'
// max.message.bytes. A failure (no DescribeConfigs right) leaves the
// topics' limits as they were: a record over them is then found by the
// broker's refusal, which makes the loop load them again.
func (p *Processor) loadLimits(ctx context.Context) {
	cl := p.sess.Client()
	if v, ok := cl.OptValue(kgo.ProducerBatchMaxBytes).(int32); ok {
		p.limits.batch = int(v)
	}
	if p.limits.topics == nil {
		p.limits.topics = map[string]int{}
	}
	topics := make([]string, 0, len(p.aggs))
	for _, a := range p.aggs {
		topics = append(topics, a.Route.EventsTopic)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		p.log.Warn("interlock: reading the events topics' max.message.bytes", "err", err)
		return
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if n, err := strconv.Atoi(*c.Value); err == nil && n > 0 {
				p.limits.topics[rc.Name] = n
			}
		}
	}
}

// tooLarge returns an error naming the first of records that Kafka would
// refuse as too large, or nil.
func (p *Processor) tooLarge(records []*kgo.Record) error {
	for _, r := range records {
		if n, limit := recordSize(r), p.limits.maxRecord(r.Topic); n > limit {
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
