package workflowtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
)

var (
	longTask = workflow.Activity{Service: "batch", Action: "crunch", Options: workflow.StepOptions{StartToClose: time.Minute}}
	undoTask = workflow.Activity{Service: "batch", Action: "undo"}
)

// TestCancelledStepIsToldToItsParticipant: a step cancelled with
// WithCancel while its handler runs has the handler's context cancelled;
// the workflow goes on at once, and the participant's "cancelled" answer is
// recorded and ignored.
func TestCancelledStepIsToldToItsParticipant(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "crunch", func(ctx workflow.Context, _ string) (string, error) {
		sctx, cancel := workflow.WithCancel(ctx)
		f := workflow.ExecuteAsync[string](sctx, longTask, "all")
		if _, err := workflow.WaitSignal[string](ctx, "stop"); err != nil {
			return "", err
		}
		cancel()
		if _, err := f.Get(ctx); !errors.Is(err, workflow.ErrCanceled) {
			return "", errors.New("the cancelled step's Get did not return ErrCanceled")
		}
		return "stopped", nil
	})
	started := make(chan struct{}, 1)
	told := make(chan error, 1)
	env.Stub(longTask, func(ctx context.Context, _ *participants.Command) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		told <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	env.Run()
	env.Start("crunch", "c-1", "")
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the step's handler did not start")
	}
	env.Signal("c-1", "stop", "now")
	d := env.Wait("c-1")
	if d.Status != schema.StatusCompleted {
		t.Fatalf("status %s (%s)", d.Status, d.Error)
	}
	select {
	case cause := <-told:
		if cause == nil || cause.Error() != "the workflow cancelled this step" {
			t.Fatalf("handler context cancelled by %v", cause)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	// The participant answers the cancelled command with a final
	// "cancelled" failure, recorded after the step's cancel.
	d = env.WaitFor("c-1", func(d *orchestrator.Description) bool {
		for _, e := range d.History {
			if e.Type == string(schema.KindResult) && e.Step == "batch.crunch" {
				return true
			}
		}
		return false
	})
	var cancelAt uint64
	for _, e := range d.History {
		switch e.Type {
		case string(schema.KindStepCancelled):
			cancelAt = e.Seq
		case string(schema.KindResult):
			if e.Seq < cancelAt || cancelAt == 0 || !strings.HasPrefix(e.Error, participants.KindCancelled+":") {
				t.Fatalf("result %+v after the cancel at %d: want a cancelled failure after it", e, cancelAt)
			}
		}
	}
}

// TestOperatorCancelCompensatesOnADisconnectedContext: orchestrator.Cancel
// cancels a workflow that sleeps; it undoes its step on a disconnected
// context and ends cancelled.
func TestOperatorCancelCompensatesOnADisconnectedContext(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "undoable", func(ctx workflow.Context, _ string) (string, error) {
		saga := workflow.NewSaga(ctx)
		if _, err := workflow.Execute[string](ctx, longTask, "x"); err != nil {
			return "", err
		}
		saga.AddCompensation(undoTask, "x")
		if err := workflow.Sleep(ctx, 24*time.Hour); err != nil {
			return "", saga.Compensate(err)
		}
		return "slept", nil
	})
	undone := make(chan struct{}, 1)
	env.Stub(longTask, func(context.Context, *participants.Command) (any, error) { return "done", nil })
	env.Stub(undoTask, func(context.Context, *participants.Command) (any, error) {
		undone <- struct{}{}
		return nil, nil
	})
	env.Run()
	env.Start("undoable", "u-1", "")
	env.WaitFor("u-1", func(d *orchestrator.Description) bool { return len(d.Timers) == 1 })
	if _, err := orchestrator.Cancel(context.Background(), env.JS(), "u-1", orchestrator.Request{Identity: "ops", Reason: "not needed"}); err != nil {
		t.Fatal(err)
	}
	d := env.Wait("u-1")
	if d.Status != schema.StatusCancelled || len(undone) != 1 {
		t.Fatalf("status %s, %d undo: want cancelled after one undo", d.Status, len(undone))
	}
	if len(d.Timers) != 0 {
		t.Fatalf("timers still pending: %+v", d.Timers)
	}
}
