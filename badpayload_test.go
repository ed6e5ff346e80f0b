package interlock_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema"
)

// manglingCodec is the Avro codec, except that what it encodes for
// DepositMoney goes through mangle when one is set: a dispatcher writing
// bad payloads, as a foreign producer could.
type manglingCodec struct {
	schema.Codec
	mangle *atomic.Pointer[func([]byte) []byte]
}

func (c manglingCodec) For(t reflect.Type) (schema.Serde, error) {
	s, err := c.Codec.For(t)
	if err != nil || t != reflect.TypeFor[bank.DepositMoney]() {
		return s, err
	}
	return manglingSerde{s, c.mangle}, nil
}

type manglingSerde struct {
	schema.Serde
	mangle *atomic.Pointer[func([]byte) []byte]
}

func (s manglingSerde) Encode(v any) ([]byte, error) {
	b, err := s.Serde.Encode(v)
	if f := s.mangle.Load(); f != nil && err == nil {
		b = (*f)(b)
	}
	return b, err
}

// TestBadPayloads (issue 7): garbage bytes, an unknown schema ID and a
// truncated body, each in a command a processor reads from Kafka, are
// rejected with a reply that says what is wrong with the payload; nothing
// panics, no event is written, and the partition goes on. The same bad
// payloads in events, met by the next owner's restore, fail only their
// own aggregates' commands, with the same words.
func TestBadPayloads(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name)
	var mangle atomic.Pointer[func([]byte) []byte]
	stranger := startApp(t, brokers, name, interlock.WithRoles(interlock.RoleDispatch),
		interlock.WithCodec(manglingCodec{schema.Avro(), &mangle}))
	id := open(t, ctx, app)

	tests := []struct {
		name   string
		mangle func([]byte) []byte
		want   string
	}{
		{"garbage", func([]byte) []byte { return []byte("garbage!") }, "magic byte is 0x67"},
		{"unknown schema ID", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[1:5], 0x7f000001)
			return b
		}, "unknown schema ID 2130706433"},
		{"truncated body", func(b []byte) []byte { return b[:len(b)-1] }, "truncated body"},
	}
	for _, tc := range tests {
		mangle.Store(&tc.mangle)
		_, err := interlock.Dispatch(ctx, stranger, deposit(id, 1<<40))
		if !errors.Is(err, interlock.ErrRejected) || !strings.Contains(err.Error(), "DepositMoney") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want a rejection naming DepositMoney and %q", tc.name, err, tc.want)
		}
	}
	mangle.Store(nil)
	res, err := interlock.Dispatch(ctx, stranger, deposit(id, 7))
	if err != nil || res.Value.Balance != 7 || res.Version != 2 {
		t.Fatalf("after the bad payloads: %+v, %v; want balance 7 at version 2", res, err)
	}
	events := name + ".bank-account.events"
	if n := len(eventsOf(t, brokers, events, id)); n != 2 {
		t.Fatalf("%d events, want 2: bad payloads write nothing", n)
	}

	// Events: each case's aggregate gets a second event with a bad payload.
	serde, err := schema.Avro().For(reflect.TypeFor[bank.MoneyDeposited]())
	if err != nil {
		t.Fatal(err)
	}
	valid, err := serde.Encode(bank.MoneyDeposited{Amount: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	broken := make([]ulid.ULID, len(tests))
	for i, tc := range tests {
		broken[i] = interlock.NewID()
		res, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(broken[i]), Owner: "bo"})
		if err != nil {
			t.Fatal(err)
		}
		rec := producer.EventRecord(events, res.Positions[0].Partition, "avro", aggregate.EventEnvelope{
			EventID: ulid.Make(), AggregateType: "bank-account", AggregateID: broken[i], Type: "MoneyDeposited",
			Version: 2, Time: time.Now(), CommandID: ulid.Make(), CorrelationID: "c",
		}, tc.mangle(append([]byte(nil), valid...)))
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Close(ctx); err != nil {
		t.Fatal(err)
	}
	startApp(t, brokers, name, interlock.WithRoles(interlock.RoleProcess))
	for i, tc := range tests {
		_, err := interlock.Dispatch(ctx, stranger, deposit(broken[i], 1))
		if !errors.Is(err, interlock.ErrFailed) || !strings.Contains(err.Error(), "cannot be rebuilt") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s event: err = %v, want a failure naming %q", tc.name, err, tc.want)
		}
	}
	res, err = interlock.Dispatch(ctx, stranger, deposit(id, 1))
	if err != nil || res.Value.Balance != 8 || res.Version != 3 {
		t.Fatalf("after the restore met the bad events: %+v, %v; want balance 8 at version 3", res, err)
	}
}
