package workflow

import (
	"errors"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/schema"
)

func parentFlow(ctx Context, _ int) (string, error) {
	out, err := ExecuteChild[string](ctx, ChildOptions{Type: "greet"}, "World")
	if err != nil {
		return "", err
	}
	if _, err := SignalExternal(ctx, "other", "hello", out).Get(ctx); err != nil {
		return "", err
	}
	return out, nil
}

func parentFn() Func {
	r := NewRegistry()
	Register(r, "parent", parentFlow)
	fn, _ := r.Lookup("parent")
	return fn
}

// The child and signal decisions replay from the history: the child's
// derived ID, its end, the signal's record; a parent whose code starts
// another type of child than the history holds is parked.
func TestChildAndSignalReplay(t *testing.T) {
	childID := "_child-w1-1"
	started := &schema.ChildStarted{ID: 1, ChildID: childID, Type: "greet", ParentClose: schema.ParentCloseTerminate}
	raw, _ := schema.EncodeRaw("Hello World!")
	ended := &schema.ChildEnded{Child: 1, ChildID: childID, Status: schema.StatusCompleted, Output: raw}
	sent := &schema.SignalExternal{ID: 2, WorkflowID: "other", Name: "hello"}

	out := Replay(parentFn(), "w1", hist(t, 0), nil)
	if len(out.Decisions) != 1 {
		t.Fatalf("first decision %+v", out.Decisions)
	}
	if c, ok := out.Decisions[0].(*schema.ChildStarted); !ok || c.ChildID != childID || c.Type != "greet" || c.ParentClose != schema.ParentCloseTerminate {
		t.Fatalf("first decision %+v: want child greet %s", out.Decisions[0], childID)
	}
	out = Replay(parentFn(), "w1", hist(t, 0, started, ended), nil)
	if len(out.Decisions) != 1 {
		t.Fatalf("after the child's end %+v", out.Decisions)
	}
	if s, ok := out.Decisions[0].(*schema.SignalExternal); !ok || s.WorkflowID != "other" || s.Name != "hello" {
		t.Fatalf("after the child's end %+v: want the signal", out.Decisions[0])
	}
	out = Replay(parentFn(), "w1", hist(t, 0, started, ended, sent, &schema.SignalExternalDone{Signal: 2, Seq: 9}), nil)
	var got string
	if out.Finished == nil || out.Finished.Status != schema.StatusCompleted || schema.DecodeRaw(out.Finished.Output, &got) != nil || got != "Hello World!" {
		t.Fatalf("end %+v", out.Finished)
	}
	out = Replay(parentFn(), "w1", hist(t, 0, started, ended, sent, &schema.SignalExternalDone{Signal: 2, Error: schema.SignalExternalNotFound}), nil)
	if out.Finished == nil || out.Finished.Status != schema.StatusFailed || !strings.Contains(out.Finished.Error, ErrExternalWorkflowNotFound.Error()) {
		t.Fatalf("end after a signal to nobody %+v", out.Finished)
	}
	other := &schema.ChildStarted{ID: 1, ChildID: childID, Type: "farewell"}
	if out := Replay(parentFn(), "w1", hist(t, 0, other), nil); out.Blocked == nil || !strings.Contains(out.Blocked.Reason, "child farewell") {
		t.Fatalf("a changed child type: %+v", out)
	}
}

// A child's failure reaches the parent as a ChildError whose cause is
// the child's typed error.
func TestChildErrorUnwrapsToTheChildsError(t *testing.T) {
	e := &ChildError{WorkflowID: "c", Type: "charge", Status: schema.StatusFailed, Kind: "declined", Message: "declined: card refused", NonRetryable: true}
	var ae *ApplicationError
	if !errors.As(e, &ae) || ae.Kind != "declined" || ae.Message != "card refused" || !ae.NonRetryable {
		t.Fatalf("cause %+v", ae)
	}
	if c := (&ChildError{Status: schema.StatusCancelled}); !errors.Is(c, ErrCanceled) {
		t.Fatal("a cancelled child's error is not ErrCanceled")
	}
}
