package fulfillment

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/participants/notification"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/shipping"
	"github.com/jetflow-io/jetflow/schema"
)

// WorkflowType is the registered name of the fulfillment workflow; it is
// recorded in every history it starts.
const WorkflowType = "order.fulfillment"

// Config tunes the workflow. Changing it does not break running workflows:
// options travel inside the commands already issued.
type Config struct {
	// Steps are the options of the forward steps. Default: 10s per attempt,
	// retry from 200ms doubling up to 5s, at most 5 attempts.
	Steps workflow.StepOptions
	// Compensation are the options of compensating steps. Default:
	// DefaultCompensation.
	Compensation workflow.StepOptions
	// PickupTimeout is how long to wait for carrier.picked_up after the
	// shipment is created before cancelling the order. Default 72h.
	PickupTimeout time.Duration
	// PaymentTimeout is how long to wait for payment.settled after a charge
	// answered "pending" before voiding it and cancelling. Default 48h.
	PaymentTimeout time.Duration
}

// LateSettlementType is the workflow that refunds a payment settled after
// its order was cancelled.
const LateSettlementType = "payment.late_settlement"

// DefaultSteps are the forward step options when Config.Steps is zero.
var DefaultSteps = workflow.StepOptions{
	StartToClose: 10 * time.Second,
	Retry: workflow.RetryPolicy{
		InitialInterval:    200 * time.Millisecond,
		BackoffCoefficient: 2,
		MaxInterval:        5 * time.Second,
		MaxAttempts:        5,
	},
}

// DefaultCompensation are the compensation options when Config.Compensation
// is zero: retry from 500ms doubling up to 10s, 8 attempts (about 35s), then
// the order goes to manual intervention.
var DefaultCompensation = workflow.StepOptions{
	StartToClose: 10 * time.Second,
	Retry: workflow.RetryPolicy{
		InitialInterval:    500 * time.Millisecond,
		BackoffCoefficient: 2,
		MaxInterval:        10 * time.Second,
		MaxAttempts:        8,
	},
}

// Receipt is the output of a completed order.
type Receipt struct {
	OrderID       string `json:"order_id" msgpack:"order_id"`
	ChargeID      string `json:"charge_id" msgpack:"charge_id"`
	ReservationID string `json:"reservation_id" msgpack:"reservation_id"`
	ShipmentID    string `json:"shipment_id" msgpack:"shipment_id"`
	Carrier       string `json:"carrier" msgpack:"carrier"`
}

// withDefaults fills what cfg leaves zero.
func (c Config) withDefaults() Config {
	c.Steps = DefaultSteps.Merge(c.Steps)
	c.Compensation = DefaultCompensation.Merge(c.Compensation)
	if c.PickupTimeout <= 0 {
		c.PickupTimeout = 72 * time.Hour
	}
	if c.PaymentTimeout <= 0 {
		c.PaymentTimeout = 48 * time.Hour
	}
	return c
}

// Register adds the workflow to reg under WorkflowType.
func Register(reg *workflow.Registry, cfg Config) {
	cfg = cfg.withDefaults()
	workflow.Register(reg, WorkflowType, cfg.Fulfill)
	workflow.Register(reg, LateSettlementType, cfg.RefundLateSettlement)
}

// LateSignals routes a payment.settled that arrives after an order finished
// to LateSettlementType.
func LateSignals() []orchestrator.LateSignalRoute {
	return []orchestrator.LateSignalRoute{{WorkflowType: WorkflowType, Signal: payment.SettledSignal, Start: LateSettlementType}}
}

// SignalRules are the checks the signals of this workflow pass before they
// are recorded or routed late: a payment.settled must name the order's own
// pending charge, exactly as the charge recorded it, and only once; a
// second carrier.picked_up is refused.
func SignalRules() []orchestrator.SignalRule {
	return []orchestrator.SignalRule{
		{WorkflowType: WorkflowType, Signal: payment.SettledSignal, Check: CheckSettlement, Once: true},
		{WorkflowType: WorkflowType, Signal: shipping.PickedUpSignal, Once: true},
	}
}

// CheckSettlement admits a payment.settled signal only if it settles the
// workflow's own pending charge: the recorded result of its payment.charge
// has status pending, and the signal's charge_id, amount_cents and
// currency equal the recorded ones (an order_id, if given, must be the
// workflow's). The payload it returns is built from the recorded charge,
// not from the body, so a refund of it refunds exactly what was charged.
func CheckSettlement(h orchestrator.History, body schema.Raw) (schema.Raw, error) {
	var s payment.Settlement
	if len(body) == 0 {
		return nil, errors.New("empty body: want order_id, charge_id, amount_cents and currency")
	}
	if err := schema.DecodeRaw(body, &s); err != nil {
		return nil, fmt.Errorf("unreadable settlement: %w", err)
	}
	charges := h.Results(payment.Charge.Service, payment.Charge.Action)
	if len(charges) == 0 {
		return nil, fmt.Errorf("order %s has no recorded charge", h.WorkflowID)
	}
	res := charges[0].Result
	if res.Error != nil {
		return nil, fmt.Errorf("order %s's charge failed (%s): nothing to settle", h.WorkflowID, res.Error.Message)
	}
	var c payment.ChargeResult
	if err := schema.DecodeRaw(res.Output, &c); err != nil {
		return nil, fmt.Errorf("order %s's recorded charge is unreadable: %w", h.WorkflowID, err)
	}
	switch {
	case c.Status != payment.StatusPending:
		return nil, fmt.Errorf("charge %s of order %s is %s, not pending", c.ChargeID, h.WorkflowID, c.Status)
	case s.OrderID != "" && s.OrderID != h.WorkflowID:
		return nil, fmt.Errorf("order_id %q differs from the workflow's %q", s.OrderID, h.WorkflowID)
	case s.ChargeID != c.ChargeID:
		return nil, fmt.Errorf("charge_id %q differs from the recorded pending charge %q", s.ChargeID, c.ChargeID)
	case s.AmountCents != c.AmountCents:
		return nil, fmt.Errorf("amount_cents %d differs from the recorded pending charge's %d", s.AmountCents, c.AmountCents)
	case s.Currency != c.Currency:
		return nil, fmt.Errorf("currency %q differs from the recorded pending charge's %q", s.Currency, c.Currency)
	}
	return schema.EncodeRaw(payment.Settlement{OrderID: h.WorkflowID, ChargeID: c.ChargeID, AmountCents: c.AmountCents, Currency: c.Currency})
}

// Intake returns the orchestrator intake that starts this workflow for every
// valid order.created message.
func Intake() *orchestrator.Intake {
	return &orchestrator.Intake{
		WorkflowType: WorkflowType,
		Decode: func(data []byte, h nats.Header) (string, any, error) {
			o, err := ParseOrder(data, h)
			return o.OrderID, o, err
		},
	}
}

// Fulfill is the workflow: charge → reserve → ship → notify, with the
// completed steps compensated in reverse when one fails.
func (c Config) Fulfill(ctx workflow.Context, o Order) (Receipt, error) {
	c = c.withDefaults() // also when called from another workflow
	step := func(a workflow.Activity) workflow.Activity { return a.WithOptions(c.Steps) }
	saga := workflow.NewSaga(ctx, c.Compensation)
	r := Receipt{OrderID: o.OrderID}

	charge, err := workflow.Execute[payment.ChargeResult](ctx, step(payment.Charge), payment.ChargeRequest{
		OrderID: o.OrderID, CustomerID: o.CustomerID, AmountCents: o.AmountCents, Currency: o.Currency,
		Simulate: o.Simulate["payment"],
	})
	if err != nil {
		settleUnknown(ctx, saga, err, payment.Refund, func(key string) any {
			return payment.RefundRequest{OrderID: o.OrderID, ChargeKey: key, Simulate: o.Simulate["refund"]}
		})
		return r, c.fail(ctx, o, saga, err, false)
	}
	r.ChargeID = charge.ChargeID
	if charge.Status == payment.StatusPending {
		if err := c.awaitSettlement(ctx, o, charge); err != nil {
			return r, c.fail(ctx, o, saga, err, true)
		}
	}
	saga.AddCompensation(payment.Refund, payment.RefundRequest{
		OrderID: o.OrderID, ChargeID: charge.ChargeID, AmountCents: charge.AmountCents, Currency: charge.Currency,
		Simulate: o.Simulate["refund"],
	})

	res, err := workflow.Execute[inventory.Reservation](ctx, step(inventory.Reserve), inventory.ReserveRequest{
		OrderID: o.OrderID, Items: o.Items, Simulate: o.Simulate["inventory"],
	})
	if err != nil {
		settleUnknown(ctx, saga, err, inventory.Release, func(key string) any {
			return inventory.ReleaseRequest{OrderID: o.OrderID, ReserveKey: key, Simulate: o.Simulate["release"]}
		})
		return r, c.fail(ctx, o, saga, err, false)
	}
	r.ReservationID = res.ReservationID
	saga.AddCompensation(inventory.Release, inventory.ReleaseRequest{
		OrderID: o.OrderID, ReservationID: res.ReservationID, Items: o.Items, Simulate: o.Simulate["release"],
	})

	ship, err := workflow.Execute[shipping.Shipment](ctx, step(shipping.CreateShipment), shipping.ShipmentRequest{
		OrderID: o.OrderID, CustomerID: o.CustomerID, Items: o.Items, Simulate: o.Simulate["shipping"],
		Pickup: o.Simulate["pickup"],
	})
	if err != nil {
		settleUnknown(ctx, saga, err, shipping.CancelShipment, func(key string) any {
			return shipping.CancelRequest{OrderID: o.OrderID, ShipmentKey: key, Simulate: o.Simulate["cancel"]}
		})
		return r, c.fail(ctx, o, saga, err, false)
	}
	r.ShipmentID, r.Carrier = ship.ShipmentID, ship.Carrier
	saga.AddCompensation(shipping.CancelShipment, shipping.CancelRequest{
		OrderID: o.OrderID, ShipmentID: ship.ShipmentID, Simulate: o.Simulate["cancel"],
	})

	// The carrier picks the parcel up, or the deadline passes. (A carrier
	// that took it at creation sends no signal.) A cancel while it waits
	// is compensated like a missed pickup.
	if !ship.PickedUp {
		picked, err := signalBefore(ctx, shipping.PickedUpSignal, c.PickupTimeout)
		if err != nil {
			return r, c.fail(ctx, o, saga, err, false)
		}
		if !picked {
			return r, c.fail(ctx, o, saga, fmt.Errorf("carrier did not pick up within %s", c.PickupTimeout), false)
		}
	}

	c.notify(ctx, o, "order_shipped")
	return r, nil
}

// SettleTimedOutSteps is the version marker under which a step that failed
// with its outcome unknown (by timeout, most often: workflow.UnknownOutcome)
// is compensated as possibly done: histories written before it end without
// that compensation and keep replaying so.
const SettleTimedOutSteps = "fulfillment.settle-timed-out-steps"

// settleUnknown adds to saga, for a step that failed with its effect
// unknown (a timeout: the system may have done it and its answer came too
// late), the compensation act that names the step by its idempotency key:
// the participant undoes the effect if it was made and makes sure it never
// is if it was not. A step that failed otherwise did nothing and needs
// none.
func settleUnknown(ctx workflow.Context, saga *workflow.Saga, err error, act workflow.Activity, in func(key string) any) {
	key, ok := workflow.UnknownOutcome(err)
	if !ok || workflow.GetVersion(ctx, SettleTimedOutSteps, workflow.DefaultVersion, 1) < 1 {
		return
	}
	saga.AddCompensation(act, in(key))
}

// signalBefore waits for signal name or for d to pass, whichever comes first
// in the history, and reports whether the signal did. The deadline timer is
// cancelled when the signal wins, and with the workflow (then the error is
// the cancellation).
func signalBefore(ctx workflow.Context, name string, d time.Duration) (bool, error) {
	deadline := workflow.NewTimer(ctx, d)
	received := false
	err := workflow.NewSelector(ctx).
		AddSignal(ctx, name, func(workflow.Payload) {
			received = true
			deadline.Cancel(ctx)
		}).
		AddFuture(deadline, func() {}).
		Select(ctx)
	return received, err
}

// awaitSettlement waits for the gateway's payment.settled callback. At the
// deadline it voids the authorization and returns an error.
// A cancel while it waits voids the authorization too, and returns the
// cancellation.
func (c Config) awaitSettlement(ctx workflow.Context, o Order, charge payment.ChargeResult) error {
	settled, cause := signalBefore(ctx, payment.SettledSignal, c.PaymentTimeout)
	if settled {
		return nil
	}
	if cause == nil {
		cause = fmt.Errorf("payment not settled within %s", c.PaymentTimeout)
	}
	if _, err := workflow.Execute[payment.VoidResult](workflow.NewDisconnectedContext(ctx), payment.Void.WithOptions(c.Compensation), payment.VoidRequest{
		OrderID: o.OrderID, ChargeID: charge.ChargeID,
	}); err != nil {
		return &workflow.ManualError{Reason: "voiding an unsettled payment failed", Cause: err}
	}
	return cause
}

// RefundLateSettlement refunds a payment the gateway settled after its order
// had finished without completing: money is never kept for an order that
// was not fulfilled. Its payload is the one CheckSettlement built from the
// order's recorded charge, and the engine starts one such workflow per
// charge, so it refunds exactly the recorded charge, once.
func (c Config) RefundLateSettlement(ctx workflow.Context, late orchestrator.LateSignal) (string, error) {
	if late.Status == schema.StatusCompleted {
		return "order completed: settlement kept", nil
	}
	var s payment.Settlement
	if err := late.Decode(&s); err != nil || s.OrderID != late.WorkflowID {
		return "", &workflow.ManualError{Reason: fmt.Sprintf("settlement for order %q is not one of order %s's charges", s.OrderID, late.WorkflowID), Cause: err}
	}
	if err := c.refundSettlement(ctx, workflow.NewPayload(late.Payload)); err != nil {
		return "", err
	}
	return "late settlement refunded", nil
}

// fail compensates, tells the customer, and returns the final error: the
// cause when every compensation succeeded (a cancellation ends the order
// cancelled), a ManualError otherwise. It runs on a disconnected context,
// so a cancelled order is compensated all the same.
func (c Config) fail(ctx workflow.Context, o Order, saga *workflow.Saga, cause error, unsettled bool) error {
	ctx = workflow.NewDisconnectedContext(ctx)
	workflow.GetLogger(ctx).Info("order failed, compensating", "order_id", o.OrderID, "cause", cause)
	err := saga.Compensate(cause)
	if unsettled {
		// A settlement the gateway sent after the void is refunded here;
		// one that arrives after the end goes to RefundLateSettlement.
		if p, ok := workflow.TryReceiveSignal(ctx, payment.SettledSignal); ok {
			if rerr := c.refundSettlement(ctx, p); rerr != nil {
				err = rerr
			}
		}
	}
	c.notify(ctx, o, "order_cancelled")
	return err
}

// refundSettlement refunds the settlement in p.
func (c Config) refundSettlement(ctx workflow.Context, p workflow.Payload) error {
	var s payment.Settlement
	if err := p.Decode(&s); err != nil {
		return &workflow.ManualError{Reason: "unreadable settlement", Cause: err}
	}
	if _, err := workflow.Execute[payment.RefundResult](ctx, payment.Refund.WithOptions(c.Compensation), payment.RefundRequest{
		OrderID: s.OrderID, ChargeID: s.ChargeID, AmountCents: s.AmountCents, Currency: s.Currency,
	}); err != nil {
		return &workflow.ManualError{Reason: "refunding a settlement failed", Cause: err}
	}
	return nil
}

// notify is best effort: a lost e-mail does not undo a shipped order.
func (c Config) notify(ctx workflow.Context, o Order, template string) {
	_, err := workflow.Execute[notification.NotifyResult](ctx, notification.Notify.WithOptions(c.Steps), notification.NotifyRequest{
		OrderID: o.OrderID, CustomerID: o.CustomerID, Template: template, Simulate: o.Simulate["notification"],
	})
	if err != nil {
		workflow.GetLogger(ctx).Warn("notification failed", "order_id", o.OrderID, "err", err)
	}
}
