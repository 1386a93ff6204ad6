package test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
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
	if _, _, err := gw.SettleFor(ctx, "unknown-00001", "unknown-00000.1", "unknown-00001"); !errors.Is(err, sim.ErrNotOwnKey) {
		t.Fatalf("settling another workflow's key: %v, want ErrNotOwnKey", err)
	}
	charged := led["unknown-00000"][0]
	for _, e := range led["unknown-00000"] {
		if e.Kind == "charge" {
			charged = e
		}
	}
	if _, _, err := gw.SettleFor(ctx, "unknown-00000", charged.IdempotencyKey, "someone-else"); !errors.Is(err, sim.ErrNotOwnKey) {
		t.Fatalf("settling a key for another order: %v, want ErrNotOwnKey", err)
	}
}
