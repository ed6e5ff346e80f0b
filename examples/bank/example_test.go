package bank_test

import (
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
	"github.com/interlock-go/interlock/examples/bank"
)

// Accounts driven by hand, the way the command processor drives it: each
// command runs on a clone of the account, kept only when the command
// succeeds.
func ExampleAccounts() {
	accounts := bank.Accounts()
	id := ulid.Make()
	acct := accounts.New(id)

	for _, cmd := range []any{
		bank.OpenAccount{Command: aggregate.To(id), Owner: "ada"},
		bank.DepositMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 100},
		bank.WithdrawMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 500},
		bank.WithdrawMoney{CommandOf: aggregate.ToResult[bank.Balance](id), Amount: 30},
	} {
		work := accounts.Clone(acct)
		out, err := accounts.Execute(work, cmd)
		if err != nil {
			fmt.Printf("%T: %v\n", cmd, err)
			continue
		}
		acct = work
		fmt.Printf("%T: %+v -> %+v\n", cmd, out.Events, out.Result)
	}
	fmt.Printf("version %d: %+v\n", acct.Version, *acct.State.(*bank.Account))
	// Output:
	// bank.OpenAccount: [{Owner:ada}] -> {}
	// bank.DepositMoney: [{Amount:100}] -> {Balance:100}
	// bank.WithdrawMoney: command rejected: insufficient funds: balance 100, withdrawal 500
	// bank.WithdrawMoney: [{Amount:30}] -> {Balance:70}
	// version 3: {Owner:ada Balance:70 Open:true}
}
