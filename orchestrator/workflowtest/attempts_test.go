package workflowtest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
)

var flakyCharge = workflow.Activity{Service: "gateway", Action: "charge", Options: workflow.StepOptions{
	Retry: workflow.RetryPolicy{InitialInterval: 20 * time.Millisecond, BackoffCoefficient: 1, MaxAttempts: 10},
}}

// A step being retried shows its last failed attempt while the workflow
// waits on it: the attempt's number, its error and when the next attempt
// is due. Once it succeeds, its result says how many attempts it took.
// (Before, a waiting step showed only its name, and the result "ok".)
func TestShowAttemptsOfAWaitingStep(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "pay", func(ctx workflow.Context, in string) (string, error) {
		return workflow.Execute[string](ctx, flakyCharge, in)
	})
	release := make(chan struct{})
	env.Stub(flakyCharge, func(ctx context.Context, cmd *participants.Command) (any, error) {
		switch {
		case cmd.Attempt < 3:
			return nil, participants.Retryable("unavailable", fmt.Errorf("gateway down (attempt %d)", cmd.Attempt))
		case cmd.Attempt == 3:
			return nil, participants.RetryAfter(2*time.Second, participants.Retryable("rate_limited", errors.New("slow down")))
		}
		select {
		case <-release:
			return "ch-1", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	env.Run()
	env.Start("pay", "pay-1", "ada")

	d := env.WaitFor("pay-1", func(d *orchestrator.Description) bool {
		return len(d.Steps) == 1 && d.Steps[0].FailedAttempts == 3
	})
	s := d.Steps[0]
	if s.Step != "gateway.charge" || s.CommandID != 1 || s.SentAt.IsZero() ||
		s.LastErrorKind != "rate_limited" || !strings.Contains(s.LastError, "slow down") ||
		s.NextRetry.Sub(s.LastFailedAt) != 2*time.Second || s.LastFailedAt.Before(s.SentAt) {
		t.Fatalf("waiting step: %+v", s)
	}
	close(release)
	d = env.Wait("pay-1")
	var attempts int
	for _, e := range d.History {
		if e.Type == string(schema.KindResult) {
			attempts = e.Attempts
		}
	}
	if d.Status != schema.StatusCompleted || attempts != 4 || len(d.Steps) != 0 {
		t.Fatalf("status %s, result after %d attempts, steps %+v; want completed after 4", d.Status, attempts, d.Steps)
	}
}
