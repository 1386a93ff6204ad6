package workflow

import "testing"

// TestStepErrorSaysAttemptsOnce: the error of a step says how many attempts
// were made once, in English, whether or not the participant's message
// already starts with the count.
func TestStepErrorSaysAttemptsOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  StepError
		want string
	}{
		{"gave up after its retry policy", StepError{Activity: "payment.refund", Kind: "gateway_error", Attempts: 5, Message: "after 5 attempts: payment gateway unavailable"},
			"payment.refund failed (gateway_error) after 5 attempts: payment gateway unavailable"},
		{"one attempt", StepError{Activity: "payment.charge", Kind: "declined", Attempts: 1, Message: "card declined"},
			"payment.charge failed (declined) after 1 attempt: card declined"},
		{"one attempt, counted by the participant", StepError{Activity: "inventory.reserve", Kind: "error", Attempts: 1, Message: "after 1 attempt: boom"},
			"inventory.reserve failed (error) after 1 attempt: boom"},
		{"non-retryable after retries", StepError{Activity: "shipping.create", Kind: "rejected", Attempts: 3, Message: "carrier rejected the shipment"},
			"shipping.create failed (rejected) after 3 attempts: carrier rejected the shipment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
