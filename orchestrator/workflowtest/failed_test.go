package workflowtest_test

import (
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/schema"
)

// A workflow that returns an application error ends failed, on the
// done.failed subject, with the error's kind in the terminal event.
func TestApplicationErrorEndsFailed(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "refuse", func(ctx workflow.Context, _ int) (string, error) {
		return "", workflow.NewApplicationError("invalid_order", "no items", true)
	})
	env.Run()
	env.Start("refuse", "r-1", 0)
	d := env.Wait("r-1")
	if d.Status != schema.StatusFailed {
		t.Fatalf("status %s, want failed", d.Status)
	}
	last := d.History[len(d.History)-1]
	if !strings.HasSuffix(last.Subject, ".done.failed") || !strings.Contains(string(last.Data), `"error_kind":"invalid_order"`) ||
		!strings.Contains(string(last.Data), `"non_retryable":true`) {
		t.Fatalf("terminal event %s: %s", last.Subject, last.Data)
	}
}
