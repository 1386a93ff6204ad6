package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

const mixSize = 500

// TestOrderMix runs 500 orders with the deterministic outcome mix through
// one orchestrator, two orchestrators at once (without and with affinity),
// and an orchestrator that is replaced halfway; every order must reach its
// expected state and the ledgers must show no double effect. A wrongly
// ended order has its history logged. Each case has its own server, so
// they run side by side with the package's other parallel tests.
func TestOrderMix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(s *stack, ids []string)
	}{
		{"one orchestrator", func(s *stack, ids []string) {
			s.orchestrator()
		}},
		{"two orchestrators on the same streams", func(s *stack, ids []string) {
			s.orchestrator()
			s.orchestrator()
		}},
		{"two orchestrators with affinity", func(s *stack, ids []string) {
			s.affinity = true
			s.orchestrator()
			s.orchestrator()
		}},
		{"orchestrator restarted halfway", func(s *stack, ids []string) {
			first := s.orchestrator()
			natstest.Eventually(s.t, 2*time.Minute, func() bool {
				n := 0
				for _, st := range s.statuses() {
					if st.Terminal() {
						n++
					}
				}
				return n >= len(ids)/2
			}, "half the orders did not finish")
			first.stop(s.t)
			s.orchestrator()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			s.participants()
			orders, want, ids := s.mix("o-", mixSize)
			tc.run(s, ids)
			st := s.waitSettled(ids, 4*time.Minute)
			counts := map[schema.Status]int{}
			for _, id := range ids {
				counts[st[id]]++
				if st[id] != want[id] {
					t.Errorf("%s: status %s, want %s (simulate %v)", id, st[id], want[id], orders[id].Simulate)
					s.logHistory(id)
				}
			}
			t.Logf("outcomes: %v", counts)
			s.checkInvariants(orders, st)
			// The manual ones say why.
			for _, id := range ids {
				if want[id] == schema.StatusManual {
					d := s.describe(id)
					if !strings.Contains(d.Reason, "payment.refund") || !strings.Contains(d.Reason, "gateway_error") {
						t.Errorf("%s: manual reason %q does not name the failed refund", id, d.Reason)
					}
				}
			}
		})
	}
}

// TestDuplicatesCauseNoSecondEffect duplicates every kind of message: the
// order, every command delivery (the participants' consumers lose their
// state and redeliver everything) and a result.
func TestDuplicatesCauseNoSecondEffect(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	parts := s.participants()
	var ids []string
	for i := 0; i < 10; i++ {
		o := order("dup-", i, nil)
		s.publishOrder(o)
		s.publishOrder(o) // duplicate order.created
		ids = append(ids, o.OrderID)
	}
	s.waitSettled(ids, time.Minute)
	before := map[string]int{}
	for _, id := range ids {
		before[id] = len(s.describe(id).History)
	}
	ledgerBefore := s.ledgers()

	// Every command is delivered again: the participants restart on
	// consumers recreated from the start of the stream.
	for _, p := range parts {
		p.stop(t)
	}
	for _, name := range reference.Names {
		for _, hs := range streams.HistoryStreams() {
			if err := s.env.JS.DeleteConsumer(context.Background(), hs, streams.ParticipantConsumerPrefix+name); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.participants()
	natstest.Eventually(t, time.Minute, func() bool {
		for _, name := range reference.Names {
			for _, hs := range streams.HistoryStreams() {
				c, err := s.env.JS.Consumer(context.Background(), hs, streams.ParticipantConsumerPrefix+name)
				if err != nil {
					return false
				}
				info, err := c.Info(context.Background())
				if err != nil || info.NumPending != 0 || info.NumAckPending != 0 || info.Delivered.Consumer == 0 {
					return false
				}
			}
		}
		return true
	}, "redelivered commands were not all processed")

	// A duplicate result event for the first charge.
	hist := s.history(ids[0])
	for _, ev := range hist {
		if r, ok := ev.Value.(*schema.Result); ok && r.CommandID == 1 {
			m, err := streams.NewMsg(ev.Subject+".again", r)
			if err != nil {
				t.Fatal(err)
			}
			s.publish(m.Subject, m.Data, m.Header)
			break
		}
	}
	natstest.Eventually(t, 30*time.Second, func() bool {
		c, err := s.env.JS.Consumer(context.Background(), streams.HistoryStreamOf(ids[0]), streams.OrchestratorConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "duplicate result was not processed")

	// Nothing happened twice: no new command, no second answer to any
	// command, no new effect.
	for _, id := range ids {
		d := s.describe(id)
		extra := len(d.History) - before[id]
		if id == ids[0] {
			extra-- // the duplicate result itself
		}
		if d.Status != schema.StatusCompleted || extra != 0 {
			t.Errorf("%s: %s with %d new events after the duplicates", id, d.Status, extra)
		}
	}
	ledgerAfter := s.ledgers()
	for _, id := range ids {
		k := kinds(ledgerAfter[id])
		if len(ledgerAfter[id]) != len(ledgerBefore[id]) || k["charge"] != 1 || k["reserve"] != 1 || k["shipment"] != 1 {
			t.Errorf("%s: ledger effects %v after duplicates (before: %d effects)", id, k, len(ledgerBefore[id]))
		}
	}
	if n := len(s.statuses()); n != len(ids) {
		t.Fatalf("%d workflows for %d orders", n, len(ids))
	}
}

// TestChangedCodeBlocksOnlyThatWorkflow changes the workflow code while a
// workflow waits for its first step; its replay no longer matches the
// history, so it is parked as blocked, and new workflows still finish.
func TestChangedCodeBlocksOnlyThatWorkflow(t *testing.T) {
	s := newStack(t)
	orch := s.orchestrator()
	old := order("old-", 0, nil)
	s.publishOrder(old)
	// No payment participant yet: the workflow waits with its charge sent.
	natstest.Eventually(t, 30*time.Second, func() bool {
		return len(s.describe2(old.OrderID)) >= 2
	}, "charge command not issued")
	orch.stop(t)

	// The new code reserves stock before charging.
	s.workflows = func(r *workflow.Registry) {
		// Called directly, Fulfill gets no defaults from Register: the
		// deadlines must be set, or a 0 s pickup deadline races the carrier.
		cfg := fulfillment.Config{Steps: fastSteps, Compensation: fastCompensation, PickupTimeout: time.Hour, PaymentTimeout: time.Hour}
		workflow.Register(r, fulfillment.WorkflowType, func(ctx workflow.Context, o fulfillment.Order) (fulfillment.Receipt, error) {
			if _, err := workflow.Execute[inventory.Reservation](ctx, inventory.Reserve.WithOptions(fastSteps), inventory.ReserveRequest{OrderID: o.OrderID, Items: o.Items}); err != nil {
				return fulfillment.Receipt{}, err
			}
			return cfg.Fulfill(ctx, o)
		})
	}
	s.orchestrator()
	s.participants()
	fresh := order("new-", 1, nil)
	s.publishOrder(fresh)
	st := s.waitSettled([]string{old.OrderID, fresh.OrderID}, time.Minute)
	if st[old.OrderID] != schema.StatusBlocked {
		t.Fatalf("old workflow is %s, want blocked", st[old.OrderID])
	}
	if st[fresh.OrderID] != schema.StatusCompleted {
		d := s.describe(fresh.OrderID)
		t.Fatalf("new workflow is %s, want completed: %s %s", st[fresh.OrderID], d.Error, d.Reason)
	}
	d := s.describe(old.OrderID)
	for _, want := range []string{"nondeterminism", "decision 1", "payment.charge", "inventory.reserve", "#"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("blocked reason %q lacks %q", d.Reason, want)
		}
	}
	// Parked means parked: nothing was sent after the block.
	last := d.History[len(d.History)-1]
	if last.Type != string(schema.KindWorkflowBlocked) && last.Type != string(schema.KindResult) {
		t.Errorf("history continued after blocking: %+v", last)
	}
}

// describe2 returns the raw history of id (empty while it does not exist).
func (s *stack) describe2(id string) []streams.Event {
	evs, err := streams.NewHistory(s.env.NC, s.env.JS).Read(context.Background(), id, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	return evs
}

// TestBadInputGoesToDeadLetter feeds every kind of bad input; each goes to
// a dead-letter subject with its reason, and a good order behind them
// still completes.
func TestBadInputGoesToDeadLetter(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	s.participants()
	msgpackHdr := nats.Header{schema.HeaderContentType: []string{schema.ContentTypeMsgpack}}
	bad := []struct {
		name   string
		body   string
		header nats.Header
		reason string
	}{
		{"invalid JSON", `{"order_id": "x-1",`, nil, "invalid JSON"},
		{"missing order_id", `{"customer_id":"c","amount_cents":1,"currency":"EUR","items":[{"sku":"a","qty":1}]}`, nil, "order_id is missing"},
		{"negative amount", `{"order_id":"x-2","customer_id":"c","amount_cents":-5,"currency":"EUR","items":[{"sku":"a","qty":1}]}`, nil, "amount_cents is negative"},
		{"unknown field", `{"order_id":"x-3","customer_id":"c","amount_cents":1,"currency":"EUR","items":[{"sku":"a","qty":1}],"coupon":"FREE"}`, nil, "unknown field"},
		{"garbage bytes", "\x00\xff\xfe garbage", nil, "invalid JSON"},
		{"garbage msgpack", "\xc1\xc1\xc1", msgpackHdr, "invalid msgpack"},
	}
	for _, b := range bad {
		s.publish(streams.OrderCreated, []byte(b.body), b.header)
	}
	// A good order in msgpack, behind the bad ones.
	good := order("good-", 0, nil)
	body, err := msgpack.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	s.publish(streams.OrderCreated, body, msgpackHdr)
	if st := s.waitSettled([]string{good.OrderID}, time.Minute); st[good.OrderID] != schema.StatusCompleted {
		t.Fatalf("good order %s", st[good.OrderID])
	}
	var reasons []string
	natstest.Eventually(t, 30*time.Second, func() bool {
		reasons = s.deadLetters(streams.DeadLetterSubject(streams.OrderCreated))
		return len(reasons) == len(bad)
	}, "dead letters: %v", reasons)
	for _, b := range bad {
		found := false
		for _, r := range reasons {
			found = found || strings.Contains(r, b.reason)
		}
		if !found {
			t.Errorf("%s: no dead letter with %q in %v", b.name, b.reason, reasons)
		}
	}
	if n := len(s.statuses()); n != 1 {
		t.Errorf("bad input started workflows: %d", n)
	}
}

// TestUnknownCommandAndStrayResult: a command no participant knows and a
// result for a workflow that does not exist both go to dead-letter, and the
// engine keeps working.
func TestUnknownCommandAndStrayResult(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	s.participants()

	// A command for an action the payment service lacks.
	id := "unknown-cmd-1"
	ctx := context.Background()
	raw, _ := schema.EncodeRaw(map[string]string{"x": "y"})
	cmd := &schema.Command{WorkflowID: id, ID: 1, Service: "payment", Action: "teleport", Input: raw,
		IdempotencyKey: id + ".1", ReplyTo: streams.ResultSubject(id, 1, "payment", "teleport"),
		StartToClose: time.Second, Retry: fastSteps.Retry}
	m, err := streams.NewMsg(streams.CommandSubject(id, 1, "payment", "teleport"), cmd)
	if err != nil {
		t.Fatal(err)
	}
	s.publish(m.Subject, m.Data, m.Header)

	// A result for a workflow nobody started.
	res := &schema.Result{WorkflowID: "ghost", CommandID: 1, Service: "payment", Action: "charge", Attempts: 1}
	m, err = streams.NewMsg(streams.ResultSubject("ghost", 1, "payment", "charge"), res)
	if err != nil {
		t.Fatal(err)
	}
	s.publish(m.Subject, m.Data, m.Header)
	// Garbage on a result subject of a workflow.
	s.publish(streams.ResultSubject("ghost2", 1, "payment", "charge"), []byte("not msgpack"), nil)

	natstest.Eventually(t, 30*time.Second, func() bool {
		return len(s.deadLetters(streams.DeadLetterSubject("cmd.payment"))) == 1 &&
			len(s.deadLetters(streams.DeadLetterSubject("wf"))) == 3
	}, "dead letters missing")
	if r := s.deadLetters(streams.DeadLetterSubject("cmd.payment")); !strings.Contains(r[0], "teleport") {
		t.Errorf("unknown command reason %q", r[0])
	}
	// The unknown command was answered with a failure, so nothing waits on it.
	evs, err := streams.NewHistory(s.env.NC, s.env.JS).Read(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	answered := false
	for _, ev := range evs {
		if r, ok := ev.Value.(*schema.Result); ok && r.Error != nil && r.Error.Kind == "unknown_command" {
			answered = true
		}
	}
	if !answered {
		t.Errorf("unknown command not answered with a failure result")
	}

	// The engine still works.
	good := order("after-", 0, nil)
	s.publishOrder(good)
	if st := s.waitSettled([]string{good.OrderID}, time.Minute); st[good.OrderID] != schema.StatusCompleted {
		t.Fatalf("order after poison: %s", st[good.OrderID])
	}
}
