package fulfillment

import (
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/schema"
)

// history is an order's history holding one charge result.
func history(t *testing.T, c payment.ChargeResult) orchestrator.History {
	t.Helper()
	out, err := schema.EncodeRaw(c)
	if err != nil {
		t.Fatal(err)
	}
	return orchestrator.History{WorkflowID: "o-1", WorkflowType: WorkflowType, Status: schema.StatusRunning, Events: []workflow.Event{
		{Seq: 1, Value: &schema.WorkflowStarted{WorkflowID: "o-1", Type: WorkflowType}},
		{Seq: 3, Value: &schema.Result{WorkflowID: "o-1", CommandID: 1, Service: payment.Name, Action: payment.Charge.Action, Output: out}},
	}}
}

func TestCheckSettlement(t *testing.T) {
	pending := payment.ChargeResult{ChargeID: "ch-1", AmountCents: 500, Currency: "EUR", Status: payment.StatusPending}
	settled := pending
	settled.Status = payment.StatusSettled
	for _, tc := range []struct {
		name   string
		charge payment.ChargeResult
		body   payment.Settlement
		err    string
	}{
		{name: "the recorded pending charge", charge: pending, body: payment.Settlement{OrderID: "o-1", ChargeID: "ch-1", AmountCents: 500, Currency: "EUR"}},
		{name: "no order id in the body", charge: pending, body: payment.Settlement{ChargeID: "ch-1", AmountCents: 500, Currency: "EUR"}},
		{name: "another charge", charge: pending, body: payment.Settlement{ChargeID: "ch-2", AmountCents: 500, Currency: "EUR"}, err: `charge_id "ch-2" differs from the recorded pending charge "ch-1"`},
		{name: "another amount", charge: pending, body: payment.Settlement{ChargeID: "ch-1", AmountCents: 9999999, Currency: "EUR"}, err: "amount_cents 9999999 differs from the recorded pending charge's 500"},
		{name: "another currency", charge: pending, body: payment.Settlement{ChargeID: "ch-1", AmountCents: 500, Currency: "USD"}, err: `currency "USD" differs from the recorded pending charge's "EUR"`},
		{name: "another order", charge: pending, body: payment.Settlement{OrderID: "o-2", ChargeID: "ch-1", AmountCents: 500, Currency: "EUR"}, err: `order_id "o-2" differs from the workflow's "o-1"`},
		{name: "a charge that is not pending", charge: settled, body: payment.Settlement{ChargeID: "ch-1", AmountCents: 500, Currency: "EUR"}, err: "charge ch-1 of order o-1 is settled, not pending"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := schema.EncodeRaw(tc.body)
			out, err := CheckSettlement(history(t, tc.charge), body)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s payment.Settlement
			if err := schema.DecodeRaw(out, &s); err != nil || s != (payment.Settlement{OrderID: "o-1", ChargeID: "ch-1", AmountCents: 500, Currency: "EUR"}) {
				t.Fatalf("recorded payload %+v %v, want the recorded charge", s, err)
			}
		})
	}
	if _, err := CheckSettlement(orchestrator.History{WorkflowID: "o-9"}, []byte{0x80}); err == nil || !strings.Contains(err.Error(), "no recorded charge") {
		t.Fatalf("no charge: %v", err)
	}
}
