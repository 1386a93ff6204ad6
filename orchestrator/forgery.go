package orchestrator

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// A start event is published on wf.<id>.start by anyone allowed to start
// workflows (the operator and reconcile roles may publish wf.*.start:
// NATS cannot narrow a permission to a prefix of one token). What a start
// claims beyond its type and input is not believed as published:
//
//   - Parent: the parent's history must hold, on wf.<parent>.child.<n>, the
//     child.started decision naming this workflow ID and type (and, for the
//     first run, its input). Otherwise the workflow is parked, and its end,
//     if an operator ends it, is never written into that parent.
//   - Run N>1 (wf.<id>=<N>.start): run N-1 must have ended
//     continued-as-new naming run N, with this input, and its start must
//     have this type and parent. Otherwise run N is parked.
//   - Signal (signal-with-start): the signal rules the router applies to a
//     signal of that name for that type are applied to it, on the empty
//     history; a signal a rule refuses, or would record with another
//     payload, parks the workflow.
//
// A parked workflow is never decided from the start: an operator
// terminates it (or it stays parked with its reason).

// startForgery returns why the start of history hid cannot be believed,
// "" when it can. A start found believable is not checked again while its
// state stays cached.
func (o *Orchestrator) startForgery(ctx context.Context, hid string, st *state) (string, error) {
	if st.startChecked {
		return "", nil
	}
	start := st.start
	id, run := streams.ParseRunID(hid)
	if run > 1 || start.Run > 1 {
		why, err := o.runForgery(ctx, id, run, start)
		if err != nil || why != "" {
			return why, err
		}
	}
	if start.Parent != nil {
		why, err := o.parentForgery(ctx, hid, start)
		if err != nil || why != "" {
			return why, err
		}
	}
	if start.Signal != nil {
		if rule := o.rule(start.Type, start.Signal.Name); rule != nil {
			h := History{WorkflowID: id, WorkflowType: start.Type, Status: schema.StatusRunning}
			payload, why := checkSignal(rule, h, start.Signal.Name, start.Signal.Payload)
			if why != "" {
				return "start refused: its signal " + why, nil
			}
			if !bytes.Equal(payload, start.Signal.Payload) {
				return fmt.Sprintf("start refused: its signal %s is not recorded as sent (its rule records another payload): send it once the workflow is started", start.Signal.Name), nil
			}
		}
	}
	st.startChecked = true
	return "", nil
}

// runForgery checks the start of run (>1) of workflow id against the end of
// the run before it.
func (o *Orchestrator) runForgery(ctx context.Context, id string, run int, start *schema.WorkflowStarted) (string, error) {
	if run < 2 || start.Run != run || start.WorkflowID != id {
		return fmt.Sprintf("start refused: run %d of %s names workflow %s run %d", run, id, start.WorkflowID, start.Run), nil
	}
	prev := streams.RunID(id, run-1)
	ev, err := o.hist.LastFromLeader(ctx, streams.DoneFilterOf(prev))
	if err != nil {
		return "", err
	}
	f, ok := doneValue(ev)
	if !ok || f.Status != schema.StatusContinuedAsNew || f.NextRun != run {
		return fmt.Sprintf("start refused: run %s did not end continued-as-new naming run %d", prev, run), nil
	}
	if !bytes.Equal(f.NextInput, start.Input) {
		return fmt.Sprintf("start refused: its input is not the one run %s continued with", prev), nil
	}
	ev, err = o.hist.LastFromLeader(ctx, streams.StartSubject(prev))
	if err != nil {
		return "", err
	}
	var ps *schema.WorkflowStarted
	if ev != nil {
		ps, _ = ev.Value.(*schema.WorkflowStarted)
	}
	if ps == nil || ps.Type != start.Type || !sameParent(ps.Parent, start.Parent) {
		return fmt.Sprintf("start refused: its type or parent is not run %s's", prev), nil
	}
	return "", nil
}

// parentForgery checks that the parent start names holds the decision
// that started it as its child.
func (o *Orchestrator) parentForgery(ctx context.Context, hid string, start *schema.WorkflowStarted) (string, error) {
	id, run := streams.ParseRunID(hid)
	p := start.Parent
	if streams.ValidHistoryID(p.WorkflowID) != nil {
		return fmt.Sprintf("start refused: its parent %q is not a workflow", streams.Clip(p.WorkflowID, 200)), nil
	}
	ev, err := o.hist.LastFromLeader(ctx, streams.ChildSubject(p.WorkflowID, p.Child))
	if err != nil {
		return "", err
	}
	var c *schema.ChildStarted
	if ev != nil && ev.DecodeErr == nil && streams.OnItsSubject(*ev) {
		c, _ = ev.Value.(*schema.ChildStarted)
	}
	if c == nil || c.ID != p.Child || c.ChildID != id || c.Type != start.Type {
		return fmt.Sprintf("start refused: workflow %s has not started it (%s %s) as its child %d", p.WorkflowID, start.Type, id, p.Child), nil
	}
	if run == 1 && !bytes.Equal(c.Input, start.Input) {
		return fmt.Sprintf("start refused: its input is not the one workflow %s started its child %d with", p.WorkflowID, p.Child), nil
	}
	return "", nil
}

func sameParent(a, b *schema.ChildOf) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
