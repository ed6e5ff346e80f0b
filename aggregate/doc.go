// Package aggregate is Interlock's domain model API: aggregates, the commands
// they handle and the events they emit, registered with typed Go functions.
//
// A handler is a function whose signature names the aggregate state and the
// command it takes; an applier is a function that folds one event type into
// the state:
//
//	func deposit(a *aggregate.Root[Account], c DepositMoney) error {
//		if c.Amount <= 0 {
//			return errors.New("amount must be positive") // a rejection
//		}
//		a.Emit(MoneyDeposited{Amount: c.Amount})
//		return nil
//	}
//
//	func deposited(s *Account, e MoneyDeposited) { s.Balance += e.Amount }
//
//	accounts := aggregate.Define[Account]("account",
//		aggregate.Handle(deposit),
//		aggregate.Apply(deposited),
//	)
//
// Nothing here knows about Kafka: the runtime (package consumer) drives a
// Definition through its non-generic [Type] view, and the scenario helpers in
// package aggregatetest drive it with no infrastructure at all.
package aggregate
