package workflowtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Forged start events: anyone allowed to publish wf.*.start (the operator
// and reconcile roles) may claim a parent, a run or a signal. None of
// these claims is believed: the start is parked, nothing is decided from
// it.

// publishForged publishes start ev as it is, on the start subject of
// history hid, as a role allowed wf.*.start may.
func publishForged(t *testing.T, env *workflowtest.Env, hid string, ev *schema.WorkflowStarted) {
	t.Helper()
	m, err := streams.NewMsg(streams.StartSubject(hid), ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.JS().PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("publish forged start of %s: %v", hid, err)
	}
}

func raw(t *testing.T, v any) schema.Raw {
	t.Helper()
	r, err := schema.EncodeRaw(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func blocked(d *orchestrator.Description) bool { return d.Status == schema.StatusBlocked }

// echoAfterGo waits for signal "go", then returns its input.
func echoAfterGo(ctx workflow.Context, in string) (string, error) {
	if _, err := workflow.WaitSignal[string](ctx, "go"); err != nil {
		return "", err
	}
	return in, nil
}

// A start naming a parent that never started it is parked: its end never
// reaches that parent, whose own child still resolves its future.
func TestForgedParentIsNotTold(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "parent", func(ctx workflow.Context, _ struct{}) (string, error) {
		return workflow.ExecuteChild[string](ctx, workflow.ChildOptions{Type: "echo"}, "real")
	})
	workflow.Register(env.Registry(), "echo", echoAfterGo)
	env.Run()
	env.Start("parent", "px", struct{}{})
	env.WaitFor("px", func(d *orchestrator.Description) bool { return len(d.Children) == 1 })
	publishForged(t, env, "evil", &schema.WorkflowStarted{WorkflowID: "evil", Type: "echo",
		Input: raw(t, "forged"), Parent: &schema.ChildOf{WorkflowID: "px", Child: 1}})
	d := env.WaitFor("evil", blocked)
	if !strings.Contains(d.Reason, "has not started it") {
		t.Fatalf("evil parked for %q", d.Reason)
	}
	env.Signal("evil", "go", "now")
	// The parent is told of its own child only.
	env.Signal(streams.ChildID("px", 1), "go", "now")
	if d := env.Wait("px"); d.Status != schema.StatusCompleted {
		t.Fatalf("parent %s (%s)", d.Status, d.Error)
	}
	var out string
	if err := env.Output("px", &out); err != nil || out != "real" {
		t.Fatalf("parent returned %q, %v: want its child's \"real\"", out, err)
	}
	if d, _ := env.Describe("evil"); d.Status != schema.StatusBlocked {
		t.Fatalf("evil %s: want still parked", d.Status)
	}
}

// A start pre-published on a child's ID, claiming to be that child with
// another input, is not taken for the child: the parent's future fails
// already_started, and the forged start is never run.
func TestPrePublishedChildStartFailsTheChild(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "parent", func(ctx workflow.Context, _ struct{}) (string, error) {
		if _, err := workflow.WaitSignal[string](ctx, "go"); err != nil {
			return "", err
		}
		out, err := workflow.ExecuteChild[string](ctx, workflow.ChildOptions{Type: "echo-now", ID: "kid-2"}, "real")
		var ce *workflow.ChildError
		if errors.As(err, &ce) {
			return "child failed: " + ce.Kind, nil
		}
		return out, err
	})
	workflow.Register(env.Registry(), "echo-now", func(ctx workflow.Context, in string) (string, error) { return in, nil })
	env.Run()
	env.Start("parent", "p2", struct{}{})
	publishForged(t, env, "kid-2", &schema.WorkflowStarted{WorkflowID: "kid-2", Type: "echo-now",
		Input: raw(t, "forged"), Parent: &schema.ChildOf{WorkflowID: "p2", Child: 1}})
	env.WaitFor("kid-2", blocked)
	env.Signal("p2", "go", "now")
	if d := env.Wait("p2"); d.Status != schema.StatusCompleted {
		t.Fatalf("parent %s (%s)", d.Status, d.Error)
	}
	var out string
	if err := env.Output("p2", &out); err != nil || out != "child failed: already_started" {
		t.Fatalf("parent returned %q, %v: want the child failed already_started", out, err)
	}
	if d, _ := env.Describe("kid-2"); d.Status != schema.StatusBlocked {
		t.Fatalf("kid-2 %s: want still parked", d.Status)
	}
}

// A start pre-published on the next run's ID is not that run: the run is
// parked and its forged input never runs, before and after the run before
// it continues as new.
func TestForgedNextRunIsParked(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "loop", func(ctx workflow.Context, n int) (int, error) {
		if n > 0 {
			return n, nil
		}
		if _, err := workflow.WaitSignal[string](ctx, "next"); err != nil {
			return 0, err
		}
		return 0, workflow.ContinueAsNew(ctx, 1)
	})
	env.Run()
	env.Start("loop", "c-1", 0)
	next := streams.RunID("c-1", 2)
	publishForged(t, env, next, &schema.WorkflowStarted{WorkflowID: "c-1", Type: "loop", Input: raw(t, 100), Run: 2})
	d := env.WaitFor(next, blocked)
	if !strings.Contains(d.Reason, "did not end continued-as-new") {
		t.Fatalf("run 2 parked for %q", d.Reason)
	}
	env.Signal("c-1", "next", "now")
	env.WaitFor("c-1", func(d *orchestrator.Description) bool { return len(d.Runs) == 2 })
	run1, err := env.DescribeRun("c-1", 1)
	if err != nil || run1.Status != schema.StatusContinuedAsNew {
		t.Fatalf("run 1: %v, %v", run1, err)
	}
	d, err = env.DescribeRun("c-1", 2)
	if err != nil || d.Status != schema.StatusBlocked {
		t.Fatalf("run 2: %+v, %v: want parked", d, err)
	}
}

// The signal of a signal-with-start goes through the signal rules of its
// workflow type as a signal through the router would: one they refuse
// parks the workflow before it runs.
func TestSignalWithStartChecksTheSignalRules(t *testing.T) {
	env := workflowtest.New(t)
	env.CheckSignals(orchestrator.SignalRule{WorkflowType: "settle", Signal: "settled",
		Check: func(h orchestrator.History, payload schema.Raw) (schema.Raw, error) {
			if len(h.Results("payment", "charge")) == 0 {
				return nil, errors.New("no charge recorded")
			}
			return payload, nil
		}})
	workflow.Register(env.Registry(), "settle", func(ctx workflow.Context, _ string) (string, error) {
		if _, ok := workflow.TryReceiveSignal(ctx, "settled"); ok {
			return "settled", nil
		}
		return workflow.WaitSignal[string](ctx, "never")
	})
	env.Run()
	started, _, err := orchestrator.SignalWithStart(context.Background(), env.JS(), "s-1", "settle", "in", "settled", "paid")
	if err != nil || !started {
		t.Fatalf("started %v, %v", started, err)
	}
	d := env.WaitFor("s-1", blocked)
	if !strings.Contains(d.Reason, "no charge recorded") {
		t.Fatalf("parked for %q", d.Reason)
	}
	// A signal no rule covers still comes with its start.
	started, _, err = orchestrator.SignalWithStart(context.Background(), env.JS(), "s-2", "settle", "in", "other", "x")
	if err != nil || !started {
		t.Fatalf("started %v, %v", started, err)
	}
	env.WaitFor("s-2", func(d *orchestrator.Description) bool { return d.Status == schema.StatusRunning && len(d.History) > 0 })
}
