package bank

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/projections"
)

// Export returns a projection named name that writes each account's
// opening and deposits as JSON records of topic, keyed by account, exactly
// once (the Kafka sink): a feed for a downstream pipeline, and the
// Kafka-to-Kafka projector of interlock bench.
func Export(name, topic string) *projections.Projection[*projections.Output] {
	p := projections.New(name, projections.Kafka())
	projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[MoneyDeposited]) error {
		out.Produce(&kgo.Record{Topic: topic, Key: []byte(e.AggregateID.String()), Value: fmt.Appendf(nil, `{"amount":%d}`, e.Data.Amount)})
		return nil
	})
	projections.On(p, func(ctx context.Context, out *projections.Output, e projections.Event[AccountOpened]) error {
		out.Produce(&kgo.Record{Topic: topic, Key: []byte(e.AggregateID.String()), Value: []byte(`{"opened":true}`)})
		return nil
	})
	return p
}
