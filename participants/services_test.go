package participants_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/participants/notification"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/shipping"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
)

// runReference runs the four reference participants with faults f.
func (h *harness) runReference(f sim.Faults) {
	h.t.Helper()
	h.run(participants.Config{}, payment.Service(h.system(payment.Name), f))
	h.run(participants.Config{}, inventory.Service(h.system(inventory.Name), f))
	h.run(participants.Config{}, shipping.Service(h.system(shipping.Name), f))
	h.run(participants.Config{}, notification.Service(h.system(notification.Name), f))
}

func wantFailure(t *testing.T, res *schema.Result, kind string, attempts int) {
	t.Helper()
	if res.Error == nil || res.Error.Kind != kind || res.Attempts != attempts {
		t.Errorf("%s: result %+v error %+v, want %s at attempt %d", res.WorkflowID, res, res.Error, kind, attempts)
	}
}

func wantSuccess(t *testing.T, res *schema.Result, attempts int) {
	t.Helper()
	if res.Error != nil || res.Attempts != attempts {
		t.Errorf("%s: result %+v error %+v, want success at attempt %d", res.WorkflowID, res, res.Error, attempts)
	}
}

func TestReferenceParticipants(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.runReference(sim.Faults{})
	items := []inventory.Item{{SKU: "sku-1", Qty: 2}, {SKU: "sku-2", Qty: 1}}

	send := func(id string, a workflow.Activity, in any, edit func(*schema.Command)) {
		c := command(t, id, a.Service, a.Action, in)
		if edit != nil {
			edit(&c)
		}
		h.send(c, "cmd-"+id)
	}
	once := func(c *schema.Command) { c.Retry.MaxAttempts = 1 }
	send("reserve-ok", inventory.Reserve, inventory.ReserveRequest{OrderID: "o-1", Items: items}, nil)
	send("reserve-oos", inventory.Reserve, inventory.ReserveRequest{OrderID: "o-2", Items: items, Simulate: "out_of_stock"}, nil)
	send("reserve-timeout", inventory.Reserve, inventory.ReserveRequest{OrderID: "o-3", Items: items, Simulate: "timeout"},
		func(c *schema.Command) { c.StartToClose = 50 * time.Millisecond; once(c) })
	send("release-retry", inventory.Release, inventory.ReleaseRequest{OrderID: "o-1", ReservationID: "rsv_1", Items: items, Simulate: "fail_n:1"}, nil)
	send("ship-ok", shipping.CreateShipment, shipping.ShipmentRequest{OrderID: "o-1", CustomerID: "c-1", Items: items}, nil)
	send("ship-fail", shipping.CreateShipment, shipping.ShipmentRequest{OrderID: "o-4", CustomerID: "c-1", Items: items, Simulate: "fail"}, nil)
	send("cancel-fail", shipping.CancelShipment, shipping.CancelRequest{OrderID: "o-5", ShipmentID: "sh_1", Simulate: "fail_always"},
		func(c *schema.Command) { c.Retry.MaxAttempts = 2 })
	send("cancel-ok", shipping.CancelShipment, shipping.CancelRequest{OrderID: "o-1", ShipmentID: "sh_1", Simulate: "fail_n:2"}, nil)
	send("notify-ok", notification.Notify, notification.NotifyRequest{OrderID: "o-1", CustomerID: "c-1", Template: "order_shipped"}, nil)

	res := h.result("reserve-ok")
	wantSuccess(t, res, 1)
	if r := decode[inventory.Reservation](t, res.Output); !strings.HasPrefix(r.ReservationID, "rsv_") {
		t.Errorf("reservation %+v", r)
	}
	wantFailure(t, h.result("reserve-oos"), "out_of_stock", 1)
	wantFailure(t, h.result("reserve-timeout"), "timeout", 1)
	res = h.result("release-retry")
	wantSuccess(t, res, 2)
	if r := decode[inventory.ReleaseResult](t, res.Output); !strings.HasPrefix(r.ReleaseID, "rel_") {
		t.Errorf("release %+v", r)
	}
	res = h.result("ship-ok")
	wantSuccess(t, res, 1)
	if s := decode[shipping.Shipment](t, res.Output); !strings.HasPrefix(s.ShipmentID, "sh_") || s.Carrier == "" {
		t.Errorf("shipment %+v", s)
	}
	wantFailure(t, h.result("ship-fail"), "rejected", 1)
	wantFailure(t, h.result("cancel-fail"), "gateway_error", 2)
	res = h.result("cancel-ok")
	wantSuccess(t, res, 3)
	if c := decode[shipping.CancelResult](t, res.Output); !strings.HasPrefix(c.CancellationID, "cx_") {
		t.Errorf("cancel %+v", c)
	}
	res = h.result("notify-ok")
	wantSuccess(t, res, 1)
	if n := decode[notification.NotifyResult](t, res.Output); !strings.HasPrefix(n.MessageID, "msg_") {
		t.Errorf("notify %+v", n)
	}

	kinds := func(system, order string) []string {
		var out []string
		for _, e := range h.effects(system, order) {
			out = append(out, e.Kind)
		}
		return out
	}
	for _, c := range []struct{ system, order, want string }{
		{inventory.Name, "o-1", "[reserve release]"},
		{inventory.Name, "o-2", "[]"},
		{inventory.Name, "o-3", "[]"},
		{shipping.Name, "o-1", "[shipment cancel]"},
		{shipping.Name, "o-4", "[]"},
		{shipping.Name, "o-5", "[]"},
		{notification.Name, "o-1", "[notify]"},
	} {
		if got := strings.Join(kinds(c.system, c.order), " "); "["+got+"]" != c.want {
			t.Errorf("%s ledger of %s: [%s], want %s", c.system, c.order, got, c.want)
		}
	}
	if effs := h.effects(inventory.Name, "o-1"); len(effs) == 0 || len(effs[0].Items) != 2 || effs[0].Items[0] != items[0] {
		t.Errorf("reserve effect items %+v", effs)
	}
}

func TestReferenceFaultRates(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.runReference(sim.Faults{PaymentDeclineRate: 1, OutOfStockRate: 1, ShippingFailRate: 1, Latency: 100 * time.Millisecond})

	h.send(command(t, "rate-charge", payment.Name, payment.Charge.Action, payment.ChargeRequest{OrderID: "o-1", AmountCents: 1, Currency: "EUR"}), "c1")
	h.send(command(t, "rate-reserve", inventory.Name, inventory.Reserve.Action, inventory.ReserveRequest{OrderID: "o-1"}), "c2")
	h.send(command(t, "rate-ship", shipping.Name, shipping.CreateShipment.Action, shipping.ShipmentRequest{OrderID: "o-1"}), "c3")
	slow := command(t, "rate-notify-slow", notification.Name, notification.Notify.Action, notification.NotifyRequest{OrderID: "o-1"})
	slow.StartToClose, slow.Retry.MaxAttempts = 20*time.Millisecond, 1
	h.send(slow, "c4")
	h.send(command(t, "rate-notify", notification.Name, notification.Notify.Action, notification.NotifyRequest{OrderID: "o-2"}), "c5")

	wantFailure(t, h.result("rate-charge"), "declined", 1)
	wantFailure(t, h.result("rate-reserve"), "out_of_stock", 1)
	wantFailure(t, h.result("rate-ship"), "rejected", 1)
	wantFailure(t, h.result("rate-notify-slow"), "timeout", 1)
	wantSuccess(t, h.result("rate-notify"), 1)
	for _, system := range []string{payment.Name, inventory.Name, shipping.Name} {
		if effs := h.effects(system, ""); len(effs) != 0 {
			t.Errorf("%s ledger %+v, want empty", system, effs)
		}
	}
	if effs := h.effects(notification.Name, ""); len(effs) != 1 || effs[0].OrderID != "o-2" {
		t.Errorf("notification ledger %+v", effs)
	}
}
