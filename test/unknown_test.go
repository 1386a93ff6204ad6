package test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestTimedOutStepsAreSettled: a step that fails by timeout after its
// effect landed (the system did it, its answer came too late) is undone
// with the others, and one that timed out without an effect can never
// have it afterwards. Each order ends compensated with its ledgers
// balanced: no money kept, nothing left reserved or shipped.
func TestTimedOutStepsAreSettled(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	s.participants()
	orders := map[string]fulfillment.Order{}
	for i, sim := range []map[string]string{
		{"payment": "timeout_after_effect"},
		{"payment": "timeout"},
		{"inventory": "timeout_after_effect"},
		{"shipping": "timeout_after_effect"},
	} {
		o := order("unknown-", i, sim)
		orders[o.OrderID] = o
		s.publishOrder(o)
	}
	var ids []string
	for id := range orders {
		ids = append(ids, id)
	}
	st := s.waitSettled(ids, 2*time.Minute)
	for _, id := range ids {
		if st[id] != schema.StatusCompensated {
			t.Errorf("%s (%v): %s, want compensated", id, orders[id].Simulate, st[id])
			s.logHistory(id)
		}
	}
	s.checkInvariants(orders, st) // balanced ledgers, compensations in reverse
	led := s.ledgers()
	want := map[string]map[string]int{
		"unknown-00000": {"charge": 1, "refund": 1},
		"unknown-00001": {"blocked": 1},
		"unknown-00002": {"charge": 1, "refund": 1, "reserve": 1, "release": 1},
		"unknown-00003": {"charge": 1, "refund": 1, "reserve": 1, "release": 1, "shipment": 1, "cancel": 1},
	}
	for id, w := range want {
		k := kinds(led[id])
		delete(k, "notify")
		if len(k) != len(w) {
			t.Errorf("%s: ledgers %v, want %v", id, k, w)
			continue
		}
		for kind, n := range w {
			if k[kind] != n {
				t.Errorf("%s: ledgers %v, want %v", id, k, w)
			}
		}
	}

	// The timed-out charge that was never made cannot be made late: its
	// key is taken.
	ctx := context.Background()
	gw, err := sim.Open(ctx, s.env.JS, payment.Name, streams.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	var blocked sim.Effect
	for _, e := range led["unknown-00001"] {
		if e.Kind == sim.KindBlocked {
			blocked = e
		}
	}
	if _, _, err := gw.Apply(ctx, sim.Effect{IdempotencyKey: blocked.IdempotencyKey, OrderID: "unknown-00001", Kind: "charge", AmountCents: 1}); !errors.Is(err, sim.ErrBlocked) {
		t.Fatalf("a late charge under the blocked key %q: %v, want ErrBlocked", blocked.IdempotencyKey, err)
	}

	// A compensation may settle only its own workflow's steps, of its own
	// order.
	if _, _, err := gw.SettleFor(ctx, "unknown-00001", "unknown-00000.1", "unknown-00001", "charge"); !errors.Is(err, sim.ErrNotOwnKey) {
		t.Fatalf("settling another workflow's key: %v, want ErrNotOwnKey", err)
	}
	charged := led["unknown-00000"][0]
	for _, e := range led["unknown-00000"] {
		if e.Kind == "charge" {
			charged = e
		}
	}
	if _, _, err := gw.SettleFor(ctx, "unknown-00000", charged.IdempotencyKey, "someone-else", "charge"); !errors.Is(err, sim.ErrNotOwnKey) {
		t.Fatalf("settling a key for another order: %v, want ErrNotOwnKey", err)
	}
	// ... and only an effect of the step's kind: a refund never undoes a
	// refund.
	if _, _, err := gw.Apply(ctx, sim.Effect{IdempotencyKey: "unknown-00000.99", OrderID: "unknown-00000", Kind: "refund", AmountCents: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := gw.SettleFor(ctx, "unknown-00000", "unknown-00000.99", "unknown-00000", "charge", "authorize"); !errors.Is(err, sim.ErrNotOwnKey) {
		t.Fatalf("settling a refund's key as a charge: %v, want ErrNotOwnKey", err)
	}
}

// TestRefundByKeySettlesAnAuthorization: a pending charge is two records,
// the authorization and its settlement. A refund by the charge's key of an
// authorization whose settlement was never recorded voids it, refunds
// nothing and blocks the settlement; one whose settlement was recorded is
// refunded once, whatever the number of refunds asked.
func TestRefundByKeySettlesAnAuthorization(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	gw, err := sim.Open(ctx, env.JS, payment.Name, streams.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	refund := payment.Service(gw, sim.Faults{}).Handlers[payment.Refund.Action]
	authorize := func(id string, settled bool) {
		key := id + ".1"
		if _, _, err := gw.Apply(ctx, sim.Effect{IdempotencyKey: key, OrderID: id, Kind: "authorize", AmountCents: 700, Currency: "EUR", Ref: sim.Ref("ch", key)}); err != nil {
			t.Fatal(err)
		}
		if settled {
			if _, _, err := gw.Apply(ctx, sim.Effect{IdempotencyKey: key + ".settle", OrderID: id, Kind: "settle", AmountCents: 700, Currency: "EUR", Ref: sim.Ref("ch", key)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ask := func(id string, n int) payment.RefundResult {
		in, _ := schema.EncodeRaw(payment.RefundRequest{OrderID: id, ChargeKey: id + ".1"})
		out, err := refund.Handle(ctx, &participants.Command{WorkflowID: id, Service: payment.Name, Action: payment.Refund.Action,
			IdempotencyKey: fmt.Sprintf("%s.%d", id, n), CommandID: n, Attempt: 1, Compensation: true, Input: in})
		if err != nil {
			t.Fatalf("refund of %s: %v", id, err)
		}
		return out.(payment.RefundResult)
	}
	balance := func(id string) (int64, map[string]int) { return paymentBalance(t, env.JS, id) }

	authorize("auth-open", false)
	if r := ask("auth-open", 5); r.RefundID != "" {
		t.Fatalf("refund of an unsettled authorization: %+v, want none", r)
	}
	if b, k := balance("auth-open"); b != 0 || k["void"] != 1 || k[sim.KindBlocked] != 1 || k["refund"] != 0 {
		t.Fatalf("unsettled authorization: balance %d, ledger %v; want 0, voided, its settlement blocked, nothing refunded", b, k)
	}
	if _, _, err := gw.Apply(ctx, sim.Effect{IdempotencyKey: "auth-open.1.settle", OrderID: "auth-open", Kind: "settle", AmountCents: 700}); !errors.Is(err, sim.ErrBlocked) {
		t.Fatalf("a late settlement: %v, want ErrBlocked", err)
	}

	authorize("auth-settled", true)
	first, again := ask("auth-settled", 5), ask("auth-settled", 6)
	if first.RefundID == "" || again.RefundID != first.RefundID {
		t.Fatalf("refunds of a settled authorization: %+v then %+v, want one refund answered twice", first, again)
	}
	if b, k := balance("auth-settled"); b != 0 || k["refund"] != 1 {
		t.Fatalf("settled authorization: balance %d, ledger %v; want 0 with one refund", b, k)
	}
}

// TestCancelledInFlightStepIsSettled: an order cancelled while its charge
// is out, the gateway having taken the money, ends cancelled with the
// charge refunded: a step cancelled in flight is undone as possibly done.
// One cancelled before its charge was made blocks it.
func TestCancelledInFlightStepIsSettled(t *testing.T) {
	s := newStack(t)
	// The charges hang until cancelled: long enough that a loaded machine
	// cannot time them out before the cancel lands.
	slow := fastSteps
	slow.StartToClose = time.Minute
	s.workflows = func(r *workflow.Registry) {
		fulfillment.Register(r, fulfillment.Config{Steps: slow, Compensation: fastCompensation})
	}
	s.orchestrator()
	s.participants()
	made := order("cancel-flight-", 0, map[string]string{"payment": "timeout_after_effect"})
	none := order("cancel-flight-", 1, map[string]string{"payment": "timeout"})
	s.publishOrder(made)
	s.publishOrder(none)
	charged := func(id string) bool { return kinds(s.ledgers()[id])["charge"] == 1 }
	natstest.Eventually(t, time.Minute, func() bool { return charged(made.OrderID) }, "the charge was not made")
	natstest.Eventually(t, time.Minute, func() bool {
		d := s.describe(none.OrderID)
		return len(d.Waiting) == 1
	}, "the other order's charge was not sent")
	for _, id := range []string{made.OrderID, none.OrderID} {
		if _, err := orchestrator.Cancel(context.Background(), s.env.JS, id, alice); err != nil {
			t.Fatal(err)
		}
	}
	orders := map[string]fulfillment.Order{made.OrderID: made, none.OrderID: none}
	st := s.waitSettled([]string{made.OrderID, none.OrderID}, time.Minute)
	for id := range orders {
		if st[id] != schema.StatusCancelled {
			t.Errorf("%s: %s, want cancelled", id, st[id])
			s.logHistory(id)
		}
	}
	s.checkInvariants(orders, st)
	led := s.ledgers()
	if k := kinds(led[made.OrderID]); k["charge"] != 1 || k["refund"] != 1 {
		t.Errorf("%s: ledger %v, want its charge refunded", made.OrderID, k)
	}
	if k := kinds(led[none.OrderID]); k["charge"] != 0 || k[sim.KindBlocked] != 1 {
		t.Errorf("%s: ledger %v, want its charge blocked", none.OrderID, k)
	}
}
