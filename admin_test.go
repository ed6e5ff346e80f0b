package interlock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/producer"
)

// TestReadEventsAndLoadAggregate: an application that is built but not
// started reads the log of a running one: its events decoded with their
// envelopes, an undecodable record passed with its error, and an
// aggregate folded from its partition.
func TestReadEventsAndLoadAggregate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	app := startApp(t, brokers, name)
	id, broken := interlock.NewID(), interlock.NewID()
	if _, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"}); err != nil {
		t.Fatal(err)
	}
	res, err := interlock.Dispatch(ctx, app, bank.DepositMoney{CommandOf: interlock.ToResult[bank.Balance](id), Amount: 40})
	if err != nil {
		t.Fatal(err)
	}
	// A record no codec reads, for another aggregate.
	kafkatest.Produce(t, brokers, &kgo.Record{Topic: name + ".bank-account.events", Key: []byte(broken.String()), Value: []byte("garbage"),
		Headers: []kgo.RecordHeader{{Key: producer.HeaderType, Value: []byte("MoneyDeposited")}, {Key: producer.HeaderVersion, Value: []byte("1")}, {Key: "tenant", Value: []byte("t1")}}})

	reader, err := interlock.NewBuilder(interlock.WithBrokers(brokers...), interlock.WithName(name), interlock.WithLogger(testLogger())).
		RegisterAggregate(bank.Accounts()).Build()
	if err != nil {
		t.Fatal(err)
	}
	var evs []interlock.StoredEvent
	if err := reader.ReadEvents(ctx, interlock.EventQuery{}, func(e interlock.StoredEvent) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	var mine []interlock.StoredEvent
	var bad *interlock.StoredEvent
	for i, e := range evs {
		switch e.AggregateID {
		case id:
			mine = append(mine, e)
		case broken:
			bad = &evs[i]
		}
	}
	if len(mine) != 2 || mine[0].Data != (bank.AccountOpened{Owner: "ada"}) || mine[1].Data != (bank.MoneyDeposited{Amount: 40}) ||
		mine[1].Version != 2 || mine[1].AggregateType != "bank-account" || mine[1].Position != res.Positions[0] || mine[1].Time.IsZero() {
		t.Errorf("the aggregate's events: %+v", mine)
	}
	if bad == nil || bad.Err == nil || bad.Data != nil || bad.Type != "MoneyDeposited" || bad.Metadata["tenant"] != "t1" {
		t.Errorf("the undecodable record: %+v", bad)
	}

	inst, err := reader.LoadAggregate(ctx, "bank-account", id)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Version != 2 || *inst.State.(*bank.Account) != (bank.Account{Owner: "ada", Balance: 40, Open: true}) {
		t.Errorf("folded: version %d, state %+v", inst.Version, inst.State)
	}
	if _, err := reader.LoadAggregate(ctx, "bank-account", broken); err == nil || !strings.Contains(err.Error(), "event MoneyDeposited at "+name+".bank-account.events") {
		t.Errorf("folding an undecodable event: %v", err)
	}
	if _, err := reader.LoadAggregate(ctx, "bank-account", interlock.NewID()); !errors.Is(err, interlock.ErrNoEvents) {
		t.Errorf("an aggregate with no events: %v", err)
	}
	if err := reader.ReadEvents(ctx, interlock.EventQuery{ID: id}, func(interlock.StoredEvent) error { return nil }); err == nil {
		t.Error("reading one aggregate without its type")
	}
	stop := errors.New("enough")
	if err := reader.ReadEvents(ctx, interlock.EventQuery{}, func(interlock.StoredEvent) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn's error: %v", err)
	}

	// Without brokers there is nothing to read.
	embedded, err := interlock.NewBuilder(interlock.WithLogger(testLogger())).RegisterAggregate(bank.Accounts()).Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.DescribeTopics(ctx); !errors.Is(err, interlock.ErrNoBrokers) {
		t.Errorf("DescribeTopics without brokers: %v", err)
	}
	if _, err := embedded.LoadAggregate(ctx, "bank-account", id); !errors.Is(err, interlock.ErrNoBrokers) {
		t.Errorf("LoadAggregate without brokers: %v", err)
	}
}
