package aggregatetest_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/aggregatetest"
)

// Stock is an aggregate: the items in one warehouse bin.
type Stock struct {
	Items int64
}

// Receive puts items in the bin.
type Receive struct {
	aggregate.Command
	Qty int64
}

// Ship takes items out; its handler returns what is left.
type Ship struct {
	aggregate.CommandOf[Remaining]
	Qty int64
}

// Remaining is Ship's result.
type Remaining struct {
	Items int64
}

// Received and Shipped are the events.
type (
	Received struct{ Qty int64 }
	Shipped  struct{ Qty int64 }
)

func stock() *aggregate.Definition[Stock] {
	return aggregate.Define[Stock]("stock",
		aggregate.Handle(func(a *aggregate.Root[Stock], c Receive) error {
			if c.Qty <= 0 {
				return errors.New("quantity must be positive")
			}
			a.Emit(Received{Qty: c.Qty})
			return nil
		}),
		aggregate.HandleResult(func(a *aggregate.Root[Stock], c Ship) (Remaining, error) {
			if c.Qty > a.State().Items {
				return Remaining{}, fmt.Errorf("out of stock: %d left", a.State().Items)
			}
			a.Emit(Shipped{Qty: c.Qty})
			return Remaining{Items: a.State().Items}, nil
		}),
		aggregate.Apply(func(s *Stock, e Received) { s.Items += e.Qty }),
		aggregate.Apply(func(s *Stock, e Shipped) { s.Items -= e.Qty }),
	)
}

// printTB stands in for the *testing.T of a real test, so that this example
// can show what a failure looks like.
type printTB struct{ testing.TB }

func (printTB) Helper() {}

func (printTB) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func Example() {
	var t testing.TB = printTB{} // in a real test: func TestShip(t *testing.T)

	s := aggregatetest.For(t, stock())

	s.Given(Received{Qty: 10}).
		When(Ship{Qty: 3}).
		ThenEvents(Shipped{Qty: 3}).
		ThenResult(Remaining{Items: 7}).
		ThenVersion(2)

	s.Given(Received{Qty: 2}).
		When(Ship{Qty: 3}).
		ThenRejected("out of stock").
		ThenState(Stock{Items: 2}) // a rejected command changes nothing

	// A wrong expectation says what was expected and what happened.
	s.Given(Received{Qty: 10}).
		When(Ship{Qty: 3}).
		ThenEvents(Shipped{Qty: 4})

	// Output:
	// When(aggregatetest_test.Ship): events differ
	//   want: [aggregatetest_test.Shipped{Qty:4}]
	//   got:  [aggregatetest_test.Shipped{Qty:3}]
	//   first difference: event 0: want aggregatetest_test.Shipped{Qty:4}, got aggregatetest_test.Shipped{Qty:3}
}
