package workflow

import (
	"fmt"
	"testing"

	"github.com/jetflow-io/jetflow/schema"
)

func TestWorkflowEndStatus(t *testing.T) {
	for _, tc := range []struct {
		name         string
		flow         func(ctx Context, _ int) (string, error)
		status       schema.Status
		kind         string
		nonRetryable bool
	}{
		{"a failed step returned as is fails the workflow", func(ctx Context, _ int) (string, error) {
			return Execute[string](ctx, charge, 1)
		}, schema.StatusFailed, "declined", false},
		{"an application error carries its kind and flag", func(ctx Context, _ int) (string, error) {
			_, _ = Execute[string](ctx, charge, 1)
			return "", NewApplicationError("invalid_order", "no items", true)
		}, schema.StatusFailed, "invalid_order", true},
		{"a wrapped compensation result is compensated", func(ctx Context, _ int) (string, error) {
			_, err := Execute[string](ctx, charge, 1)
			return "", fmt.Errorf("order: %w", NewSaga(ctx).Compensate(err))
		}, schema.StatusCompensated, "declined", false},
		{"a manual error stays manual", func(ctx Context, _ int) (string, error) {
			_, _ = Execute[string](ctx, charge, 1)
			return "", &ManualError{Reason: "look"}
		}, schema.StatusManual, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry()
			Register(r, "f", tc.flow)
			fn, _ := r.Lookup("f")
			o := Replay(fn, "w1", hist(t, 0, cmd(1, charge), failed(1, "declined")), nil)
			f := o.Finished
			if f == nil {
				t.Fatalf("not finished: %+v", o)
			}
			if f.Status != tc.status || f.ErrorKind != tc.kind || f.NonRetryable != tc.nonRetryable {
				t.Fatalf("finished %s kind %q non-retryable %v (%s), want %s %q %v",
					f.Status, f.ErrorKind, f.NonRetryable, f.Error, tc.status, tc.kind, tc.nonRetryable)
			}
		})
	}
}
