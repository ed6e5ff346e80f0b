package producer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/internal/acl"
)

// ErrUnknownCommand is returned for a command type no registered aggregate
// handles.
var ErrUnknownCommand = errors.New("unknown command type")

// ErrClosed is returned by a Dispatcher that is closing or closed.
var ErrClosed = errors.New("interlock: dispatcher closed")

// DispatcherConfig configures a Dispatcher.
type DispatcherConfig struct {
	// ClientOpts are the franz-go options every client starts from: seed
	// brokers, TLS, SASL.
	ClientOpts []kgo.Opt
	// RepliesTopic is the topic processors answer on.
	RepliesTopic string
	// InstanceID is this instance's stable ID; it chooses the one replies
	// partition this dispatcher reads.
	InstanceID string
	// Routes are the registered aggregates.
	Routes []*Route
	// Logger receives the dispatcher's logs.
	Logger *slog.Logger
}

// Dispatcher sends commands and waits for their replies. It reads only its
// own partition of the replies topic, from the end, so an instance never
// reads the replies meant for others.
type Dispatcher struct {
	log       *slog.Logger
	routes    map[reflect.Type]*Route
	producer  *kgo.Client
	replies   *kgo.Client
	partition int32

	mu      sync.Mutex
	closed  bool
	waiting map[string]waiter
	// byCommand is the reply key of the latest call waiting for each
	// command ID: processors older than reply keys reply under the
	// command ID.
	byCommand map[string]string
	inflight  sync.WaitGroup
	done      chan struct{}
	// refused is closed, and replaced, each time Kafka refuses to let
	// the replies be read, and refusal says what was refused: the callers
	// waiting learn it then, not when their contexts end. Nothing is
	// latched, so granting the ACL is enough.
	refused chan struct{}
	refusal error
	// quit ends the reader's pause after a refusal, on Close.
	quit chan struct{}
}

// NewDispatcher connects a Dispatcher and starts reading its replies
// partition. The replies topic must exist.
func NewDispatcher(ctx context.Context, cfg DispatcherConfig) (*Dispatcher, error) {
	d := &Dispatcher{
		log:       cfg.Logger,
		routes:    map[reflect.Type]*Route{},
		waiting:   map[string]waiter{},
		byCommand: map[string]string{},
		done:      make(chan struct{}),
		refused:   make(chan struct{}),
		quit:      make(chan struct{}),
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	for _, r := range cfg.Routes {
		for _, c := range r.Type.Commands() {
			d.routes[c.Type] = r
		}
	}
	var err error
	d.producer, err = kgo.NewClient(append(append([]kgo.Opt(nil), cfg.ClientOpts...),
		kgo.ProducerLinger(0),
		kgo.RecordRetries(10), // bounded, so Send fails instead of blocking forever
	)...)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: %w", err)
	}
	adm := kadm.NewClient(d.producer)
	topics, err := adm.ListTopics(ctx, cfg.RepliesTopic)
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		d.producer.Close()
		return nil, fmt.Errorf("dispatcher: replies topic %s: %w", cfg.RepliesTopic, err)
	}
	n := len(topics[cfg.RepliesTopic].Partitions)
	if n == 0 {
		d.producer.Close()
		return nil, fmt.Errorf("dispatcher: replies topic %s has no partitions", cfg.RepliesTopic)
	}
	d.partition = ReplyPartition(cfg.InstanceID, n)
	ends, err := adm.ListEndOffsets(ctx, cfg.RepliesTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		d.producer.Close()
		return nil, fmt.Errorf("dispatcher: end of replies partition: %w", err)
	}
	end, _ := ends.Lookup(cfg.RepliesTopic, d.partition)
	// Start exactly at the end as it is now: every reply to a command sent
	// from now on lies after it.
	d.replies, err = kgo.NewClient(append(append([]kgo.Opt(nil), cfg.ClientOpts...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			cfg.RepliesTopic: {d.partition: kgo.NewOffset().At(end.Offset)},
		}),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		d.producer.Close()
		return nil, fmt.Errorf("dispatcher: %w", err)
	}
	go d.readReplies()
	return d, nil
}

// ReplyPartition is the replies partition of the instance with the given ID.
func ReplyPartition(instanceID string, partitions int) int32 {
	h := fnv.New32a()
	h.Write([]byte(instanceID))
	return int32(h.Sum32() % uint32(partitions))
}

func (d *Dispatcher) readReplies() {
	defer close(d.done)
	for {
		fs := d.replies.PollFetches(context.Background())
		if fs.IsClientClosed() {
			return
		}
		denied := false
		fs.EachError(func(t string, p int32, err error) {
			d.log.Warn("interlock: reading replies", "topic", t, "partition", p, "err", err)
			if acl.Denied(err) {
				denied = true
				d.mu.Lock()
				d.refusal = fmt.Errorf("reading replies from %s: %w", t, err)
				close(d.refused)
				d.refused = make(chan struct{})
				d.mu.Unlock()
			}
		})
		if denied {
			// The client asks again at once: pause, so a refusal is not
			// logged a thousand times a second.
			select {
			case <-d.quit:
			case <-time.After(time.Second):
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			d.mu.Lock()
			key := string(r.Key)
			if k, ok := d.byCommand[key]; ok {
				key = k // from a processor that predates reply keys
			}
			w, ok := d.waiting[key]
			d.forget(key)
			d.mu.Unlock()
			if !ok {
				return // a reply to a caller that gave up, or to an earlier run
			}
			rep, err := DecodeReply(r.Value)
			if err != nil {
				rep = &Reply{Status: Failed, CommandID: w.commandID, Reason: err.Error()}
			}
			w.ch <- rep
		})
	}
}

// Lookup returns the route and message of a command type, or false when no
// registered aggregate handles it.
func (d *Dispatcher) Lookup(t reflect.Type) (*Route, *Message, bool) {
	route, ok := d.routes[t]
	if !ok {
		return nil, nil, false
	}
	msg, ok := route.CommandOf(t)
	return route, msg, ok
}

// Dispatch sends cmd (a command value) with its metadata headers and waits
// for its reply. env must be prepared (aggregate ID and command ID set).
// When ctx ends first, Dispatch returns ctx's error; the command may still
// be handled. So it may when Kafka refuses to let the replies be read: the
// refusal is returned as soon as it arrives.
func (d *Dispatcher) Dispatch(ctx context.Context, cmd any, env aggregate.Command, md map[string]string) (*Reply, error) {
	// The reply to this attempt: a retry with the same command ID, or a
	// second call with it at the same time, waits for its own.
	key := ulid.Make().String()
	ch := make(chan *Reply, 1)
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.inflight.Done()
	d.mu.Lock()
	d.waiting[key] = waiter{ch: ch, commandID: env.CommandID.String()}
	d.byCommand[env.CommandID.String()] = key
	refused := d.refused
	d.mu.Unlock()
	forget := func() {
		d.mu.Lock()
		d.forget(key)
		d.mu.Unlock()
	}
	if err := d.produce(ctx, cmd, env, md, d.partition, key); err != nil {
		forget()
		return nil, err
	}
	select {
	case rep := <-ch:
		return rep, nil
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("waiting for the reply to command %s: %w", env.CommandID, ctx.Err())
	case <-d.done:
		forget()
		return nil, fmt.Errorf("waiting for the reply to command %s: %w", env.CommandID, ErrClosed)
	case <-refused:
		forget()
		d.mu.Lock()
		err := d.refusal
		d.mu.Unlock()
		return nil, fmt.Errorf("waiting for the reply to command %s (it may still be applied): %w", env.CommandID, err)
	}
}

// waiter is a Dispatch call waiting for its reply.
type waiter struct {
	ch        chan *Reply
	commandID string
}

// forget stops waiting for the reply keyed key. d.mu must be held.
func (d *Dispatcher) forget(key string) {
	w, ok := d.waiting[key]
	if !ok {
		return
	}
	delete(d.waiting, key)
	if d.byCommand[w.commandID] == key {
		delete(d.byCommand, w.commandID)
	}
}

// Send writes cmd with its metadata headers to its commands topic and
// returns once Kafka has it durably (acks from all in-sync replicas). No
// reply is produced for it.
func (d *Dispatcher) Send(ctx context.Context, cmd any, env aggregate.Command, md map[string]string) error {
	if err := d.enter(); err != nil {
		return err
	}
	defer d.inflight.Done()
	return d.produce(ctx, cmd, env, md, -1, "")
}

func (d *Dispatcher) enter() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.inflight.Add(1)
	return nil
}

func (d *Dispatcher) produce(ctx context.Context, cmd any, env aggregate.Command, md map[string]string, replyTo int32, replyKey string) error {
	route, msg, ok := d.Lookup(reflect.TypeOf(cmd))
	if !ok {
		return fmt.Errorf("%w %T: register the aggregate that handles it", ErrUnknownCommand, cmd)
	}
	var deadline time.Time
	if replyTo >= 0 {
		deadline, _ = ctx.Deadline() // the caller stops waiting then
	}
	rec, err := CommandRecord(route, msg, cmd, env, md, replyTo, deadline)
	if err != nil {
		return err
	}
	if replyKey != "" {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderReplyKey, Value: []byte(replyKey)})
	}
	if err := d.producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("sending command %s to %s: %w", msg.Name, rec.Topic, err)
	}
	return nil
}

// CommandRecord returns the record of command cmd (of type msg, handled by
// route's aggregate) with envelope env and metadata md: replyTo is the
// replies partition (-1: no reply), deadline when the caller stops waiting
// (zero: never).
func CommandRecord(route *Route, msg *Message, cmd any, env aggregate.Command, md map[string]string, replyTo int32, deadline time.Time) (*kgo.Record, error) {
	value, err := msg.Serde.Encode(cmd)
	if err != nil {
		return nil, fmt.Errorf("encoding command %s: %w", msg.Name, err)
	}
	rec := &kgo.Record{
		Topic:   route.CommandsTopic,
		Key:     []byte(env.AggregateID.String()),
		Value:   value,
		Headers: commandHeaders(msg.Name, route.Type.Name(), route.Codec, env, replyTo, time.Now(), deadline),
	}
	if rec.Headers, err = AppendMetadata(rec.Headers, md); err != nil {
		return nil, fmt.Errorf("command %s: %w", msg.Name, err)
	}
	return rec, nil
}

// Close stops accepting commands, waits (until ctx ends) for the calls in
// flight to get their replies, and disconnects.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	already := d.closed
	d.closed = true
	d.mu.Unlock()
	if already {
		return nil
	}
	drained := make(chan struct{})
	go func() { d.inflight.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = fmt.Errorf("dispatcher: closing with calls in flight: %w", ctx.Err())
	}
	close(d.quit)
	d.replies.Close()
	<-d.done
	d.producer.Close()
	return err
}
