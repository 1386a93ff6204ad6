// Package shipping is the reference shipping participant: it creates and
// cancels shipments with the simulated carrier of package sim.
//
// Simulate strings (ShipmentRequest.Simulate, CancelRequest.Simulate):
//
//   - create "fail": the carrier rejects the shipment (non-retryable
//     "rejected"), nothing shipped.
//   - create "timeout_after_effect": the shipment is created, then every
//     attempt hangs until its StartToClose passes.
//   - "fail_n:N": retryable "gateway_error" on attempts 1 to N, then success.
//   - "fail_always": retryable "gateway_error" on every attempt.
//
// After a shipment is created the simulated carrier signals
// carrier.picked_up to the workflow after Faults.PickupDelay, unless the
// request's Pickup says "never", gives its own delay ("5s"), or says
// "at_creation": the carrier takes the parcel as the shipment is created,
// which the Shipment reports (PickedUp) and no signal follows.
package shipping

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/sim"
)

// Name is the service name of the shipping participant.
const Name = "shipping"

// Activities of the shipping participant.
var (
	// CreateShipment ships an order: ShipmentRequest in, Shipment out.
	CreateShipment = workflow.Activity{Service: Name, Action: "create"}
	// CancelShipment cancels a shipment: CancelRequest in, CancelResult out.
	CancelShipment = workflow.Activity{Service: Name, Action: "cancel"}
)

// Item is a line of an order.
type Item = sim.Item

// ShipmentRequest is the input of CreateShipment.
type ShipmentRequest struct {
	OrderID    string `msgpack:"order_id" json:"order_id"`
	CustomerID string `msgpack:"customer_id" json:"customer_id"`
	Items      []Item `msgpack:"items" json:"items"`
	// Simulate selects a simulated fault; see the package documentation.
	Simulate string `msgpack:"simulate,omitempty" json:"simulate,omitempty"`
	// Pickup is "never", "at_creation", a delay such as "5s", or "" for the
	// default.
	Pickup string `msgpack:"pickup,omitempty" json:"pickup,omitempty"`
}

// PickedUp is the payload of the carrier.picked_up signal.
type PickedUp struct {
	ShipmentID string `msgpack:"shipment_id" json:"shipment_id"`
	Carrier    string `msgpack:"carrier" json:"carrier"`
}

// PickedUpSignal is the name of the carrier's pickup signal.
const PickedUpSignal = "carrier.picked_up"

// Shipment is the output of CreateShipment.
type Shipment struct {
	ShipmentID string `msgpack:"shipment_id" json:"shipment_id"`
	Carrier    string `msgpack:"carrier" json:"carrier"`
	// PickedUp says the carrier took the parcel when the shipment was
	// created: no carrier.picked_up signal will come.
	PickedUp bool `msgpack:"picked_up,omitempty" json:"picked_up,omitempty"`
}

// CancelRequest is the input of CancelShipment.
type CancelRequest struct {
	OrderID    string `msgpack:"order_id" json:"order_id"`
	ShipmentID string `msgpack:"shipment_id" json:"shipment_id"`
	// ShipmentKey, with no ShipmentID, names a shipment whose outcome is
	// unknown (its step failed by timeout) by its step's idempotency key:
	// the carrier settles that key first, so the shipment is cancelled if
	// it was created and can never be if it was not (then the cancel does
	// nothing and its CancellationID is "").
	ShipmentKey string `msgpack:"shipment_key,omitempty" json:"shipment_key,omitempty"`
	// Simulate selects a simulated fault; see the package documentation.
	Simulate string `msgpack:"simulate,omitempty" json:"simulate,omitempty"`
}

// CancelResult is the output of CancelShipment.
type CancelResult struct {
	CancellationID string `msgpack:"cancellation_id" json:"cancellation_id"`
}

// Service returns the shipping participant on the ledger sys with the
// global faults f.
func Service(sys *sim.System, f sim.Faults) participants.Service {
	p := &shipping{sys: sys, faults: f}
	return participants.Service{
		Name: Name,
		Handlers: map[string]participants.Handler{
			CreateShipment.Action: participants.HandlerFunc(p.create),
			CancelShipment.Action: participants.HandlerFunc(p.cancel),
		},
		// The carrier's pickup is a callback scheduled for later, sent as
		// a signal when due.
		Background: []func(context.Context, *slog.Logger) error{sys.ForwardCallbacks},
	}
}

type shipping struct {
	sys    *sim.System
	faults sim.Faults
}

var errCarrier = errors.New("carrier system unavailable")

var carriers = []string{"DHL", "UPS", "FedEx", "PostNL"}

// carrier picks the order's carrier deterministically.
func carrier(orderID string) string {
	h := fnv.New32a()
	h.Write([]byte(orderID))
	return carriers[h.Sum32()%uint32(len(carriers))]
}

func (p *shipping) create(ctx context.Context, cmd *participants.Command) (any, error) {
	var req ShipmentRequest
	if err := cmd.Decode(&req); err != nil {
		return nil, participants.NonRetryable("bad_request", err)
	}
	if err := p.faults.Wait(ctx); err != nil {
		return nil, err
	}
	switch {
	case req.Simulate == "fail" || sim.Hit(p.faults.ShippingFailRate, req.OrderID, Name):
		return nil, participants.NonRetryable("rejected", errors.New("carrier rejected the shipment"))
	case sim.Failing(req.Simulate, cmd.Attempt):
		return nil, participants.Retryable("gateway_error", errCarrier)
	}
	e, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: cmd.IdempotencyKey,
		OrderID:        req.OrderID,
		Kind:           "shipment",
		Items:          req.Items,
		Ref:            sim.Ref("sh", cmd.IdempotencyKey),
	})
	if err != nil {
		return nil, err
	}
	if req.Simulate == "timeout_after_effect" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	ship := Shipment{ShipmentID: e.Ref, Carrier: carrier(req.OrderID)}
	switch req.Pickup {
	case "never":
	case "at_creation":
		ship.PickedUp = true
	default:
		delay := p.faults.PickupDelay
		if d, err := time.ParseDuration(req.Pickup); err == nil {
			delay = d
		}
		if err := p.sys.Callback(ctx, PickedUpSignal, cmd.WorkflowID, delay, PickedUp{ShipmentID: ship.ShipmentID, Carrier: ship.Carrier}); err != nil {
			return nil, err
		}
	}
	return ship, nil
}

func (p *shipping) cancel(ctx context.Context, cmd *participants.Command) (any, error) {
	var req CancelRequest
	if err := cmd.Decode(&req); err != nil {
		return nil, participants.NonRetryable("bad_request", err)
	}
	if err := p.faults.Wait(ctx); err != nil {
		return nil, err
	}
	if sim.Failing(req.Simulate, cmd.Attempt) {
		return nil, participants.Retryable("gateway_error", errCarrier)
	}
	if req.ShipmentID == "" && req.ShipmentKey != "" {
		ship, made, err := p.sys.SettleFor(ctx, cmd.WorkflowID, req.ShipmentKey, req.OrderID, "shipment")
		if err != nil || !made {
			return CancelResult{}, err
		}
		req.ShipmentID = ship.Ref
	}
	e, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: cmd.IdempotencyKey,
		OrderID:        req.OrderID,
		Kind:           "cancel",
		Ref:            sim.Ref("cx", cmd.IdempotencyKey),
	})
	if err != nil {
		return nil, err
	}
	return CancelResult{CancellationID: e.Ref}, nil
}
