package streams

import "testing"

// TestReasonClass maps the engine's dead-letter reasons to their short
// classes, and anything else to "other".
func TestReasonClass(t *testing.T) {
	for _, tc := range []struct{ reason, want string }{
		{LastDeliveryReason(100), ReasonLastDelivery},
		{"undecodable history event: msgpack: invalid code", ReasonUndecodable},
		{`message kind "x", want "command"`, ReasonUndecodable},
		{"result for an unknown workflow: no workflow.started event", ReasonUnknownWorkflow},
		{"signal carrier.picked_up for unknown workflow o-1", ReasonUnknownWorkflow},
		{"signal carrier.picked_up for finished workflow o-1 (completed)", ReasonFinishedWorkflow},
		{`service payment has no handler for action "x"`, ReasonUnknownAction},
		{"order is 9000 bytes, the limit is 4096 (--max-order-size)", ReasonTooLarge},
		{"signal is 9000 bytes, the limit is 4096 (MaxInputSize)", ReasonTooLarge},
		{"workflow o-1 has 1000 signals waiting, the limit (--max-pending-signals)", ReasonSignalCap},
		{"conflicting duplicate: workflow o-1 was started by x with a different body", ReasonConflictingDuplicate},
		{"signal subject must be signal.<name>.<workflow id>", ReasonBadSubject},
		{"invalid order.created: order_id: empty", ReasonInvalid},
		{"something new", ReasonOther},
	} {
		if got := ReasonClass(tc.reason); got != tc.want {
			t.Errorf("ReasonClass(%q) = %q, want %q", tc.reason, got, tc.want)
		}
	}
}
