package interlock_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock"
)

// crash lets a test kill an instance in-process the way SIGKILL kills a
// process, as Kafka and PostgreSQL see it: Kill closes every connection
// the instance opened through it, in the middle of whatever request or
// transaction was under way, and refuses it new ones, so its group
// membership expires and its open database transaction is rolled back.
// Its goroutines go on, cut off, until Revive lets it reach the services
// again (to close it: a killed process leaves nothing to close).
type crash struct {
	name  string // the application_name of its PostgreSQL connections
	mu    sync.Mutex
	dead  bool
	conns []net.Conn
}

var errCrashed = errors.New("test: the instance was killed")

func newCrash() *crash { return &crash{name: "inst-" + ulid.Make().String()} }

func (c *crash) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	dead := c.dead
	c.mu.Unlock()
	if dead {
		return nil, errCrashed
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		conn.Close()
		return nil, errCrashed
	}
	c.conns = append(c.conns, conn)
	return conn, nil
}

// kafka is the option that makes the instance's Kafka clients dial
// through c.
func (c *crash) kafka() interlock.Option { return interlock.WithClientOptions(kgo.Dialer(c.dial)) }

// pool returns a pool like base (same database and schema) whose
// connections go through c and are named c.name in pg_stat_activity.
func (c *crash) pool(t *testing.T, base *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	cfg := base.Config()
	cfg.ConnConfig.DialFunc = c.dial
	cfg.ConnConfig.RuntimeParams["application_name"] = c.name
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Kill closes every connection and refuses new ones.
func (c *crash) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = true
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// Revive lets the instance dial again.
func (c *crash) Revive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = false
}

// inTransaction returns, of cs, the first whose instance has a database
// transaction open that has written (a batch of a projection under way),
// waiting up to wait; nil when none had.
func inTransaction(t *testing.T, admin *pgxpool.Pool, cs []*crash, wait time.Duration) *crash {
	t.Helper()
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.name
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		var name string
		err := admin.QueryRow(context.Background(), `SELECT application_name FROM pg_stat_activity
WHERE application_name = ANY($1) AND backend_xid IS NOT NULL LIMIT 1`, names).Scan(&name)
		if err == nil {
			for _, c := range cs {
				if c.name == name {
					return c
				}
			}
		}
	}
	return nil
}

// inKafkaTransaction waits up to wait until one of the transactional IDs
// txnIDs has a transaction open (a batch of a processor or a Kafka-sink
// projection under way), and returns it; "" when none had.
func inKafkaTransaction(t *testing.T, brokers []string, wait time.Duration, txnIDs ...string) string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		txns, err := adm.ListTransactions(context.Background(), nil, []string{"Ongoing"})
		if err != nil {
			continue
		}
		for _, id := range txnIDs {
			if _, ok := txns[id]; ok {
				return id
			}
		}
	}
	return ""
}
