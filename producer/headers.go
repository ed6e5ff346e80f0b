package producer

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
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
	// HeaderReplyKey is the key of the reply a dispatcher waits for: one
	// per attempt, so a retry with the same command ID is never handed
	// the outcome of an earlier attempt.
	HeaderReplyKey = "interlock-reply-key"
	HeaderDeadline = "interlock-deadline"
	HeaderTime     = "interlock-time"
	HeaderCodec    = "interlock-codec"
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
	// ReplyKey is the key to give the reply (a slice of the record's
	// header), or nil: then the command ID is.
	ReplyKey []byte
	// Deadline, when set, is when the command's caller stops waiting: a
	// processor that gets the command later rejects it.
	Deadline time.Time
	// Result is the handler's result as JSON, on the last event of a
	// command that returned one.
	Result []byte
}

// ParseHeaders decodes the Interlock headers and the key (the aggregate ID)
// of r. Errors name the header that is missing or malformed.
func ParseHeaders(r *kgo.Record) (Headers, error) { return parseHeaders(r, false, nil) }

// ParseEventHeaders decodes only what folding an event needs: the key (the
// aggregate ID), the type, the aggregate version, the command ID and the
// result. The other fields stay zero and their headers unchecked; the
// errors are ParseHeaders' for the headers it reads. A replay reads
// millions of events: the full parse costs it a fifth of its CPU.
func ParseEventHeaders(r *kgo.Record) (Headers, error) { return parseHeaders(r, true, nil) }

// ParseEvent is ParseEventHeaders for an event of the route's aggregate:
// when the route knows the event's type, Type is the route's own string
// for it, so that a replay allocates none per event.
func (rt *Route) ParseEvent(r *kgo.Record) (Headers, error) { return parseHeaders(r, true, rt.events) }

// parseHeaders parses r's headers; an event's type found in names takes
// that message's name.
func parseHeaders(r *kgo.Record, event bool, names map[string]*Message) (Headers, error) {
	h := Headers{ReplyTo: -1}
	var kept *keptStrings // the event parse keeps one string: no need
	if !event {
		kept = new(keptStrings)
	}
	err := h.parse(r, event, kept, names)
	h.setKept(r, kept) // a bad record's other fields still say what they can
	if err == nil && h.Type == "" {
		err = kinded(ErrMissingHeader, fmt.Errorf("header %s is missing", HeaderType))
	}
	return h, err
}

func (h *Headers) parse(r *kgo.Record, event bool, kept *keptStrings, names map[string]*Message) error {
	id, err := ulid.ParseStrict(string(r.Key))
	if err != nil {
		return kinded(ErrBadULID, fmt.Errorf("record key %q is not an aggregate ID (ULID): %w", r.Key, err))
	}
	h.Command.AggregateID = id
	for i := range r.Headers {
		kv := &r.Headers[i]
		// Values are converted to strings only where kept: a string
		// that does not escape costs no allocation.
		switch kv.Key {
		case HeaderType:
			if m, ok := names[string(kv.Value)]; ok {
				h.Type = m.Name
				continue
			}
			h.keep(kept, keepType, r, i)
		case HeaderResult:
			h.Result = kv.Value
		case HeaderCommandID:
			if h.Command.CommandID, err = ulid.ParseStrict(string(kv.Value)); err != nil {
				return kinded(ErrBadULID, fmt.Errorf("header %s: %w", kv.Key, err))
			}
		case HeaderVersion:
			if h.Version, err = strconv.ParseInt(string(kv.Value), 10, 64); err != nil {
				return kinded(ErrBadHeader, fmt.Errorf("header %s: %w", kv.Key, err))
			}
		default:
			if !event {
				if err := h.parseEnvelope(r, i, kept); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// parseEnvelope decodes header i of r if it is one of the headers
// ParseEventHeaders skips.
func (h *Headers) parseEnvelope(r *kgo.Record, i int, kept *keptStrings) error {
	kv := &r.Headers[i]
	var err error
	switch kv.Key {
	case HeaderAggregateType:
		h.keep(kept, keepAggregateType, r, i)
	case HeaderCodec:
		h.keep(kept, keepCodec, r, i)
	case HeaderCorrelationID:
		h.keep(kept, keepCorrelationID, r, i)
	case HeaderCausationID:
		h.keep(kept, keepCausationID, r, i)
	case HeaderTime:
		if h.Time, err = time.Parse(time.RFC3339Nano, string(kv.Value)); err != nil {
			return kinded(ErrBadHeader, fmt.Errorf("header %s: %w", kv.Key, err))
		}
	case HeaderDeadline:
		if h.Deadline, err = time.Parse(time.RFC3339Nano, string(kv.Value)); err != nil {
			return kinded(ErrBadHeader, fmt.Errorf("header %s: %w", kv.Key, err))
		}
	case HeaderEventID:
		if h.EventID, err = ulid.ParseStrict(string(kv.Value)); err != nil {
			return kinded(ErrBadULID, fmt.Errorf("header %s: %w", kv.Key, err))
		}
	case HeaderExpectedVersion:
		n, err := strconv.ParseInt(string(kv.Value), 10, 64)
		if err != nil || n < 0 {
			return kinded(ErrBadHeader, fmt.Errorf("header %s: %q is not a version", kv.Key, kv.Value))
		}
		h.Command.ExpectedVersion = &n
	case HeaderReplyTo:
		n, err := strconv.ParseInt(string(kv.Value), 10, 32)
		if err != nil || n < 0 {
			return kinded(ErrBadHeader, fmt.Errorf("header %s: %q is not a partition", kv.Key, kv.Value))
		}
		h.ReplyTo = int32(n)
	case HeaderReplyKey:
		if len(kv.Value) == 0 || len(kv.Value) > maxReplyKey {
			return kinded(ErrBadHeader, fmt.Errorf("header %s: %d bytes, want 1 to %d", kv.Key, len(kv.Value), maxReplyKey))
		}
		h.ReplyKey = kv.Value
	}
	return nil
}

// The string fields of Headers, as keptStrings records them.
const (
	keepType = iota
	keepAggregateType
	keepCodec
	keepCorrelationID
	keepCausationID
)

// keptStrings records which headers hold the string fields a parse keeps,
// so that setKept converts them in one allocation of which each field is a
// substring: a command keeps five.
type keptStrings struct {
	header [8]int // index in the record's headers
	field  [8]int8
	n      int
	size   int
}

// keep records in kept that header i of r holds field; without kept it
// sets the field at once. A record that repeats headers beyond what kept
// holds has the fields recorded so far set first, so the last value of a
// repeated header wins, as for every other header.
func (h *Headers) keep(kept *keptStrings, field int8, r *kgo.Record, i int) {
	if kept == nil {
		h.setString(field, string(r.Headers[i].Value))
		return
	}
	if kept.n == len(kept.header) {
		h.setKept(r, kept)
		*kept = keptStrings{}
	}
	kept.header[kept.n], kept.field[kept.n] = i, field
	kept.n++
	kept.size += len(r.Headers[i].Value)
}

// setKept sets the kept string fields from r's headers.
func (h *Headers) setKept(r *kgo.Record, kept *keptStrings) {
	if kept == nil {
		return
	}
	switch kept.n {
	case 0:
		return
	case 1:
		h.setString(kept.field[0], string(r.Headers[kept.header[0]].Value))
		return
	}
	var b strings.Builder
	b.Grow(kept.size)
	for _, i := range kept.header[:kept.n] {
		b.Write(r.Headers[i].Value)
	}
	s := b.String()
	for j, i := range kept.header[:kept.n] {
		n := len(r.Headers[i].Value)
		h.setString(kept.field[j], s[:n])
		s = s[n:]
	}
}

func (h *Headers) setString(field int8, v string) {
	switch field {
	case keepType:
		h.Type = v
	case keepAggregateType:
		h.AggregateType = v
	case keepCodec:
		h.Codec = v
	case keepCorrelationID:
		h.Command.CorrelationID = v
	case keepCausationID:
		h.Command.CausationID = v
	}
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

// headerValues builds record headers whose values share one buffer: a
// record costs two allocations (the buffer and its headers) instead of one
// per value and one per formatted ID or time.
type headerValues struct {
	buf   []byte
	start int // where the first header's value begins in buf
	hs    []kgo.RecordHeader
	ends  [12]int // where each header's value ends in buf
}

func (w *headerValues) add(key string) {
	w.ends[len(w.hs)] = len(w.buf)
	w.hs = append(w.hs, kgo.RecordHeader{Key: key})
}

func (w *headerValues) str(key, v string) { w.buf = append(w.buf, v...); w.add(key) }

func (w *headerValues) int(key string, n int64) { w.buf = strconv.AppendInt(w.buf, n, 10); w.add(key) }

func (w *headerValues) time(key string, t time.Time) {
	w.buf = t.UTC().AppendFormat(w.buf, time.RFC3339Nano)
	w.add(key)
}

func (w *headerValues) id(key string, id ulid.ULID) { w.buf = appendULID(w.buf, id); w.add(key) }

// headers returns the headers, their values cut from the final buffer; a
// value's capacity ends where it does, so an append to one cannot spill
// into the next.
func (w *headerValues) headers() []kgo.RecordHeader {
	from := w.start
	for i := range w.hs {
		end := w.ends[i]
		w.hs[i].Value = w.buf[from:end:end]
		from = end
	}
	return w.hs
}

func appendULID(b []byte, id ulid.ULID) []byte {
	n := len(b)
	b = slices.Grow(b, ulid.EncodedSize)[:n+ulid.EncodedSize]
	_ = id.MarshalTextTo(b[n:]) // cannot fail: there is room
	return b
}

// maxReplyKey bounds a reply key: a dispatcher's are ULIDs.
const maxReplyKey = 64

// maxTimeLen is the longest RFC 3339 time in UTC with nanoseconds (years
// of four digits; longer ones only grow the buffer).
const maxTimeLen = len("2006-01-02T15:04:05.999999999Z")

// commandHeaders returns the headers of a command record.
func commandHeaders(name, aggType, codec string, c aggregate.Command, replyTo int32, now, deadline time.Time) []kgo.RecordHeader {
	w := headerValues{
		buf: make([]byte, 0, len(name)+len(aggType)+len(codec)+ulid.EncodedSize+len(c.CorrelationID)+len(c.CausationID)+2*maxTimeLen+2*20),
		hs:  make([]kgo.RecordHeader, 0, 10),
	}
	w.str(HeaderType, name)
	w.str(HeaderAggregateType, aggType)
	w.str(HeaderCodec, codec)
	w.id(HeaderCommandID, c.CommandID)
	w.str(HeaderCorrelationID, c.CorrelationID)
	w.time(HeaderTime, now)
	if c.CausationID != "" {
		w.str(HeaderCausationID, c.CausationID)
	}
	if c.ExpectedVersion != nil {
		w.int(HeaderExpectedVersion, *c.ExpectedVersion)
	}
	if replyTo >= 0 {
		w.int(HeaderReplyTo, int64(replyTo))
	}
	if !deadline.IsZero() {
		w.time(HeaderDeadline, deadline)
	}
	return w.headers()
}

// eventRecord is an event's record and its headers in one allocation,
// with room for the result header a processor may add.
type eventRecord struct {
	kgo.Record
	headers [10]kgo.RecordHeader
}

// EventRecord builds the record of one event: keyed by the aggregate ID,
// with its envelope in headers, for the given topic and partition. The key
// and the header values share one buffer.
func EventRecord(topic string, partition int32, codec string, env aggregate.EventEnvelope, value []byte) *kgo.Record {
	rec := &eventRecord{Record: kgo.Record{Topic: topic, Partition: partition, Value: value, Timestamp: env.Time}}
	w := headerValues{
		buf: make([]byte, 0, 4*ulid.EncodedSize+len(env.Type)+len(env.AggregateType)+len(codec)+20+
			len(env.CorrelationID)+len(env.CausationID)+maxTimeLen),
		hs: rec.headers[:0],
	}
	w.buf = appendULID(w.buf, env.AggregateID)
	w.start = len(w.buf)
	w.str(HeaderType, env.Type)
	w.str(HeaderAggregateType, env.AggregateType)
	w.str(HeaderCodec, codec)
	w.int(HeaderVersion, env.Version)
	w.id(HeaderEventID, env.EventID)
	w.id(HeaderCommandID, env.CommandID)
	w.str(HeaderCorrelationID, env.CorrelationID)
	w.str(HeaderCausationID, env.CausationID)
	w.time(HeaderTime, env.Time)
	rec.Headers = w.headers()
	rec.Key = w.buf[:w.start:w.start]
	return &rec.Record
}
