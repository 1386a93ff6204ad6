// Package payment is the reference payment participant: it charges and
// refunds against the simulated payment gateway of package sim.
//
// Simulate strings (ChargeRequest.Simulate, RefundRequest.Simulate):
//
//   - charge "decline": declined at once (non-retryable "declined"), nothing
//     charged.
//   - charge "fail": the gateway fails every attempt (retryable
//     "gateway_error"), nothing charged.
//   - charge "timeout": the gateway never answers; the attempt runs out of
//     its StartToClose.
//   - charge "timeout_after_effect": the charge is made, then every
//     attempt hangs until its StartToClose passes: the step fails by
//     timeout with its money taken, as under an overloaded gateway.
//   - charge "crash_after_effect": the charge is made, then the first
//     attempt dies before answering; the redelivery answers with the same
//     charge.
//   - "fail_n:N": retryable "gateway_error" on attempts 1 to N, then success.
//   - "fail_always": retryable "gateway_error" on every attempt.
//   - charge "pending_then_settle:<duration>": the charge is only authorized
//     (ledger "authorize", no money moves) and answered with status
//     "pending"; the gateway settles it after the duration (ledger "settle")
//     and calls the workflow back with the signal payment.settled. The
//     settlement happens even if the authorization was voided meanwhile, as
//     a gateway racing its own callback does: the workflow must refund it.
package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/sim"
)

// Name is the service name of the payment participant.
const Name = "payment"

// Activities of the payment participant.
var (
	// Charge charges a customer: ChargeRequest in, ChargeResult out.
	Charge = workflow.Activity{Service: Name, Action: "charge"}
	// Refund refunds a charge: RefundRequest in, RefundResult out.
	Refund = workflow.Activity{Service: Name, Action: "refund"}
	// Void cancels a pending authorization: VoidRequest in, VoidResult out.
	Void = workflow.Activity{Service: Name, Action: "void"}
)

// SettledSignal is the name of the gateway's settlement callback.
const SettledSignal = "payment.settled"

// Charge statuses.
const (
	StatusSettled = "settled"
	StatusPending = "pending"
)

// Settlement is the payload of the payment.settled signal.
type Settlement struct {
	OrderID     string `msgpack:"order_id" json:"order_id"`
	ChargeID    string `msgpack:"charge_id" json:"charge_id"`
	AmountCents int64  `msgpack:"amount_cents" json:"amount_cents"`
	Currency    string `msgpack:"currency" json:"currency"`
}

// VoidRequest is the input of Void.
type VoidRequest struct {
	OrderID  string `msgpack:"order_id" json:"order_id"`
	ChargeID string `msgpack:"charge_id" json:"charge_id"`
}

// VoidResult is the output of Void.
type VoidResult struct {
	VoidID string `msgpack:"void_id" json:"void_id"`
}

// ChargeRequest is the input of Charge.
type ChargeRequest struct {
	OrderID     string `msgpack:"order_id" json:"order_id"`
	CustomerID  string `msgpack:"customer_id" json:"customer_id"`
	AmountCents int64  `msgpack:"amount_cents" json:"amount_cents"`
	Currency    string `msgpack:"currency" json:"currency"`
	// Simulate selects a simulated fault; see the package documentation.
	Simulate string `msgpack:"simulate,omitempty" json:"simulate,omitempty"`
}

// ChargeResult is the output of Charge.
type ChargeResult struct {
	ChargeID    string `msgpack:"charge_id" json:"charge_id"`
	AmountCents int64  `msgpack:"amount_cents" json:"amount_cents"`
	Currency    string `msgpack:"currency" json:"currency"`
	// Status is "settled", or "pending" until the payment.settled signal.
	Status string `msgpack:"status" json:"status"`
}

// RefundRequest is the input of Refund.
type RefundRequest struct {
	OrderID  string `msgpack:"order_id" json:"order_id"`
	ChargeID string `msgpack:"charge_id" json:"charge_id"`
	// ChargeKey, with no ChargeID, names a charge whose outcome is unknown
	// (its step failed by timeout) by its step's idempotency key
	// (workflow.StepError.Key): the gateway settles that key first, so the
	// charge is refunded if it was made and can never be made if it was
	// not (the refund then does nothing and its RefundID is "").
	ChargeKey   string `msgpack:"charge_key,omitempty" json:"charge_key,omitempty"`
	AmountCents int64  `msgpack:"amount_cents" json:"amount_cents"`
	Currency    string `msgpack:"currency" json:"currency"`
	// Simulate selects a simulated fault; see the package documentation.
	Simulate string `msgpack:"simulate,omitempty" json:"simulate,omitempty"`
}

// RefundResult is the output of Refund.
type RefundResult struct {
	RefundID string `msgpack:"refund_id" json:"refund_id"`
}

// Service returns the payment participant on the ledger sys with the
// global faults f.
func Service(sys *sim.System, f sim.Faults) participants.Service {
	p := &payment{sys: sys, faults: f}
	return participants.Service{
		Name: Name,
		Handlers: map[string]participants.Handler{
			Charge.Action: participants.HandlerFunc(p.charge),
			Refund.Action: participants.HandlerFunc(p.refund),
			Void.Action:   participants.HandlerFunc(p.void),
		},
		// The gateway's late settlement is a callback scheduled for later, sent as
		// a signal when due.
		Background: []func(context.Context, *slog.Logger) error{sys.ForwardCallbacks},
	}
}

type payment struct {
	sys    *sim.System
	faults sim.Faults
}

var errGateway = errors.New("payment gateway unavailable")

func (p *payment) charge(ctx context.Context, cmd *participants.Command) (any, error) {
	var req ChargeRequest
	if err := cmd.Decode(&req); err != nil {
		return nil, participants.NonRetryable("bad_request", err)
	}
	if err := p.faults.Wait(ctx); err != nil {
		return nil, err
	}
	switch {
	case req.Simulate == "decline" || sim.Hit(p.faults.PaymentDeclineRate, req.OrderID, Name):
		return nil, participants.NonRetryable("declined", errors.New("card declined"))
	case req.Simulate == "fail" || sim.Failing(req.Simulate, cmd.Attempt):
		return nil, participants.Retryable("gateway_error", errGateway)
	case req.Simulate == "timeout":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if d, ok := strings.CutPrefix(req.Simulate, "pending_then_settle:"); ok {
		return p.authorize(ctx, cmd, req, d)
	}
	e, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: cmd.IdempotencyKey,
		OrderID:        req.OrderID,
		Kind:           "charge",
		AmountCents:    req.AmountCents,
		Currency:       req.Currency,
		Ref:            sim.Ref("ch", cmd.IdempotencyKey),
	})
	if err != nil {
		return nil, err
	}
	if req.Simulate == "timeout_after_effect" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if req.Simulate == "crash_after_effect" && cmd.Attempt == 1 {
		return nil, participants.ErrCrash
	}
	return ChargeResult{ChargeID: e.Ref, AmountCents: e.AmountCents, Currency: e.Currency, Status: StatusSettled}, nil
}

// authorize answers "pending" and settles later: the settlement is recorded
// and its callback scheduled now, for the time it happens.
func (p *payment) authorize(ctx context.Context, cmd *participants.Command, req ChargeRequest, after string) (any, error) {
	delay, err := time.ParseDuration(after)
	if err != nil {
		return nil, participants.NonRetryable("bad_request", fmt.Errorf("pending_then_settle: %w", err))
	}
	e, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: cmd.IdempotencyKey,
		OrderID:        req.OrderID,
		Kind:           "authorize",
		AmountCents:    req.AmountCents,
		Currency:       req.Currency,
		Ref:            sim.Ref("ch", cmd.IdempotencyKey),
	})
	if err != nil {
		return nil, err
	}
	if _, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: cmd.IdempotencyKey + ".settle",
		OrderID:        req.OrderID,
		Kind:           "settle",
		AmountCents:    req.AmountCents,
		Currency:       req.Currency,
		Ref:            e.Ref,
	}); err != nil {
		return nil, err
	}
	settlement := Settlement{OrderID: req.OrderID, ChargeID: e.Ref, AmountCents: e.AmountCents, Currency: e.Currency}
	if err := p.sys.Callback(ctx, SettledSignal, cmd.WorkflowID, delay, settlement); err != nil {
		return nil, err
	}
	return ChargeResult{ChargeID: e.Ref, AmountCents: e.AmountCents, Currency: e.Currency, Status: StatusPending}, nil
}

func (p *payment) void(ctx context.Context, cmd *participants.Command) (any, error) {
	var req VoidRequest
	if err := cmd.Decode(&req); err != nil {
		return nil, participants.NonRetryable("bad_request", err)
	}
	if err := p.faults.Wait(ctx); err != nil {
		return nil, err
	}
	e, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: cmd.IdempotencyKey,
		OrderID:        req.OrderID,
		Kind:           "void",
		Ref:            sim.Ref("vo", cmd.IdempotencyKey),
	})
	if err != nil {
		return nil, err
	}
	return VoidResult{VoidID: e.Ref}, nil
}

func (p *payment) refund(ctx context.Context, cmd *participants.Command) (any, error) {
	var req RefundRequest
	if err := cmd.Decode(&req); err != nil {
		return nil, participants.NonRetryable("bad_request", err)
	}
	if err := p.faults.Wait(ctx); err != nil {
		return nil, err
	}
	if sim.Failing(req.Simulate, cmd.Attempt) {
		return nil, participants.Retryable("gateway_error", errGateway)
	}
	if req.ChargeID == "" && req.ChargeKey != "" {
		charge, made, err := p.sys.SettleFor(ctx, cmd.WorkflowID, req.ChargeKey, req.OrderID, "charge", "authorize")
		if err != nil || !made {
			return RefundResult{}, err
		}
		if charge.Kind == "authorize" {
			// An authorization moves money only once settled, and its
			// settlement is a second record the timed-out attempt may
			// not have reached: settle that key too. Settled: refunded
			// as a charge; not: it never will be, the authorization is
			// voided and nothing is refunded.
			settled, err := p.sys.Settle(ctx, req.ChargeKey+".settle", req.OrderID)
			if err != nil {
				return nil, err
			}
			if settled.Kind == sim.KindBlocked {
				_, _, err := p.sys.Apply(ctx, sim.Effect{
					IdempotencyKey: cmd.IdempotencyKey + ".void", OrderID: req.OrderID, Kind: "void",
					Ref: sim.Ref("vo", cmd.IdempotencyKey),
				})
				return RefundResult{}, err
			}
		}
		req.ChargeID, req.AmountCents, req.Currency = charge.Ref, charge.AmountCents, charge.Currency
	}
	key := refundKey(cmd.IdempotencyKey, req.ChargeID)
	e, _, err := p.sys.Apply(ctx, sim.Effect{
		IdempotencyKey: key,
		OrderID:        req.OrderID,
		Kind:           "refund",
		AmountCents:    req.AmountCents,
		Currency:       req.Currency,
		Ref:            sim.Ref("re", key),
	})
	if err != nil {
		return nil, err
	}
	return RefundResult{RefundID: e.Ref}, nil
}

// refundKey is the gateway's idempotency key of a refund: the charge's, so
// a charge is refunded at most once whatever command asks for it (an
// operator's retry sends a refund again under a new command, and the
// gateway answers it with the refund already made); the command's key for
// a refund that names no charge.
func refundKey(commandKey, chargeID string) string {
	if chargeID == "" {
		return commandKey
	}
	return "refund." + chargeID
}
