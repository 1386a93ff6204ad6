package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/tracing"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Child workflows and signals between workflows, on the runtime's side.
//
// A decision that starts a child, cancels one or sends a signal is
// recorded in the workflow's history first, like a timer; what it asks
// for (the child's start, the cancel request in the child's history, the
// signal) is done after the append is acknowledged, by the orchestrator
// that appended it. A crash in between leaves the decision recorded and
// its effect undone: the next decision of the workflow (the redelivered
// wake, on any orchestrator) finds it among the decisions this process
// has not carried out, and carries it out. Every effect is idempotent:
// a start is written with an expected last subject sequence of 0, an
// operator request is refused once the child has it, a signal carries a
// message ID derived from its decision.
//
// A child's end reaches its parent the same way: the orchestrator that
// appends the child's end writes it, once, on the parent's
// wf.<parent>.child.<n>.done, and a crash before that is repaired by the
// child's redelivered wake, which finds the child ended. The parent-close
// policies are applied by the orchestrator that appends the parent's end,
// and again (idempotently) on any later wake of the ended parent while a
// child has not ended.

// linkState is what a workflow's state holds of its children and of the
// signals it sent.
type linkState struct {
	children map[int]*schema.ChildStarted
	ended    map[int]bool
	cancels  map[int]bool
	sent     map[int]*schema.SignalExternal
	sentDone map[int]bool
	// done are the effects this process carried out: "child.3",
	// "cancel.3", "signal.5", "end", "close".
	done map[string]bool
}

func (l *linkState) init() {
	if l.children == nil {
		l.children = map[int]*schema.ChildStarted{}
		l.ended = map[int]bool{}
		l.cancels = map[int]bool{}
		l.sent = map[int]*schema.SignalExternal{}
		l.sentDone = map[int]bool{}
		l.done = map[string]bool{}
	}
}

// link takes a history value into the link state.
func (l *linkState) link(v schema.Kinded) {
	switch v := v.(type) {
	case *schema.ChildStarted:
		l.init()
		l.children[v.ID] = v
	case *schema.ChildCancelRequested:
		l.init()
		l.cancels[v.Child] = true
	case *schema.ChildEnded:
		l.init()
		l.ended[v.Child] = true
	case *schema.SignalExternal:
		l.init()
		l.sent[v.ID] = v
	case *schema.SignalExternalDone:
		l.init()
		l.sentDone[v.Signal] = true
	}
}

// applyLinks carries out the link decisions among vals, which this
// process has just appended, and, when out ends the workflow, tells its
// parent and applies its children's parent-close policies.
func (w *worker) applyLinks(ctx context.Context, id string, st *state, vals []schema.Kinded, end *schema.WorkflowFinished) error {
	linked := false
	for _, v := range vals {
		switch v.(type) {
		case *schema.ChildStarted, *schema.ChildCancelRequested, *schema.SignalExternal:
			st.links.link(v)
			linked = true
		}
	}
	if !linked && end == nil {
		return nil
	}
	return w.o.ensureLinks(w.traced(ctx), id, st, end)
}

// ensureLinks carries out every link decision of st this process has not
// carried out (each is idempotent), and, when end is set (the workflow
// ended), the end's consequences: the parent is told, the children still
// running get their parent-close policy.
func (o *Orchestrator) ensureLinks(ctx context.Context, id string, st *state, end *schema.WorkflowFinished) error {
	l := &st.links
	if l.children == nil && (end == nil || st.start == nil || st.start.Parent == nil) {
		return nil
	}
	l.init()
	for _, n := range sortedKeys(l.children) {
		key := "child." + strconv.Itoa(n)
		if l.ended[n] || l.done[key] {
			continue
		}
		if err := o.startChild(ctx, id, l.children[n]); err != nil {
			return err
		}
		l.done[key] = true
	}
	for _, n := range sortedKeys(l.cancels) {
		key := "cancel." + strconv.Itoa(n)
		c := l.children[n]
		if c == nil || l.ended[n] || l.done[key] {
			continue
		}
		err := o.requestOf(ctx, id, c, schema.VerbCancel, "the parent cancelled it")
		if err != nil {
			return err
		}
		l.done[key] = true
	}
	for _, n := range sortedKeys(l.sent) {
		key := "signal." + strconv.Itoa(n)
		if l.sentDone[n] || l.done[key] {
			continue
		}
		if err := o.sendSignal(ctx, id, l.sent[n]); err != nil {
			return err
		}
		l.done[key] = true
	}
	if end == nil || end.Status == schema.StatusManual {
		// A manual workflow may be retried and end again: its parent
		// and children wait for the end a person settles.
		return nil
	}
	// A child that continued as new has not ended for its parent: its
	// next run carries the parent reference, and the last run's end is
	// the one the parent's future resolves with.
	if st.start != nil && st.start.Parent != nil && !l.done["end"] && end.Status != schema.StatusContinuedAsNew {
		// Only the parent's own child is told to it: a start that claims a
		// parent which never started it (forgery.go) ends on its own.
		why, err := o.parentForgery(ctx, id, st.start)
		if err != nil {
			return err
		}
		if why != "" {
			o.log.Warn("child end not written into the parent", "workflow_id", id, "reason", why)
		} else if err := o.tellParent(ctx, id, st.start.Parent, end); err != nil {
			return err
		}
		l.done["end"] = true
	}
	if !l.done["close"] {
		for _, n := range sortedKeys(l.children) {
			if l.ended[n] {
				continue
			}
			c := l.children[n]
			why := fmt.Sprintf("the parent %s ended %s", id, end.Status)
			var err error
			switch c.ParentClose {
			case schema.ParentCloseAbandon:
			case schema.ParentCloseRequestCancel:
				err = o.requestOf(ctx, id, c, schema.VerbCancel, why)
			default:
				err = o.requestOf(ctx, id, c, schema.VerbTerminate, why)
			}
			if err != nil {
				return err
			}
		}
		l.done["close"] = true
	}
	return nil
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// startChild writes the start of the child of decision c of parent, once.
// A workflow of that ID that is not this child (another parent's, or one
// started from outside) fails the child: its end is recorded in the
// parent as failed, kind "already_started", as Temporal's child future
// fails with WorkflowExecutionAlreadyStarted.
func (o *Orchestrator) startChild(ctx context.Context, parent string, c *schema.ChildStarted) error {
	ref := &schema.ChildOf{WorkflowID: parent, Child: c.ID}
	ev := &schema.WorkflowStarted{WorkflowID: c.ChildID, Type: c.Type, Input: c.Input,
		Source: "child of " + parent + "#" + strconv.Itoa(c.ID), Parent: ref}
	failpoint.Hit("orchestrator.before-child-start")
	written, err := publishStart(ctx, o.cfg.JS, ev)
	if errors.Is(err, ErrTooLarge) {
		return o.recordChildEnd(ctx, parent, &schema.ChildEnded{Child: c.ID, ChildID: c.ChildID,
			Status: schema.StatusFailed, ErrorKind: "too_large", Error: err.Error(), NonRetryable: true})
	}
	if err != nil || written {
		return err
	}
	first, err := o.hist.LastFromLeader(ctx, streams.StartSubject(c.ChildID))
	if err != nil {
		return err
	}
	if first == nil {
		return fmt.Errorf("start child %s: refused, and its start subject holds nothing: will retry", c.ChildID)
	}
	if s, ok := first.Value.(*schema.WorkflowStarted); ok && s.Parent != nil && *s.Parent == *ref && s.WorkflowID == c.ChildID &&
		s.Type == c.Type && bytes.Equal(s.Input, c.Input) && s.Run <= 1 && s.Signal == nil {
		return nil // this child, started before
	}
	return o.recordChildEnd(ctx, parent, &schema.ChildEnded{Child: c.ID, ChildID: c.ChildID,
		Status: schema.StatusFailed, ErrorKind: "already_started", NonRetryable: true,
		Error: fmt.Sprintf("workflow %s already exists and is not this child of %s", c.ChildID, parent)})
}

// tellParent records the end of child id in its parent's history, once.
func (o *Orchestrator) tellParent(ctx context.Context, id string, p *schema.ChildOf, end *schema.WorkflowFinished) error {
	failpoint.Hit("orchestrator.before-child-end")
	return o.recordChildEnd(ctx, p.WorkflowID, &schema.ChildEnded{Child: p.Child, ChildID: id, Status: end.Status,
		Output: end.Output, Error: end.Error, ErrorKind: end.ErrorKind, NonRetryable: end.NonRetryable})
}

// recordChildEnd writes end on the parent's child.<n>.done subject, once.
func (o *Orchestrator) recordChildEnd(ctx context.Context, parent string, end *schema.ChildEnded) error {
	m, err := streams.NewMsg(streams.ChildDoneSubject(parent, end.Child), end)
	if err != nil {
		return err
	}
	m.Header.Set(jetstream.MsgIDHeader, "childend-"+parent+"-"+strconv.Itoa(end.Child))
	m.Header.Set(schema.HeaderWorkflowID, parent)
	_, err = streams.PublishFirst(ctx, o.cfg.JS, m)
	return err
}

// requestOf records an operator request verb in child c's history on
// behalf of parent. A child that no longer admits it (ended, or already
// asked) is left as it is.
func (o *Orchestrator) requestOf(ctx context.Context, parent string, c *schema.ChildStarted, verb, why string) error {
	_, err := operate(ctx, o.cfg.JS, c.ChildID, verb, Request{Identity: "workflow " + parent, Reason: why})
	if errors.Is(err, ErrNotApplicable) {
		// A child whose run ended continued-as-new while its next run's
		// start is not written yet (its redelivered wake writes it) is
		// asked again on the parent's redelivered wake, so that the
		// request reaches the run that goes on.
		if sum, serr := o.runStatus(ctx, c.ChildID); serr == nil && sum != nil && sum.Status == schema.StatusContinuedAsNew {
			return fmt.Errorf("%s child %s: its run %s continued as new and the next run is not started yet: will retry", verb, c.ChildID, sum.ID)
		}
		return nil
	}
	if err == nil || errors.Is(err, streams.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("%s child %s: %w", verb, c.ChildID, err)
}

// sendSignal publishes the signal of decision s of workflow id to the
// signals stream, then records that it is stored, once. A target that was
// never started, or has ended, gets no signal: the record says why. A
// signal the stream refuses because it is full is recorded as refused
// with the server's reason, and the workflow's code decides what next:
// retrying the wake until there is room would hold the sender's other
// links (its parent's notice, its next run) behind a flood others made.
func (o *Orchestrator) sendSignal(ctx context.Context, id string, s *schema.SignalExternal) error {
	done := &schema.SignalExternalDone{Signal: s.ID}
	// The target's current run: a workflow that continued as new is
	// running in its latest run, where the router delivers the signal.
	sum, err := o.runStatus(ctx, s.WorkflowID)
	switch {
	case err != nil:
		return err
	case sum == nil:
		done.Error = schema.SignalExternalNotFound
	case sum.Status.Terminal() && sum.Status != schema.StatusContinuedAsNew:
		done.Error = schema.SignalExternalEnded
	default:
		m := nats.NewMsg(streams.SignalSubject(s.Name, s.WorkflowID))
		m.Data = s.Payload
		m.Header.Set(schema.HeaderContentType, schema.ContentTypeMsgpack)
		m.Header.Set(jetstream.MsgIDHeader, streams.SignalOutMsgID(id, s.ID))
		tracing.Inject(ctx, m.Header)
		ack, err := o.cfg.JS.PublishMsg(ctx, m)
		reason, full := streams.StreamFull(err)
		switch {
		case full:
			done.Error = schema.SignalExternalRefused + streams.SignalsStream + ": " + reason
			o.log.Warn("signal refused: the signals stream is full", "workflow_id", id, "to", s.WorkflowID, "signal", s.Name, "err", err)
			o.cfg.Metrics.Signal(metrics.SignalUnsent)
		case err != nil:
			return fmt.Errorf("signal %s to %s: %w", s.Name, s.WorkflowID, err)
		default:
			done.Seq = ack.Sequence
		}
	}
	m, err := streams.NewMsg(streams.SignalOutDoneSubject(id, s.ID), done)
	if err != nil {
		return err
	}
	m.Header.Set(jetstream.MsgIDHeader, "sigout-done-"+id+"-"+strconv.Itoa(s.ID))
	m.Header.Set(schema.HeaderWorkflowID, id)
	_, err = streams.PublishFirst(ctx, o.cfg.JS, m)
	return err
}

// publishStart writes start event ev, once: started=false when the
// workflow's start subject holds a message already.
func publishStart(ctx context.Context, js jetstream.JetStream, ev *schema.WorkflowStarted) (bool, error) {
	m, err := streams.NewMsg(streams.StartSubject(ev.WorkflowID), ev)
	if err != nil {
		return false, err
	}
	m.Header.Set(jetstream.MsgIDHeader, "start-"+ev.WorkflowID)
	m.Header.Set(schema.HeaderWorkflowID, ev.WorkflowID)
	ctx, span := startSpan(ctx, ev.Type, ev.WorkflowID)
	defer span.End()
	tracing.Inject(ctx, m.Header)
	if err := checkStartSize(m, streams.MaxPayload(js.Conn())); err != nil {
		return false, err
	}
	return streams.PublishFirst(ctx, js, m)
}

// SignalWithStart delivers signal name with payload to workflow id,
// starting it first (type wfType, with input) if it was never started, as
// Temporal's SignalWithStartWorkflow does. A workflow it starts holds the
// signal in its start event, so the signal is there before anything else
// the workflow waits for; one that exists gets the signal on its signal
// subject, through the router like any other (seq is then its sequence
// in the signals stream: WaitSignalVerdict waits for its verdict).
// Racing starts (this call's, another's, a plain Start) end in one
// workflow. started reports whether this call started it. A retried call
// that lost its answer may deliver the signal twice, as Temporal's may.
// input and payload are encoded with msgpack, unless they are a
// schema.Raw already (JSONInput converts JSON).
func SignalWithStart(ctx context.Context, js jetstream.JetStream, id, wfType string, input any, name string, payload any) (started bool, seq uint64, err error) {
	if err := streams.ValidUserID(id); err != nil {
		return false, 0, err
	}
	if err := validSignalName(name); err != nil {
		return false, 0, err
	}
	in, err := rawOf(input)
	if err != nil {
		return false, 0, fmt.Errorf("encode input: %w", err)
	}
	body, err := rawOf(payload)
	if err != nil {
		return false, 0, fmt.Errorf("encode signal payload: %w", err)
	}
	ev := &schema.WorkflowStarted{WorkflowID: id, Type: wfType, Input: in, Source: "signal-with-start " + name,
		Signal: &schema.Signal{Name: name, Payload: body, Source: "signal-with-start"}}
	started, err = publishStart(ctx, js, ev)
	if err != nil || started {
		return started, 0, err
	}
	m := nats.NewMsg(streams.SignalSubject(name, id))
	m.Data = body
	m.Header.Set(schema.HeaderContentType, schema.ContentTypeMsgpack)
	tracing.Inject(ctx, m.Header)
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return false, 0, fmt.Errorf("signal %s to %s: %w", name, id, err)
	}
	return false, ack.Sequence, nil
}

// rawOf encodes v, unless it is already an encoded schema.Raw (as
// JSONInput returns).
func rawOf(v any) (schema.Raw, error) {
	if r, ok := v.(schema.Raw); ok {
		return r, nil
	}
	return schema.EncodeRaw(v)
}

// finishedEnd is the end st read, while the workflow has ended; nil while
// it runs.
func (s *state) finishedEnd() *schema.WorkflowFinished {
	if !s.status.Terminal() {
		return nil
	}
	return s.finished
}

// ParentRef names a child workflow's parent (Description.Parent).
type ParentRef struct {
	WorkflowID string `json:"workflow_id"`
	// Run is the parent's run that started it, when not the first.
	Run int `json:"run,omitempty"`
	// Decision is the number of the parent's decision that started it.
	Decision int `json:"decision"`
}

// ChildSummary is a child workflow as its parent's history shows it
// (Description.Children).
type ChildSummary struct {
	WorkflowID string `json:"workflow_id"`
	Type       string `json:"type"`
	// Decision is the number of the parent's decision that started it.
	Decision int `json:"decision"`
	// Status is running until the child's end is recorded in the parent.
	Status      schema.Status `json:"status"`
	ParentClose string        `json:"parent_close,omitempty"`
}

// familyOf returns the parent and the children st's history names.
func familyOf(st *state) (*ParentRef, []ChildSummary) {
	var p *ParentRef
	if st.start != nil && st.start.Parent != nil {
		// The parent's history ID: its workflow ID, and its run after the first.
		id, run := streams.ParseRunID(st.start.Parent.WorkflowID)
		p = &ParentRef{WorkflowID: id, Decision: st.start.Parent.Child}
		if run > 1 {
			p.Run = run
		}
	}
	var kids []ChildSummary
	for _, n := range sortedKeys(st.links.children) {
		c := st.links.children[n]
		kids = append(kids, ChildSummary{WorkflowID: c.ChildID, Type: c.Type, Decision: n,
			Status: schema.StatusRunning, ParentClose: c.ParentClose})
	}
	for _, ev := range st.events {
		if end, ok := ev.Value.(*schema.ChildEnded); ok {
			for i := range kids {
				if kids[i].Decision == end.Child && kids[i].Status == schema.StatusRunning {
					kids[i].Status = end.Status
				}
			}
		}
	}
	return p, kids
}

// linkEntry fills the history entry of a child or sent-signal event.
func linkEntry(e *HistoryEntry, v schema.Kinded) {
	switch v := v.(type) {
	case *schema.ChildStarted:
		e.Step, e.CommandID = "child "+v.Type+" "+v.ChildID, v.ID
	case *schema.ChildCancelRequested:
		e.Step, e.CommandID = fmt.Sprintf("cancel child #%d", v.Child), v.ID
	case *schema.ChildEnded:
		e.Step, e.CommandID = "child "+v.ChildID+" "+string(v.Status), v.Child
		if v.Error != "" {
			e.Error = v.Error
		}
	case *schema.SignalExternal:
		e.Step, e.CommandID = "signal "+v.Name+" to "+v.WorkflowID, v.ID
	case *schema.SignalExternalDone:
		e.Step, e.CommandID, e.Error = "signal sent", v.Signal, v.Error
	}
}
