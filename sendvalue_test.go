package interlock_test

import (
	"testing"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/internal/kafkatest"
)

// TestSendValue: a command whose type is known only at run time is sent
// by value and applied, as Send applies it; a pointer or an unregistered
// type is refused and nothing is sent.
func TestSendValue(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	app := startApp(t, brokers, kafkatest.Name(t))
	ctx := ctxT(t)
	id := open(t, ctx, app)
	var cmd any = deposit(id, 5)
	cid, err := interlock.SendValue(ctx, app, cmd)
	if err != nil || cid.IsZero() {
		t.Fatalf("SendValue = %v, %v", cid, err)
	}
	// The deposit sent is applied before this one: its partition is in order.
	res, err := interlock.Dispatch(ctx, app, deposit(id, 1))
	if err != nil || res.Value.Balance != 6 {
		t.Fatalf("after SendValue of 5, a deposit of 1: %+v, %v; want balance 6", res, err)
	}
	d := deposit(id, 1)
	for _, bad := range []any{&d, struct{ X int }{1}} {
		if _, err := interlock.SendValue(ctx, app, bad); err == nil {
			t.Errorf("SendValue(%T) sent it", bad)
		}
	}
	res, err = interlock.Dispatch(ctx, app, deposit(id, 1))
	if err != nil || res.Value.Balance != 7 {
		t.Errorf("after the refused sends, a deposit of 1: %+v, %v; want balance 7", res, err)
	}
}
