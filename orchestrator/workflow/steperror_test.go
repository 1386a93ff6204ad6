package workflow

import (
	"errors"
	"fmt"
	"testing"
)

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

// TestUnknownOutcomeNamesItsKey: a step that gave up by timeout, on an
// error of no kind, a panic, every delivery crashing or an output it could
// not send has an unknown outcome, and it names the step's idempotency
// key; a refusal, a gateway error or a cancellation is a known outcome.
func TestUnknownOutcomeNamesItsKey(t *testing.T) {
	for _, kind := range []string{KindTimeout, "error", "panic", "undeliverable", "invalid_output"} {
		failed := &StepError{Activity: "payment.charge", Kind: kind, Attempts: 3, Key: "o-1.1"}
		if key, ok := UnknownOutcome(fmt.Errorf("charge: %w", failed)); !ok || key != "o-1.1" {
			t.Fatalf("step failed %s: %q %v, want its key", kind, key, ok)
		}
	}
	for _, err := range []error{
		&StepError{Activity: "payment.charge", Kind: "declined", Attempts: 1, Key: "o-1.1"},
		&StepError{Activity: "payment.charge", Kind: "gateway_error", Attempts: 5, Key: "o-1.1"},
		&StepError{Activity: "payment.charge", Kind: KindTimeout, Attempts: 3},
		&CanceledError{},
		&CanceledError{Identity: "alice"},
		nil,
	} {
		if key, ok := UnknownOutcome(err); ok {
			t.Errorf("%v: unknown outcome with key %q, want a known one", err, key)
		}
	}
}

// TestCancelledStepIsAnUnknownOutcome: a step cancelled while its command
// was out names its key, and its error is still the cancellation, a
// *CanceledError with the same who and why.
func TestCancelledStepIsAnUnknownOutcome(t *testing.T) {
	cause := &CanceledError{Identity: "alice", Reason: "customer asked"}
	named := *cause
	named.stepKey = "o-1.1"
	err := fmt.Errorf("charge: %w", &named)
	if key, ok := UnknownOutcome(err); !ok || key != "o-1.1" {
		t.Fatalf("cancelled step: %q %v, want its key", key, ok)
	}
	ce, ok := errors.Unwrap(err).(*CanceledError)
	if !errors.Is(err, ErrCanceled) || !ok || ce.Identity != "alice" || ce.Reason != "customer asked" || err.Error() != "charge: "+cause.Error() {
		t.Fatalf("cancelled step's error %v is not its cancellation", err)
	}
}
