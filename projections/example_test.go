package projections_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/projections"
)

// OwnerOf asks who owns an account; the projection below answers it.
type OwnerOf struct {
	projections.QueryOf[string]
	ID ulid.ULID
}

// A read model in memory, answering a query. Effects is an at-least-once
// sink, so the handler is idempotent: applying an event twice writes the
// same thing. Ask with After waits until the projection has applied the
// command's events, so the caller reads its own write.
func Example() {
	var mu sync.Mutex
	owners := map[ulid.ULID]string{}

	accountOwners := projections.New("account-owners", projections.Effects())
	projections.On(accountOwners, func(ctx context.Context, _ *struct{}, e projections.Event[bank.AccountOpened]) error {
		mu.Lock()
		defer mu.Unlock()
		owners[e.AggregateID] = e.Data.Owner
		return nil
	})
	projections.Answer(accountOwners, func(ctx context.Context, q OwnerOf) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return owners[q.ID], nil
	})

	app, err := interlock.NewBuilder(interlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))).
		RegisterAggregate(bank.Accounts()).
		RegisterProjection(accountOwners).
		Build()
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer app.Close(ctx)

	id := interlock.NewID()
	res, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: "ada"})
	if err != nil {
		panic(err)
	}
	owner, err := interlock.Ask(ctx, app, OwnerOf{QueryOf: interlock.After[string](res.Positions), ID: id})
	fmt.Println(owner, err)
	// Output: ada <nil>
}

// A handler that calls another service marks the failures that are not
// the event's fault as Transient: the batch is tried again until the
// service answers, and the event is never parked in the dead-letter
// topic. Any other error counts against the event.
func ExampleTransient() {
	notify := func(ctx context.Context, owner string) error { return nil } // a mail service, say
	welcome := projections.New("welcome-mails", projections.Effects())
	projections.On(welcome, func(ctx context.Context, _ *struct{}, e projections.Event[bank.AccountOpened]) error {
		if e.Data.Owner == "" {
			return fmt.Errorf("account %s has no owner", e.AggregateID) // the event's fault: parked after the retries
		}
		if err := notify(ctx, e.Data.Owner); err != nil {
			return projections.Transient(fmt.Errorf("mail service: %w", err))
		}
		return nil
	})
	fmt.Println(welcome.Name())
	// Output: welcome-mails
}
