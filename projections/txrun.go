package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/interlock-go/interlock/internal/acl"
	"github.com/interlock-go/interlock/producer"
)

// txState is what a Kafka projection remembers across polls about the
// records that failed: a transaction that fails is aborted, and the
// session returns its records on the next poll.
type txState struct {
	failures map[producer.Position]int
	// poison are records to park (DeadLetter) or to stop at (Stop).
	poison map[producer.Position]error
}

// newSession joins the projection's group with a transactional session.
func (pr *Projector) newSession(opts []kgo.Opt) (*kgo.GroupTransactSession, error) {
	return kgo.NewGroupTransactSession(opts...)
}

// runTx is the loop of a projection on the Kafka sink.
func runTx(ctx context.Context, p *Projection[*Output], pr *Projector, opts []kgo.Opt, bindings map[string]map[string]binding[*Output]) {
	defer close(pr.done)
	st := &txState{failures: map[producer.Position]int{}, poison: map[producer.Position]error{}}
	defer func() { pr.sess.Close() }()
	wait := p.set.backoff
	var lastFenced time.Time
	// renew replaces a session whose last transaction ended in an unknown
	// state: the new producer ID fences what the old one left open, and
	// consumption resumes from the committed offsets.
	renew := func(cause error) bool {
		pr.log.Error("interlock: projection transaction failed; starting a new session", "err", cause)
		pr.sess.CloseAllowingRebalance()
		for {
			sess, err := pr.newSession(opts)
			if err == nil {
				pr.sess = sess
				return true
			}
			pr.log.Error("interlock: starting a new transactional session", "err", err)
			if !sleep(ctx, wait) {
				pr.sess = sess
				return false
			}
		}
	}
	for {
		// At least once a second, so retry requests are served.
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := pr.sess.PollRecords(pctx, p.set.maxBatch)
		cancel()
		if fs.IsClientClosed() || ctx.Err() != nil {
			pr.sess.AllowRebalance()
			return
		}
		pr.followed(ctx)
		if err := pr.fetchErrors(fs); err != nil {
			pr.sess.AllowRebalance()
			return
		}
		committed := true
		if recs := fs.Records(); len(recs) > 0 {
			pr.polled(recs)
			var stop, err error
			committed, stop, err = p.txBatch(ctx, pr, pr.sess, st, bindings, recs)
			switch {
			case acl.Denied(err) || acl.Denied(stop):
				pr.denied(errors.Join(acl.TransactionalID(pr.cfg.TransactionalID, err), stop))
				pr.sess.AllowRebalance()
				return
			case stop != nil:
				pr.log.Error("interlock: projection stopped", "err", stop)
				pr.stop(stop)
				pr.sess.AllowRebalance()
				return
			case err != nil && fenced(err) && time.Since(lastFenced) < time.Minute:
				// Fenced again at once: another instance runs with this
				// transactional ID.
				pr.log.Error("interlock: projection stopped: another instance with its transactional ID took over", "err", err)
				pr.stop(err)
				pr.sess.AllowRebalance()
				return
			case err != nil && fenced(err):
				// Once may be a transaction that outlived its timeout
				// (some brokers answer that as fenced): a new session.
				lastFenced = time.Now()
				if !renew(err) {
					return
				}
				continue
			case err != nil:
				if !renew(err) {
					return
				}
				continue
			}
		}
		// Still holding the rebalance, every polled offset committed or
		// rewound: a retry's transaction commits nothing else.
		if committed && !p.serveRetries(ctx, pr, bindings) {
			if !renew(errSession) {
				return
			}
			continue
		}
		pr.sess.AllowRebalance()
		if !committed {
			if !sleep(ctx, wait) {
				return
			}
			wait = min(2*wait, 30*time.Second)
			continue
		}
		wait = p.set.backoff
	}
}

// txBatch handles recs in one transaction. It returns whether it
// committed; stop when the projection must stop (Stop policy), err when
// the session's state is unknown.
func (p *Projection[T]) txBatch(ctx context.Context, pr *Projector, sess *kgo.GroupTransactSession, st *txState, bindings map[string]map[string]binding[T], recs []*kgo.Record) (committed bool, stop, err error) {
	if err := sess.Begin(); err != nil {
		return false, nil, err
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pr.txBatchTimeout)
	defer cancel()
	out := &Output{ctx: tctx, sess: sess, routes: pr.cfg.Routes, name: pr.family}
	var failed error
	var upTo []*kgo.Record       // the records this transaction covers
	var parks []*kgo.Record      // its dead letters, indexed once it commits
	heldNow := map[string]bool{} // keys parked in this transaction
	type poisoned struct {
		r   *kgo.Record
		why error
	}
	var poisons []poisoned // told to the observers once committed
	park := func(r *kgo.Record, why error) {
		dl := pr.deadLetter(r, why)
		out.Produce(dl)
		parks = append(parks, dl)
		heldNow[string(r.Key)] = true
		upTo = append(upTo, r)
	}
	for _, r := range recs {
		pos := producer.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
		if why, ok := st.poison[pos]; ok {
			if p.set.policy == Stop {
				stop = fmt.Errorf("event %s at %s/%d@%d keeps failing: %w", header(r, producer.HeaderType), r.Topic, r.Partition, r.Offset, why)
				break
			}
			park(r, why)
			poisons = append(poisons, poisoned{r, why})
			continue
		}
		if heldNow[string(r.Key)] || pr.holds(r) {
			park(r, fmt.Errorf("held behind an earlier parked event of aggregate %s", r.Key))
			continue
		}
		if err := p.apply(tctx, pr, any(out).(T), bindings, r); err != nil {
			if isTransient(err) {
				pr.log.Warn("interlock: projection handler failed, not for its event's fault; retrying the batch until it succeeds", "err", err)
			} else {
				if st.failures[pos]++; st.failures[pos] > p.set.retries {
					st.poison[pos] = err
				}
				pr.log.Warn("interlock: projection handler failed; retrying the batch", append([]any{"attempt", st.failures[pos], "of", p.set.retries, "err", err}, stackAttr(err, st.failures[pos])...)...)
			}
			failed = err
			break
		}
		upTo = append(upTo, r)
	}
	if err := sess.Client().Flush(tctx); err != nil {
		failed = errors.Join(failed, err)
	}
	if err := out.err(); err != nil {
		failed = errors.Join(failed, err)
		pr.log.Error("interlock: projection output failed; aborting the batch", "err", err)
	}
	if stop == nil && acl.Denied(failed) {
		stop = failed // a refused write passes no retry: the projection stops
	}
	// A transaction commits the offsets of everything polled: with a
	// poison event to stop at, none of the batch commits.
	ok, err := sess.End(tctx, kgo.TransactionEndTry(failed == nil && stop == nil))
	if err != nil {
		return false, nil, err
	}
	if ok {
		for _, dl := range parks {
			pr.indexed(dl) // its offset is known once written
		}
		for _, p := range poisons {
			pr.observePark(p.r, p.why)
		}
		var cps []Checkpoint
		for _, r := range upTo {
			delete(st.failures, producer.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
			delete(st.poison, producer.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
			cps = append(cps, Checkpoint{Topic: r.Topic, Partition: r.Partition, Next: r.Offset + 1})
		}
		pr.progress(cps)
	}
	return ok, stop, nil
}

// fenced reports whether err means another instance took this
// projection's transactional ID. (INVALID_PRODUCER_EPOCH is not: the
// broker aborted a transaction that outlived its timeout, and a new
// session goes on.)
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
