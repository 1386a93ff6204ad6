package workflowtest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Child workflows, signals between workflows and signal-with-start, with
// Temporal's child-workflow sample.

// ---- child-workflow ----

// SampleChildWorkflow (Temporal's child workflow): greets name.
func SampleChildWorkflow(ctx workflow.Context, name string) (string, error) {
	return "Hello " + name + "!", nil
}

// SampleParentWorkflow (Temporal's parent workflow): runs the child and
// returns its greeting.
func SampleParentWorkflow(ctx workflow.Context, _ struct{}) (string, error) {
	return workflow.ExecuteChild[string](ctx, workflow.ChildOptions{Type: "child"}, "World")
}

func TestSampleTemporalChildWorkflow(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "parent", SampleParentWorkflow)
	workflow.Register(env.Registry(), "child", SampleChildWorkflow)
	env.Run()
	env.Start("parent", "p-1", struct{}{})
	d := env.Wait("p-1")
	if d.Status != schema.StatusCompleted {
		t.Fatalf("parent %s (%s)", d.Status, d.Error)
	}
	var out string
	if err := env.Output("p-1", &out); err != nil || out != "Hello World!" {
		t.Fatalf("parent returned %q, %v: want \"Hello World!\"", out, err)
	}
	// The child is a workflow of its own, under an ID in the engine's
	// namespace; each names the other in show.
	childID := streams.ChildID("p-1", 1)
	if len(d.Children) != 1 || d.Children[0].WorkflowID != childID || d.Children[0].Status != schema.StatusCompleted {
		t.Fatalf("parent's children %+v: want %s completed", d.Children, childID)
	}
	c := env.Wait(childID)
	if c.Status != schema.StatusCompleted || c.Type != "child" || c.Parent == nil || c.Parent.WorkflowID != "p-1" {
		t.Fatalf("child %s %s, parent %+v: want a completed child of p-1", c.Type, c.Status, c.Parent)
	}
	// One start of the child, one end in the parent.
	if n := countEntries(d, string(schema.KindChildStarted)); n != 1 {
		t.Fatalf("%d child decisions in the parent", n)
	}
	if n := countEntries(d, string(schema.KindChildEnded)); n != 1 {
		t.Fatalf("%d child ends in the parent", n)
	}
}

func countEntries(d *orchestrator.Description, kind string) int {
	n := 0
	for _, e := range d.History {
		if e.Type == kind {
			n++
		}
	}
	return n
}

// A child's typed error reaches the parent: its kind, its non-retryable
// flag, its status.
func TestChildErrorReachesTheParentTyped(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "charge", func(ctx workflow.Context, _ struct{}) (string, error) {
		return "", workflow.NewApplicationError("declined", "card refused", true)
	})
	workflow.Register(env.Registry(), "order", func(ctx workflow.Context, _ struct{}) (string, error) {
		_, err := workflow.ExecuteChild[string](ctx, workflow.ChildOptions{Type: "charge", ID: "charge-o-1"}, struct{}{})
		var ce *workflow.ChildError
		var ae *workflow.ApplicationError
		if !errors.As(err, &ce) || !errors.As(err, &ae) {
			return "", err
		}
		return string(ce.Status) + " " + ae.Kind + " " + ae.Message + " " + boolWord(ae.NonRetryable), nil
	})
	env.Run()
	env.Start("order", "o-1", struct{}{})
	if d := env.Wait("o-1"); d.Status != schema.StatusCompleted {
		t.Fatalf("parent %s (%s)", d.Status, d.Error)
	}
	var out string
	if err := env.Output("o-1", &out); err != nil || out != "failed declined card refused non-retryable" {
		t.Fatalf("parent saw %q, %v", out, err)
	}
	if c := env.Wait("charge-o-1"); c.Status != schema.StatusFailed {
		t.Fatalf("child %s", c.Status)
	}
}

func boolWord(nonRetryable bool) string {
	if nonRetryable {
		return "non-retryable"
	}
	return "retryable"
}

// Each parent-close policy, applied when the parent ends while its child
// waits: by returning, or by an operator's terminate.
func TestParentClosePolicies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy workflow.ParentClosePolicy
		// terminate: the parent is terminated by an operator instead of
		// returning.
		terminate bool
		want      schema.Status
	}{
		{"default terminates the child", "", false, schema.StatusTerminated},
		{"request_cancel cancels the child", workflow.ParentCloseRequestCancel, false, schema.StatusCancelled},
		{"abandon leaves the child running", workflow.ParentCloseAbandon, false, schema.StatusCompleted},
		{"an operator's terminate of the parent applies it too", workflow.ParentCloseTerminate, true, schema.StatusTerminated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := workflowtest.New(t)
			workflow.Register(env.Registry(), "waiter", func(ctx workflow.Context, _ struct{}) (string, error) {
				return workflow.WaitSignal[string](ctx, "go")
			})
			workflow.Register(env.Registry(), "parent", func(ctx workflow.Context, _ struct{}) (string, error) {
				workflow.ExecuteChildAsync[string](ctx, workflow.ChildOptions{Type: "waiter", ID: "kid", ParentClosePolicy: tc.policy}, struct{}{})
				return workflow.WaitSignal[string](ctx, "end")
			})
			env.Run()
			env.Start("parent", "p-1", struct{}{})
			env.WaitFor("kid", func(d *orchestrator.Description) bool { return d.Status == schema.StatusRunning })
			if tc.terminate {
				if _, err := orchestrator.Terminate(context.Background(), env.JS(), "p-1", orchestrator.Request{Reason: "test"}); err != nil {
					t.Fatal(err)
				}
			} else {
				env.Signal("p-1", "end", "left")
			}
			p := env.Wait("p-1")
			if p.Status.Terminal() && tc.policy == workflow.ParentCloseAbandon {
				// Abandoned: the child still waits, and finishes on its own.
				env.Signal("kid", "go", "done")
			}
			c := env.Wait("kid")
			if c.Status != tc.want {
				t.Fatalf("parent %s, child %s (%s): want child %s", p.Status, c.Status, c.Error, tc.want)
			}
			if tc.want == schema.StatusCompleted {
				var out string
				if err := env.Output("kid", &out); err != nil || out != "done" {
					t.Fatalf("abandoned child returned %q, %v", out, err)
				}
			}
			// The child's end is recorded in the parent, ended or not.
			env.WaitFor("p-1", func(d *orchestrator.Description) bool {
				return len(d.Children) == 1 && d.Children[0].Status == tc.want
			})
		})
	}
}

// Cancelling the scope a child was started on cancels the child; the
// parent's future resolves with the child's cancelled end.
func TestCancelledScopeCancelsItsChild(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "waiter", func(ctx workflow.Context, _ struct{}) (string, error) {
		_, err := workflow.WaitSignal[string](ctx, "go")
		return "", err
	})
	workflow.Register(env.Registry(), "parent", func(ctx workflow.Context, _ struct{}) (string, error) {
		cctx, cancel := workflow.WithCancel(ctx)
		f := workflow.ExecuteChildAsync[string](cctx, workflow.ChildOptions{Type: "waiter", ID: "kid"}, struct{}{})
		if _, err := workflow.WaitSignal[string](ctx, "stop"); err != nil {
			return "", err
		}
		cancel()
		_, err := f.Get(ctx)
		var ce *workflow.ChildError
		if errors.As(err, &ce) && errors.Is(err, workflow.ErrCanceled) {
			return "child " + string(ce.Status), nil
		}
		return "", err
	})
	env.Run()
	env.Start("parent", "p-1", struct{}{})
	env.WaitFor("kid", func(d *orchestrator.Description) bool { return d.Status == schema.StatusRunning })
	env.Signal("p-1", "stop", "")
	if d := env.Wait("p-1"); d.Status != schema.StatusCompleted {
		t.Fatalf("parent %s (%s)", d.Status, d.Error)
	}
	var out string
	if err := env.Output("p-1", &out); err != nil || out != "child cancelled" {
		t.Fatalf("parent returned %q, %v", out, err)
	}
	c := env.Wait("kid")
	if c.Status != schema.StatusCancelled {
		t.Fatalf("child %s", c.Status)
	}
	for _, e := range c.History {
		if e.Type == string(schema.KindCancelRequested) && e.Operator != "workflow p-1" {
			t.Fatalf("the child's cancel request names %q: want the parent", e.Operator)
		}
	}
}

// ---- signals between workflows ----

func TestSignalExternalBetweenTwoWorkflows(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "receiver", func(ctx workflow.Context, _ struct{}) (string, error) {
		return workflow.WaitSignal[string](ctx, "ping")
	})
	workflow.Register(env.Registry(), "sender", func(ctx workflow.Context, target string) (string, error) {
		_, err := workflow.SignalExternal(ctx, target, "ping", "hello from "+workflow.WorkflowID(ctx)).Get(ctx)
		switch {
		case errors.Is(err, workflow.ErrExternalWorkflowNotFound):
			return "not found", nil
		case err != nil:
			return "", err
		}
		return "sent", nil
	})
	env.Run()
	env.Start("receiver", "r-1", struct{}{})
	env.WaitFor("r-1", func(d *orchestrator.Description) bool { return d.Status == schema.StatusRunning })
	env.Start("sender", "s-1", "r-1")
	env.Start("sender", "s-2", "nobody")
	for id, want := range map[string]string{"r-1": "hello from s-1", "s-1": "sent", "s-2": "not found"} {
		if d := env.Wait(id); d.Status != schema.StatusCompleted {
			t.Fatalf("%s %s (%s)", id, d.Status, d.Error)
		}
		var out string
		if err := env.Output(id, &out); err != nil || out != want {
			t.Fatalf("%s returned %q, %v: want %q", id, out, err, want)
		}
	}
	// The receiver recorded the signal once, through the router.
	if n := countEntries(env.Wait("r-1"), string(schema.KindSignal)); n != 1 {
		t.Fatalf("receiver recorded %d signals", n)
	}
}

// ---- signal-with-start ----

// The signal of a signal-with-start is there before anything else: the
// workflow finds it without waiting.
func TestSignalWithStartSignalComesFirst(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "first", func(ctx workflow.Context, in string) (string, error) {
		p, ok := workflow.TryReceiveSignal(ctx, "hello")
		if !ok {
			return "no signal at start", nil
		}
		var s string
		if err := p.Decode(&s); err != nil {
			return "", err
		}
		return in + " " + s, nil
	})
	env.Run()
	started, _, err := orchestrator.SignalWithStart(context.Background(), env.JS(), "w-1", "first", "input", "hello", "signal")
	if err != nil || !started {
		t.Fatalf("started %v, %v", started, err)
	}
	if d := env.Wait("w-1"); d.Status != schema.StatusCompleted {
		t.Fatalf("%s (%s)", d.Status, d.Error)
	}
	var out string
	if err := env.Output("w-1", &out); err != nil || out != "input signal" {
		t.Fatalf("returned %q, %v", out, err)
	}
	// The workflow exists now: the second call signals it, and starts
	// nothing.
	started, _, err = orchestrator.SignalWithStart(context.Background(), env.JS(), "w-1", "first", "again", "hello", "late")
	if err != nil || started {
		t.Fatalf("second call: started %v, %v", started, err)
	}
}

// Signal-with-start racing a plain start of the same ID: one workflow,
// which receives the signal once, whichever start won.
func TestSignalWithStartRacingAStart(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "collect", func(ctx workflow.Context, in string) (string, error) {
		got := []string{}
		for {
			p, ok := workflow.TryReceiveSignal(ctx, "item")
			if !ok {
				break
			}
			var s string
			_ = p.Decode(&s)
			got = append(got, s)
		}
		if len(got) == 0 {
			s, err := workflow.WaitSignal[string](ctx, "item")
			if err != nil {
				return "", err
			}
			got = append(got, s)
		}
		return strings.Join(got, ","), nil
	})
	env.Run()
	const rounds = 5
	for i := range rounds {
		id := "race-" + string(rune('a'+i))
		var wg sync.WaitGroup
		var sws, plain bool
		var swsErr, plainErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			sws, _, swsErr = orchestrator.SignalWithStart(context.Background(), env.JS(), id, "collect", "sws", "item", "x")
		}()
		go func() {
			defer wg.Done()
			plain, plainErr = orchestrator.Start(context.Background(), env.JS(), "collect", id, "plain", "test")
		}()
		wg.Wait()
		if swsErr != nil || plainErr != nil {
			t.Fatalf("%s: %v, %v", id, swsErr, plainErr)
		}
		if sws == plain {
			t.Fatalf("%s: signal-with-start started %v, start started %v: want exactly one", id, sws, plain)
		}
		if d := env.Wait(id); d.Status != schema.StatusCompleted {
			t.Fatalf("%s %s (%s)", id, d.Status, d.Error)
		}
		var out string
		if err := env.Output(id, &out); err != nil || out != "x" {
			t.Fatalf("%s returned %q, %v: want the signal once", id, out, err)
		}
	}
}
