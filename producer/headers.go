package producer

import (
	"fmt"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
)

// Record header names. Every Interlock record carries its envelope in
// headers, so the value is the bare payload any schema-aware reader decodes.
const (
	HeaderType            = "interlock-type"
	HeaderAggregateType   = "interlock-aggregate-type"
	HeaderVersion         = "interlock-aggregate-version"
	HeaderEventID         = "interlock-event-id"
	HeaderCommandID       = "interlock-command-id"
	HeaderCorrelationID   = "interlock-correlation-id"
	HeaderCausationID     = "interlock-causation-id"
	HeaderExpectedVersion = "interlock-expected-version"
	HeaderReplyTo         = "interlock-reply-to"
	HeaderDeadline        = "interlock-deadline"
	HeaderTime            = "interlock-time"
	HeaderCodec           = "interlock-codec"
	// HeaderResult is on the last event of a command whose handler
	// returned a result: the result as JSON.
	HeaderResult = "interlock-result"
)

// Headers is the decoded envelope of a command or event record.
type Headers struct {
	Type          string
	AggregateType string
	Codec         string
	Time          time.Time
	Command       aggregate.Command
	// Version is an event's aggregate version.
	Version int64
	// EventID is an event's ID.
	EventID ulid.ULID
	// ReplyTo is the replies partition a command's dispatcher reads, or -1
	// when no reply is wanted.
	ReplyTo int32
	// Deadline, when set, is when the command's caller stops waiting: a
	// processor that gets the command later rejects it.
	Deadline time.Time
	// Result is the handler's result as JSON, on the last event of a
	// command that returned one.
	Result []byte
}

// ParseHeaders decodes the Interlock headers and the key (the aggregate ID)
// of r. Errors name the header that is missing or malformed.
func ParseHeaders(r *kgo.Record) (Headers, error) {
	h := Headers{ReplyTo: -1}
	id, err := ulid.ParseStrict(string(r.Key))
	if err != nil {
		return h, fmt.Errorf("record key %q is not an aggregate ID (ULID): %w", r.Key, err)
	}
	h.Command.AggregateID = id
	for _, kv := range r.Headers {
		v := string(kv.Value)
		switch kv.Key {
		case HeaderType:
			h.Type = v
		case HeaderAggregateType:
			h.AggregateType = v
		case HeaderCodec:
			h.Codec = v
		case HeaderResult:
			h.Result = kv.Value
		case HeaderCorrelationID:
			h.Command.CorrelationID = v
		case HeaderCausationID:
			h.Command.CausationID = v
		case HeaderTime:
			if h.Time, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return h, fmt.Errorf("header %s: %w", kv.Key, err)
			}
		case HeaderDeadline:
			if h.Deadline, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return h, fmt.Errorf("header %s: %w", kv.Key, err)
			}
		case HeaderCommandID:
			if h.Command.CommandID, err = ulid.ParseStrict(v); err != nil {
				return h, fmt.Errorf("header %s: %w", kv.Key, err)
			}
		case HeaderEventID:
			if h.EventID, err = ulid.ParseStrict(v); err != nil {
				return h, fmt.Errorf("header %s: %w", kv.Key, err)
			}
		case HeaderVersion:
			if h.Version, err = strconv.ParseInt(v, 10, 64); err != nil {
				return h, fmt.Errorf("header %s: %w", kv.Key, err)
			}
		case HeaderExpectedVersion:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return h, fmt.Errorf("header %s: %q is not a version", kv.Key, v)
			}
			h.Command.ExpectedVersion = &n
		case HeaderReplyTo:
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 0 {
				return h, fmt.Errorf("header %s: %q is not a partition", kv.Key, v)
			}
			h.ReplyTo = int32(n)
		}
	}
	if h.Type == "" {
		return h, fmt.Errorf("header %s is missing", HeaderType)
	}
	return h, nil
}

// Header returns the value of r's header key, without parsing the others.
func Header(r *kgo.Record, key string) ([]byte, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

func header(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }

// commandHeaders returns the headers of a command record.
func commandHeaders(name, aggType, codec string, c aggregate.Command, replyTo int32, now, deadline time.Time) []kgo.RecordHeader {
	hs := make([]kgo.RecordHeader, 0, 10)
	hs = append(hs,
		header(HeaderType, name),
		header(HeaderAggregateType, aggType),
		header(HeaderCodec, codec),
		header(HeaderCommandID, c.CommandID.String()),
		header(HeaderCorrelationID, c.CorrelationID),
		header(HeaderTime, now.UTC().Format(time.RFC3339Nano)),
	)
	if c.CausationID != "" {
		hs = append(hs, header(HeaderCausationID, c.CausationID))
	}
	if c.ExpectedVersion != nil {
		hs = append(hs, header(HeaderExpectedVersion, strconv.FormatInt(*c.ExpectedVersion, 10)))
	}
	if replyTo >= 0 {
		hs = append(hs, header(HeaderReplyTo, strconv.FormatInt(int64(replyTo), 10)))
	}
	if !deadline.IsZero() {
		hs = append(hs, header(HeaderDeadline, deadline.UTC().Format(time.RFC3339Nano)))
	}
	return hs
}

// EventRecord builds the record of one event: keyed by the aggregate ID,
// with its envelope in headers, for the given topic and partition.
func EventRecord(topic string, partition int32, codec string, env aggregate.EventEnvelope, value []byte) *kgo.Record {
	return &kgo.Record{
		Topic:     topic,
		Partition: partition,
		Key:       []byte(env.AggregateID.String()),
		Value:     value,
		Timestamp: env.Time,
		Headers: []kgo.RecordHeader{
			header(HeaderType, env.Type),
			header(HeaderAggregateType, env.AggregateType),
			header(HeaderCodec, codec),
			header(HeaderVersion, strconv.FormatInt(env.Version, 10)),
			header(HeaderEventID, env.EventID.String()),
			header(HeaderCommandID, env.CommandID.String()),
			header(HeaderCorrelationID, env.CorrelationID),
			header(HeaderCausationID, env.CausationID),
			header(HeaderTime, env.Time.UTC().Format(time.RFC3339Nano)),
		},
	}
}
