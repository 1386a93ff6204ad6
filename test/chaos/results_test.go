package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestLateAndDuplicateResults sends every result again after its workflow
// completed or was compensated: republished the way the engine publishes
// (refused by the server), produced again by redelivering every command
// to freshly restarted participants (answered by the results already in
// the history: no handler runs, no effect), and as identical copies published without any
// fence, which land after the end of their histories. Nothing happens:
// no new decision, no new effect, and every history still replays to the
// same end.
func TestLateAndDuplicateResults(t *testing.T) {
	h := newHarness(t, seedFor(t, 41), serverOptions{})
	h.orchestrator("o1", nil)
	parts := h.participants()
	orders := h.publishAll(mix("late-", 50, false))
	if _, ok := h.waitSettled(ids(orders), settleBound); !ok {
		t.FailNow()
	}
	ctx := context.Background()
	effects := func() int {
		n := 0
		for _, sys := range reference.Names {
			list, err := sim.List(ctx, h.js, sys, "")
			if err != nil {
				t.Fatal(err)
			}
			n += len(list)
		}
		return n
	}
	type result struct {
		subject string
		value   *schema.Result
	}
	var results []result
	events := map[string]int{}
	for _, e := range orders {
		evs := h.history(e.Order.OrderID)
		events[e.Order.OrderID] = len(evs)
		for _, ev := range evs {
			if r, ok := ev.Value.(*schema.Result); ok {
				results = append(results, result{ev.Subject, r})
			}
		}
	}
	before := effects()

	// 1. Republished as the engine publishes a result: the server refuses.
	for _, r := range results {
		m, err := streams.NewMsg(r.subject, r.value)
		if err != nil {
			t.Fatal(err)
		}
		written, err := streams.PublishFirst(ctx, h.js, m)
		if err != nil || written {
			t.Errorf("%s: a second answer was written (%v, %v)", r.subject, written, err)
		}
	}
	h.fault("late duplicate results (engine publish)", "every result")

	// 2. Every command delivered again to restarted participants.
	for _, p := range parts {
		p.kill()
	}
	for _, svc := range reference.Names {
		if err := h.js.DeleteConsumer(ctx, streams.HistoryStream, streams.ParticipantConsumerPrefix+svc); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range parts {
		p.start()
	}
	h.fault("every command redelivered after the end", "all participants")
	h.eventually(60*time.Second, "the redelivered commands were not all answered", func() bool {
		for _, svc := range reference.Names {
			c, err := h.js.Consumer(ctx, streams.HistoryStream, streams.ParticipantConsumerPrefix+svc)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			if err != nil || info.NumPending != 0 || info.NumAckPending != 0 || info.Delivered.Consumer == 0 {
				return false
			}
		}
		return true
	})

	// 3. Identical copies published with no fence at all: the stream keeps
	// one message per subject and refuses them too.
	for _, r := range results {
		m, err := streams.NewMsg(r.subject, r.value)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.js.PublishMsg(ctx, m, jetstream.WithMsgID("raw-copy-"+r.subject)); err == nil {
			t.Errorf("%s: an unfenced copy was stored", r.subject)
		}
	}
	h.fault("late identical copies of every result (unfenced)", "every result")
	h.eventually(30*time.Second, "the orchestrator did not take the copies", func() bool {
		c, err := h.js.Consumer(ctx, streams.HistoryStream, streams.OrchestratorConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})

	h.settleAndCheck(orders, settleBound)
	if after := effects(); after != before {
		t.Errorf("%d ledger effects after the duplicates, %d before", after, before)
	}
	for _, e := range orders {
		if evs := h.history(e.Order.OrderID); len(evs) != events[e.Order.OrderID] {
			t.Errorf("%s: %d history events after the duplicates, %d before", e.Order.OrderID, len(evs), events[e.Order.OrderID])
		}
	}
}

// TestConflictingLateResult publishes, without the engine's fence (a plain
// publish, as `nats pub` or another team's participant would), a result
// that contradicts the recorded one on the same subject. The history
// stream must refuse it: histories are read as the last message of each
// subject, so a stored contradiction would replace the recorded fact in
// every later read.
func TestConflictingLateResult(t *testing.T) {
	h := newHarness(t, seedFor(t, 43), serverOptions{})
	h.orchestrator("o1", nil)
	h.participants()
	orders := h.publishAll(mix("conflict-", 2, false)[1:]) // a completing order
	h.waitSettled(ids(orders), settleBound)
	forged := 0
	for _, ev := range h.history(orders[0].Order.OrderID) {
		r, ok := ev.Value.(*schema.Result)
		if !ok {
			continue
		}
		f := *r
		f.Output, f.Error = nil, &schema.Error{Kind: "declined", Message: "a late contradiction"}
		m, err := streams.NewMsg(ev.Subject, &f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.js.PublishMsg(context.Background(), m); err == nil {
			t.Errorf("a second message on %s was stored", ev.Subject)
		}
		forged++
	}
	if forged == 0 {
		t.Fatal("no result in the history to contradict")
	}
	h.fault("late conflicting results (unfenced)", orders[0].Order.OrderID)
	h.settleAndCheck(orders, settleBound)
}

// TestRedeliveredSignalsAfterTheEnd delivers every signal again after its
// workflow finished, as JetStream does when an orchestrator dies between
// recording a signal in the history and acking it (here: for all signals
// at once, by recreating the signals consumer). A signal already recorded
// must change nothing: no second refund of a settlement the workflow
// already refunded, no second effect of any kind.
func TestRedeliveredSignalsAfterTheEnd(t *testing.T) {
	h := newHarness(t, seedFor(t, 47), serverOptions{})
	o := h.orchestrator("o1", nil)
	h.participants()
	var orders []Expected
	for _, e := range mix("resig-", 30, false) {
		if e.Want != schema.StatusCompleted {
			continue
		}
		if len(orders)%2 == 0 {
			// Settled in time, then out of stock: the settlement is refunded
			// by the saga.
			e.Order.Simulate = map[string]string{"payment": "pending_then_settle:50ms", "inventory": "out_of_stock"}
			e.Want = schema.StatusCompensated
		}
		orders = append(orders, e)
		if len(orders) == 10 {
			break
		}
	}
	orders = h.publishAll(orders)
	if _, ok := h.waitSettled(ids(orders), settleBound); !ok {
		t.FailNow()
	}
	ctx := context.Background()
	o.kill()
	if err := h.js.DeleteConsumer(ctx, streams.SignalsStream, streams.SignalsConsumer); err != nil {
		t.Fatal(err)
	}
	o.start()
	h.fault("every signal redelivered after the end", "jetflow-signals")
	h.eventually(60*time.Second, "the redelivered signals were not all handled", func() bool {
		c, err := h.js.Consumer(ctx, streams.SignalsStream, streams.SignalsConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.Delivered.Consumer > 0 && info.NumPending == 0 && info.NumAckPending == 0
	})
	// Whatever the redeliveries started must finish before the ledgers
	// are read.
	h.eventually(60*time.Second, "workflows started by the redeliveries did not finish", func() bool {
		st, err := h.statuses(ctx)
		if err != nil {
			return false
		}
		for _, s := range st {
			if !s.Terminal() {
				return false
			}
		}
		return true
	})
	h.settleAndCheck(orders, settleBound)
}
