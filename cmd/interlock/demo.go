package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
)

// demo runs the seed's bank example end to end and prints every outcome.
func demo(ctx context.Context, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	brokers := fs.String("brokers", "", "comma-separated Kafka seed brokers (default: an embedded Kafka)")
	burst := fs.Int("burst", 50, "concurrent deposits to one account")
	verbose := fs.Bool("v", false, "log what Interlock does")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	name := "demo-" + strings.ToLower(ulid.Make().String()[16:]) // fresh topics each run
	opts := []interlock.Option{
		interlock.WithName(name),
		interlock.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))),
	}
	where := "an embedded Kafka (kfake, in memory)"
	if *brokers != "" {
		opts = append(opts, interlock.WithBrokers(strings.Split(*brokers, ",")...))
		where = "Kafka at " + *brokers
	}
	app, err := interlock.NewBuilder(opts...).RegisterAggregate(bank.Accounts()).Build()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Interlock demo: bank accounts on %s\n\n", where)
	started := time.Now()
	if err := app.Start(ctx); err != nil {
		return err
	}
	defer app.Close(context.WithoutCancel(ctx))
	fmt.Fprintf(out, "started in %v (topics ready)\n\n", time.Since(started).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	alice, bob := interlock.NewID(), interlock.NewID()
	step := func(what string, run func() (interlock.Result[bank.Balance], error)) (interlock.Result[bank.Balance], error) {
		t := time.Now()
		res, err := run()
		took := time.Since(t).Round(100 * time.Microsecond)
		switch {
		case err == nil:
			fmt.Fprintf(out, "  ok        %-38s balance %-5d version %d  (%v)\n", what, res.Value.Balance, res.Version, took)
		case errors.Is(err, interlock.ErrRejected):
			fmt.Fprintf(out, "  rejected  %-38s %v\n", what, err)
		default:
			fmt.Fprintf(out, "  FAILED    %-38s %v\n", what, err)
		}
		return res, err
	}
	openAccount := func(id ulid.ULID, owner string) error {
		_, err := step("open account for "+owner, func() (interlock.Result[bank.Balance], error) {
			r, err := interlock.Dispatch(ctx, app, bank.OpenAccount{Command: interlock.To(id), Owner: owner})
			return interlock.Result[bank.Balance]{Version: r.Version}, err
		})
		return err
	}
	deposit := func(id ulid.ULID, amount int64) bank.DepositMoney {
		return bank.DepositMoney{CommandOf: interlock.CommandOf[bank.Balance]{AggregateID: id}, Amount: amount}
	}
	withdraw := func(id ulid.ULID, amount int64) bank.WithdrawMoney {
		return bank.WithdrawMoney{CommandOf: interlock.CommandOf[bank.Balance]{AggregateID: id}, Amount: amount}
	}

	fmt.Fprintln(out, "Commands, one at a time:")
	if err := openAccount(alice, "alice"); err != nil {
		return err
	}
	if err := openAccount(bob, "bob"); err != nil {
		return err
	}
	if _, err := step("deposit 100 to alice", func() (interlock.Result[bank.Balance], error) {
		return interlock.Dispatch(ctx, app, deposit(alice, 100))
	}); err != nil {
		return err
	}
	if _, err := step("withdraw 30 from alice", func() (interlock.Result[bank.Balance], error) {
		return interlock.Dispatch(ctx, app, withdraw(alice, 30))
	}); err != nil {
		return err
	}
	if _, err := step("withdraw 500 from alice", func() (interlock.Result[bank.Balance], error) {
		return interlock.Dispatch(ctx, app, withdraw(alice, 500))
	}); !errors.Is(err, interlock.ErrRejected) {
		return fmt.Errorf("withdrawing 500 from 70 should be rejected, got %v", err)
	}
	final, err := step("deposit 25 to alice", func() (interlock.Result[bank.Balance], error) {
		return interlock.Dispatch(ctx, app, deposit(alice, 25))
	})
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "\nA burst: %d concurrent deposits of 1 to bob\n", *burst)
	t := time.Now()
	var wg sync.WaitGroup
	results := make([]interlock.Result[bank.Balance], *burst)
	errs := make([]error, *burst)
	for i := range *burst {
		wg.Go(func() { results[i], errs[i] = interlock.Dispatch(ctx, app, deposit(bob, 1)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("burst: %w", err)
	}
	versions := make([]int64, 0, *burst)
	bobBalance := int64(0)
	for _, r := range results {
		versions = append(versions, r.Version)
		bobBalance = max(bobBalance, r.Value.Balance)
	}
	slices.Sort(versions)
	for i, v := range versions {
		if v != int64(i)+2 {
			return fmt.Errorf("burst: versions are not contiguous: %v", versions)
		}
	}
	elapsed := time.Since(t)
	fmt.Fprintf(out, "  ok        %d applied in %v, versions 2..%d, each exactly once\n", *burst, elapsed.Round(time.Millisecond), versions[len(versions)-1])

	fmt.Fprintf(out, "\nFinal balances:\n  alice  %d\n  bob    %d\n", final.Value.Balance, bobBalance)
	if final.Value.Balance != 95 || bobBalance != int64(*burst) {
		return fmt.Errorf("unexpected final balances: alice %d (want 95), bob %d (want %d)", final.Value.Balance, bobBalance, *burst)
	}
	if *brokers != "" {
		// The embedded Kafka's log ends with the process; a real one keeps it.
		fmt.Fprintf(out, "\nThe events stay in application %s's topics. Alice's, and her account folded from them:\n", name)
		fmt.Fprintf(out, "  interlock events tail --brokers %s --name %s --aggregate bank-account --id %s\n", *brokers, name, alice)
		fmt.Fprintf(out, "  interlock aggregate show --brokers %s --name %s bank-account %s\n", *brokers, name, alice)
	}
	return nil
}
