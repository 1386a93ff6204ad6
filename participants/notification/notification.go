// Package notification is the reference notification participant: it sends
// customer messages through the simulated mail service of package sim.
//
// Simulate strings (NotifyRequest.Simulate):
//
//   - "fail_n:N": retryable "gateway_error" on attempts 1 to N, then success.
//   - "fail_always": retryable "gateway_error" on every attempt.
package notification

import (
	"context"
	"errors"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/sim"
)

// Name is the service name of the notification participant.
const Name = "notification"

// Notify sends a message to a customer: NotifyRequest in, NotifyResult out.
var Notify = workflow.Activity{Service: Name, Action: "notify"}

// NotifyRequest is the input of Notify.
type NotifyRequest struct {
	OrderID    string `msgpack:"order_id" json:"order_id"`
	CustomerID string `msgpack:"customer_id" json:"customer_id"`
	// Template names the message, e.g. "order_confirmed".
	Template string `msgpack:"template" json:"template"`
	// Simulate selects a simulated fault; see the package documentation.
	Simulate string `msgpack:"simulate,omitempty" json:"simulate,omitempty"`
}

// NotifyResult is the output of Notify.
type NotifyResult struct {
	MessageID string `msgpack:"message_id" json:"message_id"`
}

// Service returns the notification participant on the ledger sys with the
// global faults f (only its Latency applies).
func Service(sys *sim.System, f sim.Faults) participants.Service {
	p := &notifier{sys: sys, faults: f}
	return participants.Service{
		Name: Name,
		Handlers: map[string]participants.Handler{
			Notify.Action: participants.HandlerFunc(p.notify),
		},
	}
}

type notifier struct {
	sys    *sim.System
	faults sim.Faults
}

var errMail = errors.New("mail service unavailable")

func (p *notifier) notify(ctx context.Context, cmd *participants.Command) (any, error) {
	var req NotifyRequest
	if err := cmd.Decode(&req); err != nil {
		return nil, participants.NonRetryable("bad_request", err)
	}
	if err := p.faults.Wait(ctx); err != nil {
		return nil, err
	}
	if sim.Failing(req.Simulate, cmd.Attempt) {
		return nil, participants.Retryable("gateway_error", errMail)
	}
	e, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: cmd.IdempotencyKey,
		OrderID:        req.OrderID,
		Kind:           "notify",
		Ref:            sim.Ref("msg", cmd.IdempotencyKey),
	})
	if err != nil {
		return nil, err
	}
	return NotifyResult{MessageID: e.Ref}, nil
}
