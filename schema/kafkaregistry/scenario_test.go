package kafkaregistry

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/schema"
)

// The types of the first deployment. Each function's local types are
// named as the event types were then, so their records are app.<Name>.

func v1Types() (opened, deposited reflect.Type) {
	type AccountOpened struct {
		Owner  string `avro:"owner"`
		Branch string `avro:"branch"` // removed in v2
	}
	type MoneyDeposited struct {
		Amount int32 `avro:"amount"` // whole euros; renamed FundsDeposited, in cents, in v2
	}
	return reflect.TypeFor[AccountOpened](), reflect.TypeFor[MoneyDeposited]()
}

func v3Type() reflect.Type {
	type AccountOpened struct {
		Owner string  `avro:"owner"`
		Memo  *string `avro:"memo"`
		Tier  int32   `avro:"tier"`
	}
	return reflect.TypeFor[AccountOpened]()
}

// The second deployment's current types, and the old type it keeps to
// read MoneyDeposited events.
type (
	AccountOpened struct {
		Owner string  `avro:"owner"`
		Memo  *string `avro:"memo"` // added, default null
	}
	FundsDeposited struct {
		Cents int64 `avro:"cents"`
	}
	legacyMoneyDeposited struct {
		Amount int64 `avro:"amount"` // was an int: promoted
	}
)

func (legacyMoneyDeposited) AvroSchema() string {
	return `{"type":"record","name":"app.MoneyDeposited","fields":[{"name":"amount","type":"long"}]}`
}

type account struct {
	Owner string
	Cents int64
}

// TestEvolutionAcrossRestart is the schema layer's part of issue 7's
// scenario: the first deployment writes events; the second, started on the
// same registry topic, registers its changed types (a field added with a
// default, a field removed, an event type renamed with an upcaster),
// refuses an incompatible change, and rebuilds the state from the old
// events.
func TestEvolutionAcrossRestart(t *testing.T) {
	ctx := context.Background()
	brokers := kafkatest.Brokers(t)
	regTopic, events := kafkatest.Name(t), kafkatest.Name(t)+".account.events"

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, events); err != nil {
		t.Fatal(err)
	}

	// Deployment 1.
	reg1 := open(t, brokers, regTopic)
	codec1 := schema.Avro(schema.AvroNamespace("app"), schema.AvroRegistry(reg1))
	opened1, deposited1 := v1Types()
	write := func(typ reflect.Type, set func(v reflect.Value)) *kgo.Record {
		s, err := codec1.For(typ)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := schema.Register(ctx, s, events); err != nil {
			t.Fatal(err)
		}
		v := reflect.New(typ).Elem()
		set(v)
		b, err := s.Encode(v.Interface())
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: events, Key: []byte("acc-1"), Value: b, Headers: []kgo.RecordHeader{{Key: "interlock-type", Value: []byte(typ.Name())}}}
	}
	kafkatest.Produce(t, brokers,
		write(opened1, func(v reflect.Value) { v.Field(0).SetString("ann"); v.Field(1).SetString("north") }),
		write(deposited1, func(v reflect.Value) { v.Field(0).SetInt(100) }),
		write(deposited1, func(v reflect.Value) { v.Field(0).SetInt(-30) }),
	)
	reg1.Close()

	// Deployment 2, after a restart.
	reg2 := open(t, brokers, regTopic)
	codec2 := schema.Avro(schema.AvroNamespace("app"), schema.AvroRegistry(reg2))
	current := map[string]schema.Serde{}
	for _, typ := range []reflect.Type{reflect.TypeFor[AccountOpened](), reflect.TypeFor[FundsDeposited]()} {
		s, err := codec2.For(typ)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := schema.Register(ctx, s, events); err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		current[typ.Name()] = s
	}
	ups, err := schema.NewUpcasters(codec2, schema.Upcast(func(e legacyMoneyDeposited) (FundsDeposited, error) {
		return FundsDeposited{Cents: e.Amount * 100}, nil
	}).RecordedAs("MoneyDeposited"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ups.Target(reflect.TypeFor[legacyMoneyDeposited]()); current[got.Name()] == nil {
		t.Fatalf("the upcasters end at %v, not a current type", got)
	}

	// A third version adding a field without a default is refused.
	v3, err := schema.Avro(schema.AvroNamespace("app"), schema.AvroRegistry(reg2)).For(v3Type())
	if err != nil {
		t.Fatal(err)
	}
	err = schema.Check(ctx, v3, events)
	var ie *schema.IncompatibleError
	if !errors.As(err, &ie) || !strings.HasSuffix(ie.Path, ".tier") || !strings.Contains(ie.Rule, "without a default") {
		t.Fatalf("v3: err = %v, want the field tier refused", err)
	}

	// Rebuild the state from the log, as a restore does.
	var acc account
	recs := kafkatest.ReadAll(t, brokers, events)
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	for _, r := range recs {
		name := string(r.Headers[0].Value)
		ptr, err := ups.Decode(name, r.Value, current[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		switch e := ptr.(type) {
		case *AccountOpened:
			if e.Memo != nil {
				t.Errorf("memo %q, want the default null", *e.Memo)
			}
			acc.Owner = e.Owner
		case *FundsDeposited:
			acc.Cents += e.Cents
		default:
			t.Fatalf("%s decoded as %T", name, ptr)
		}
	}
	if acc != (account{Owner: "ann", Cents: 7000}) {
		t.Errorf("state %+v, want ann with 7000 cents", acc)
	}
}
