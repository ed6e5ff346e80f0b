// Package interlock is CQRS and event sourcing on Kafka: the application
// builder, its start/stop lifecycle, and Dispatch and Send.
//
// A team writes its domain with package aggregate (plain Go functions,
// typed with generics), registers it on a Builder, and Interlock runs it on
// any Kafka cluster:
//
//	app, err := interlock.NewBuilder(interlock.WithBrokers("kafka:9092")).
//		RegisterAggregate(accounts).
//		Build()
//	if err != nil { ... }
//	if err := app.Start(ctx); err != nil { ... }
//	defer app.Close(context.Background())
//	res, err := interlock.Dispatch(ctx, app, DepositMoney{Command: interlock.To(id), Amount: 100})
//
// Commands go to a commands topic per aggregate type, keyed by aggregate ID.
// The one owner of each partition handles them and writes their events,
// replies and offsets in one Kafka transaction, so a command's events are
// committed exactly once. With no brokers configured the application runs an
// embedded Kafka in-process, for development, demos and tests.
//
// See DESIGN.md in the repository for the architecture and its invariants.
package interlock
