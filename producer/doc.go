// Package producer writes Interlock's records to Kafka: commands (sent and
// awaited through a reply, or fire-and-forget), the events and replies a
// processor writes inside its transaction, and the record headers that carry
// every message's envelope.
//
// It knows message types only through a Route: the Go type, the name written
// in headers, and the Serde that encodes it. The root package builds routes
// from the registered aggregates.
package producer
