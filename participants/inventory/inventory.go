// Package inventory is the reference inventory participant: it reserves and
// releases stock in the simulated warehouse of package sim.
//
// Simulate strings (ReserveRequest.Simulate, ReleaseRequest.Simulate):
//
//   - reserve "out_of_stock": refused at once (non-retryable
//     "out_of_stock"), nothing reserved.
//   - reserve "timeout": the warehouse never answers; the attempt runs out
//     of its StartToClose.
//   - reserve "timeout_after_effect": the stock is reserved, then every
//     attempt hangs until its StartToClose passes.
//   - "fail_n:N": retryable "gateway_error" on attempts 1 to N, then
//     success.
//   - "fail_always": retryable "gateway_error" on every attempt.
package inventory

import (
	"context"
	"errors"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/sim"
)

// Name is the service name of the inventory participant.
const Name = "inventory"

// Activities of the inventory participant.
var (
	// Reserve reserves stock: ReserveRequest in, Reservation out.
	Reserve = workflow.Activity{Service: Name, Action: "reserve"}
	// Release releases a reservation: ReleaseRequest in, ReleaseResult out.
	Release = workflow.Activity{Service: Name, Action: "release"}
)

// Item is a line of an order.
type Item = sim.Item

// ReserveRequest is the input of Reserve.
type ReserveRequest struct {
	OrderID string `msgpack:"order_id" json:"order_id"`
	Items   []Item `msgpack:"items" json:"items"`
	// Simulate selects a simulated fault; see the package documentation.
	Simulate string `msgpack:"simulate,omitempty" json:"simulate,omitempty"`
}

// Reservation is the output of Reserve.
type Reservation struct {
	ReservationID string `msgpack:"reservation_id" json:"reservation_id"`
}

// ReleaseRequest is the input of Release.
type ReleaseRequest struct {
	OrderID       string `msgpack:"order_id" json:"order_id"`
	ReservationID string `msgpack:"reservation_id" json:"reservation_id"`
	// ReserveKey, with no ReservationID, names a reservation whose outcome
	// is unknown (its step failed by timeout) by its step's idempotency
	// key: the warehouse settles that key first, so the stock is released
	// if it was reserved and can never be if it was not (then the release
	// does nothing and its ReleaseID is "").
	ReserveKey string `msgpack:"reserve_key,omitempty" json:"reserve_key,omitempty"`
	Items      []Item `msgpack:"items" json:"items"`
	// Simulate selects a simulated fault; see the package documentation.
	Simulate string `msgpack:"simulate,omitempty" json:"simulate,omitempty"`
}

// ReleaseResult is the output of Release.
type ReleaseResult struct {
	ReleaseID string `msgpack:"release_id" json:"release_id"`
}

// Service returns the inventory participant on the ledger sys with the
// global faults f.
func Service(sys *sim.System, f sim.Faults) participants.Service {
	p := &inventory{sys: sys, faults: f}
	return participants.Service{
		Name: Name,
		Handlers: map[string]participants.Handler{
			Reserve.Action: participants.HandlerFunc(p.reserve),
			Release.Action: participants.HandlerFunc(p.release),
		},
	}
}

type inventory struct {
	sys    *sim.System
	faults sim.Faults
}

var errWarehouse = errors.New("warehouse system unavailable")

func (p *inventory) reserve(ctx context.Context, cmd *participants.Command) (any, error) {
	var req ReserveRequest
	if err := cmd.Decode(&req); err != nil {
		return nil, participants.NonRetryable("bad_request", err)
	}
	if err := p.faults.Wait(ctx); err != nil {
		return nil, err
	}
	switch {
	case req.Simulate == "out_of_stock" || sim.Hit(p.faults.OutOfStockRate, req.OrderID, Name):
		return nil, participants.NonRetryable("out_of_stock", errors.New("items out of stock"))
	case req.Simulate == "timeout":
		<-ctx.Done()
		return nil, ctx.Err()
	case sim.Failing(req.Simulate, cmd.Attempt):
		return nil, participants.Retryable("gateway_error", errWarehouse)
	}
	e, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: cmd.IdempotencyKey,
		OrderID:        req.OrderID,
		Kind:           "reserve",
		Items:          req.Items,
		Ref:            sim.Ref("rsv", cmd.IdempotencyKey),
	})
	if err != nil {
		return nil, err
	}
	if req.Simulate == "timeout_after_effect" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return Reservation{ReservationID: e.Ref}, nil
}

func (p *inventory) release(ctx context.Context, cmd *participants.Command) (any, error) {
	var req ReleaseRequest
	if err := cmd.Decode(&req); err != nil {
		return nil, participants.NonRetryable("bad_request", err)
	}
	if err := p.faults.Wait(ctx); err != nil {
		return nil, err
	}
	if sim.Failing(req.Simulate, cmd.Attempt) {
		return nil, participants.Retryable("gateway_error", errWarehouse)
	}
	if req.ReservationID == "" && req.ReserveKey != "" {
		rsv, made, err := p.sys.SettleFor(ctx, cmd.WorkflowID, req.ReserveKey, req.OrderID, "reserve")
		if err != nil || !made {
			return ReleaseResult{}, err
		}
		req.ReservationID, req.Items = rsv.Ref, rsv.Items
	}
	e, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: cmd.IdempotencyKey,
		OrderID:        req.OrderID,
		Kind:           "release",
		Items:          req.Items,
		Ref:            sim.Ref("rel", cmd.IdempotencyKey),
	})
	if err != nil {
		return nil, err
	}
	return ReleaseResult{ReleaseID: e.Ref}, nil
}
