package participants

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
)

func TestClassify(t *testing.T) {
	base := errors.New("base")
	cases := []struct {
		name     string
		err      error
		timedOut bool
		want     classification
	}{
		{"plain", base, false, classification{kind: KindError}},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), false, classification{kind: KindTimeout}},
		{"timed out", base, true, classification{kind: KindTimeout}},
		{"non-retryable", NonRetryable("declined", base), false, classification{kind: "declined", final: true}},
		{"non-retryable nil", NonRetryable("declined", nil), false, classification{kind: "declined", final: true}},
		{"wrapped non-retryable", fmt.Errorf("x: %w", NonRetryable("declined", base)), false, classification{kind: "declined", final: true}},
		{"retryable", Retryable("gateway_error", base), false, classification{kind: "gateway_error"}},
		{"kind wins over timeout", Retryable("gateway_error", context.DeadlineExceeded), true, classification{kind: "gateway_error"}},
		{"retry after", RetryAfter(time.Second, base), false, classification{kind: KindError, after: time.Second}},
		{"retry after kind", RetryAfter(time.Second, Retryable("busy", base)), false, classification{kind: "busy", after: time.Second}},
		{"retry after final", RetryAfter(time.Second, NonRetryable("gone", nil)), false, classification{kind: "gone", final: true, after: time.Second}},
		{"an error that names its kind", fmt.Errorf("apply: %w", kindedErr{"blocked", true}), false, classification{kind: "blocked", final: true}},
		{"an error that names its kind, retryable", kindedErr{"busy", false}, true, classification{kind: "busy"}},
		{"a constructor wins over a named kind", Retryable("gateway_error", kindedErr{"blocked", true}), false, classification{kind: "gateway_error"}},
	}
	for _, c := range cases {
		if got := classify(c.err, c.timedOut); got != c.want {
			t.Errorf("%s: classify = %+v, want %+v", c.name, got, c.want)
		}
	}
	if got := NonRetryable("declined", base).Error(); got != "base" {
		t.Errorf("Error() = %q", got)
	}
	if got := NonRetryable("declined", nil).Error(); got != "declined" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(Retryable("k", base), base) {
		t.Error("Retryable does not unwrap")
	}
	if !errors.Is(fmt.Errorf("x: %w", ErrCrash), ErrCrash) {
		t.Error("wrapped ErrCrash not recognised")
	}
}

// kindedErr is an error of another library that names its kind and
// finality.
type kindedErr struct {
	kind  string
	final bool
}

func (e kindedErr) Error() string               { return e.kind }
func (e kindedErr) FailureKind() (string, bool) { return e.kind, e.final }

// TestLibraryKindsAreUnknownOutcomes: every kind the library gives a
// failure its handler did not name is an unknown outcome to a workflow
// (workflow.UnknownOutcome), so a saga settles such a step with its
// participant; a kind a handler names is not.
func TestLibraryKindsAreUnknownOutcomes(t *testing.T) {
	for _, kind := range []string{KindTimeout, KindError, KindPanic, KindUndeliverable, KindInvalidOutput} {
		if _, ok := workflow.UnknownOutcome(&workflow.StepError{Kind: kind, Key: "o-1.1"}); !ok {
			t.Errorf("%s: a known outcome to workflows", kind)
		}
	}
	for _, kind := range []string{KindCancelled, KindUnknownCommand, KindInvalidCommand, "declined"} {
		if _, ok := workflow.UnknownOutcome(&workflow.StepError{Kind: kind, Key: "o-1.1"}); ok {
			t.Errorf("%s: an unknown outcome to workflows", kind)
		}
	}
}
