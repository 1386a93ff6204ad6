package workflowtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

var capture = workflow.Activity{Service: "gateway", Action: "capture"}

// Capture runs one step and ends; it never waits for a signal.
func Capture(ctx workflow.Context, _ string) (string, error) {
	return workflow.Execute[string](ctx, capture, "order")
}

// Settled handles a settlement that arrived too late for its workflow.
func Settled(ctx workflow.Context, in orchestrator.LateSignal) (string, error) {
	return in.WorkflowID + " " + string(in.Status), nil
}

// TestSignalsNeverReceivedAreRoutedOnce: the step's handler sends the
// workflow a signal just before it answers, so the signal is recorded
// before the workflow's last decision, between it and the end, or after
// the end. In every case the workflow never receives it, and its late
// route starts exactly once.
func TestSignalsNeverReceivedAreRoutedOnce(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "capture", Capture)
	workflow.Register(env.Registry(), "settled", Settled)
	env.RouteLateSignals(orchestrator.LateSignalRoute{WorkflowType: "capture", Signal: "settled", Start: "settled"})
	env.Stub(capture, func(ctx context.Context, cmd *participants.Command) (any, error) {
		env.Signal(cmd.WorkflowID, "settled", map[string]int{"amount": 100})
		return "captured", nil
	})
	env.Run()
	ids := []string{"cap-1", "cap-2", "cap-3", "cap-4", "cap-5", "cap-6", "cap-7", "cap-8"}
	for _, id := range ids {
		env.Start("capture", id, "x")
	}
	for _, id := range ids {
		if d := env.Wait(id); d.Status != schema.StatusCompleted {
			t.Fatalf("%s is %s", id, d.Status)
		}
	}
	var late []string
	natstest.Eventually(t, 30*time.Second, func() bool {
		list, err := orchestrator.List(context.Background(), env.JS(), schema.StatusCompleted)
		if err != nil {
			return false
		}
		late = late[:0]
		for _, s := range list {
			if strings.HasPrefix(s.ID, streams.ReservedIDPrefix+"late-") {
				late = append(late, s.ID)
			}
		}
		return len(late) >= len(ids)
	}, "late workflows for %d signals", len(ids))

	perOrigin := map[string]int{}
	for _, id := range late {
		var out string
		if err := env.Output(id, &out); err != nil {
			t.Fatalf("late workflow %s: %v", id, err)
		}
		origin, status, _ := strings.Cut(out, " ")
		if status != string(schema.StatusCompleted) || !strings.HasPrefix(id, streams.ReservedIDPrefix+"late-"+origin+"-") {
			t.Fatalf("late workflow %s: output %q", id, out)
		}
		perOrigin[origin]++
	}
	for _, id := range ids {
		if perOrigin[id] != 1 {
			t.Errorf("%s: %d late workflows, want 1 (all: %v)", id, perOrigin[id], late)
		}
	}
}

// TestTakenSubjectParksTheWorkflow: a message published by hand on the
// subject of a decision the workflow has not made yet takes that subject
// (the history keeps one message per subject). The workflow cannot record
// the decision; it is parked as blocked with the reason, not retried
// forever or dropped.
func TestTakenSubjectParksTheWorkflow(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "capture", Capture)
	env.Stub(capture, func(ctx context.Context, cmd *participants.Command) (any, error) { return "captured", nil })
	env.Run()
	if _, err := env.JS().Publish(context.Background(), streams.CommandSubject("squat-1", 1, capture.Service, capture.Action), []byte("squatter")); err != nil {
		t.Fatal(err)
	}
	env.Start("capture", "squat-1", "x")
	d := env.WaitFor("squat-1", func(d *orchestrator.Description) bool { return d.Status == schema.StatusBlocked })
	if !strings.Contains(d.Reason, "already holds a message") || !strings.Contains(d.Reason, "wf.squat-1.cmd.1.gateway.capture") {
		t.Fatalf("reason %q", d.Reason)
	}
}
