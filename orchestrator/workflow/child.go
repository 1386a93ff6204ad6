package workflow

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// ParentClosePolicy says what happens to a child workflow still running
// when its parent ends, whatever the parent's end (completed, failed,
// cancelled, terminated by an operator, ...).
type ParentClosePolicy string

// The parent-close policies.
const (
	// ParentCloseTerminate terminates the child: the default, as Temporal.
	ParentCloseTerminate ParentClosePolicy = schema.ParentCloseTerminate
	// ParentCloseRequestCancel asks the child to cancel (an operator
	// cancel request in its history): it may compensate, then ends.
	ParentCloseRequestCancel ParentClosePolicy = schema.ParentCloseRequestCancel
	// ParentCloseAbandon leaves the child running on its own.
	ParentCloseAbandon ParentClosePolicy = schema.ParentCloseAbandon
)

// ChildOptions configure a child workflow.
type ChildOptions struct {
	// Type is the child's registered workflow type. Required.
	Type string
	// ID is the child's workflow ID. Default: derived from the parent's
	// ID and the decision that starts the child, in the engine's
	// namespace (streams.ChildID), the same on every replay.
	ID string
	// ParentClosePolicy applies when the parent ends while the child
	// runs. Default ParentCloseTerminate.
	ParentClosePolicy ParentClosePolicy
}

// ChildError is the error a child workflow's future returns when the child
// did not complete: it failed, compensated, was cancelled or terminated,
// or needed a person who resolved it. Its cause (errors.As, errors.Is) is
// the child's typed error: an *ApplicationError with the child's kind and
// non-retryable flag, or a *CanceledError when the child was cancelled.
type ChildError struct {
	// WorkflowID and Type name the child.
	WorkflowID string
	Type       string
	// Status is the child's terminal status.
	Status schema.Status
	// Kind, Message and NonRetryable are the child's error's.
	Kind         string
	Message      string
	NonRetryable bool
}

// Error is "child order.payment _child-o-1-3 failed: declined: card refused".
func (e *ChildError) Error() string {
	msg := fmt.Sprintf("child %s %s %s", e.Type, e.WorkflowID, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Unwrap returns the child's typed error.
func (e *ChildError) Unwrap() error {
	switch {
	case e.Status == schema.StatusCancelled:
		return &CanceledError{Reason: e.Message}
	case e.Kind != "":
		// The recorded message is the application error's Error():
		// "<kind>: <message>".
		msg := strings.TrimPrefix(e.Message, e.Kind+": ")
		return &ApplicationError{Kind: e.Kind, Message: msg, NonRetryable: e.NonRetryable}
	}
	return nil
}

// ErrExternalWorkflowNotFound is what SignalExternal's future returns
// (errors.Is) when the target workflow was never started, as Temporal's
// fails with "unknown external workflow".
var ErrExternalWorkflowNotFound = errors.New("workflow: external workflow not found")

// ErrExternalSignalRefused is what SignalExternal's future returns
// (errors.Is) when the signals stream refused the signal because it was
// full (its bound, --signals-max-bytes): the signal was not sent, and the
// workflow decides whether to send it again later (a new SignalExternal
// after a timer).
var ErrExternalSignalRefused = errors.New("workflow: signal refused by the signals stream")

// ErrExternalWorkflowEnded is what SignalExternal's future returns
// (errors.Is) when the target workflow has already ended.
var ErrExternalWorkflowEnded = errors.New("workflow: external workflow has ended")

// links is what a replay knows of the children a workflow started and of
// the signals it sent.
type links struct {
	children map[int]*childState
	ends     map[int]*schema.ChildEnded
	sent     map[int]*future
	sentDone map[int]*schema.SignalExternalDone
}

type childState struct {
	d        *schema.ChildStarted
	f        *future
	canceled bool
}

func (l *links) init() {
	if l.children == nil {
		l.children = map[int]*childState{}
		l.ends = map[int]*schema.ChildEnded{}
		l.sent = map[int]*future{}
		l.sentDone = map[int]*schema.SignalExternalDone{}
	}
}

// ExecuteChild starts a child workflow and waits for its result: see
// ExecuteChildAsync.
func ExecuteChild[T any](ctx Context, opts ChildOptions, in any) (T, error) {
	return ExecuteChildAsync[T](ctx, opts, in).Get(ctx)
}

// ExecuteChildAsync starts a child workflow of type opts.Type with input
// in and returns the future of its result. The child is a workflow of its
// own (its own ID, history, status in list and show); the start is a
// decision of the parent (wf.<id>.child.<n>), after which the
// orchestrator writes the child's start, once. When the child ends, its
// end is recorded in the parent's history (wf.<id>.child.<n>.done) and
// resolves the future: its output on completion, a *ChildError otherwise.
// Cancelling the context the child was started on (the workflow's, or a
// WithCancel scope) asks the child to cancel; the future then resolves
// when the child ends (cancelled, if it returns its cancellation).
func ExecuteChildAsync[T any](ctx Context, opts ChildOptions, in any) Future[T] {
	return Future[T]{f: startChild(ctx, opts, in)}
}

func startChild(ctx Context, opts ChildOptions, in any) *future {
	r := ctx.co().r
	r.links.init()
	if err := ctx.Err(); err != nil {
		return &future{activity: "child " + opts.Type, ready: true, readyAt: r.tick, err: err}
	}
	n := r.issued + 1
	id := opts.ID
	if id == "" {
		id = streams.ChildID(r.id, n)
	}
	policy := opts.ParentClosePolicy
	if policy == "" {
		policy = ParentCloseTerminate
	}
	var bad error
	switch {
	case opts.Type == "":
		bad = errors.New("ExecuteChild: ChildOptions.Type is required")
	case streams.ValidID(id) != nil:
		bad = fmt.Errorf("ExecuteChild: ChildOptions.ID: %v", streams.ValidID(id))
	case id == r.id:
		bad = fmt.Errorf("ExecuteChild: child ID %q is the parent's own", id)
	case policy != ParentCloseTerminate && policy != ParentCloseRequestCancel && policy != ParentCloseAbandon:
		bad = fmt.Errorf("ExecuteChild: ParentClosePolicy %q: want one of terminate, request_cancel, abandon", policy)
	}
	if bad != nil {
		r.fail(bad)
		runtime.Goexit()
	}
	raw, err := schema.EncodeRaw(in)
	if err != nil {
		r.fail(fmt.Errorf("child %s: encode input: %w", opts.Type, err))
		runtime.Goexit()
	}
	d := &schema.ChildStarted{ID: n, ChildID: id, Type: opts.Type, Input: raw, ParentClose: string(policy)}
	r.decide(d)
	cs := &childState{d: d, f: &future{activity: "child " + opts.Type + " " + id}}
	r.links.children[n] = cs
	if end, ok := r.links.ends[n]; ok {
		cs.resolve(end, r.tick)
	} else {
		sc := ctx.scope()
		sc.childWfs = append(sc.childWfs, cs)
	}
	return cs.f
}

func (cs *childState) resolve(end *schema.ChildEnded, tick int64) {
	f := cs.f
	if f.ready {
		return
	}
	f.ready, f.readyAt = true, tick
	if end.Status == schema.StatusCompleted {
		f.output = end.Output
		return
	}
	f.err = &ChildError{WorkflowID: end.ChildID, Type: cs.d.Type, Status: end.Status,
		Kind: end.ErrorKind, Message: end.Error, NonRetryable: end.NonRetryable}
}

// childEnded delivers a child's end: the first one counts.
func (r *replayer) childEnded(end *schema.ChildEnded) {
	r.links.init()
	if _, dup := r.links.ends[end.Child]; dup {
		return
	}
	r.links.ends[end.Child] = end
	if cs := r.links.children[end.Child]; cs != nil {
		cs.resolve(end, r.tick)
	}
}

// cancelChildren asks the scope's pending children to cancel, one
// decision each, in the order they were started. It reports false when a
// decision did not match the history.
func (s *cancelScope) cancelChildren() bool {
	r := s.r
	for _, cs := range s.childWfs {
		if cs.f.ready || cs.canceled {
			continue
		}
		if _, ok := r.match(&schema.ChildCancelRequested{ID: r.issued + 1, Child: cs.d.ID}); !ok {
			return false
		}
		cs.canceled = true
	}
	return true
}

// SignalExternal sends signal name with payload to workflow workflowID and
// returns a future that resolves once the signal is stored in the signals
// stream: from there it takes the path of every signal (the router, its
// rules and order) into the target's history. The send is a decision of
// the sender (wf.<id>.sigout.<n>); the signal's message ID is derived
// from it, so a send repeated after a crash is dropped. The future fails
// with ErrExternalWorkflowNotFound when the target was never started, and
// ErrExternalWorkflowEnded when it has ended, as Temporal's does, and with
// ErrExternalSignalRefused when the signals stream was full.
func SignalExternal(ctx Context, workflowID, name string, payload any) Future[struct{}] {
	r := ctx.co().r
	r.links.init()
	what := "signal " + name + " to " + workflowID
	if err := ctx.Err(); err != nil {
		return Future[struct{}]{f: &future{activity: what, ready: true, readyAt: r.tick, err: err}}
	}
	if err := streams.ValidID(workflowID); err != nil {
		r.fail(fmt.Errorf("SignalExternal: %w", err))
		runtime.Goexit()
	}
	if !validSignalName(name) {
		r.fail(fmt.Errorf("SignalExternal: signal name %q: want dot-separated tokens without spaces or wildcards", name))
		runtime.Goexit()
	}
	raw, err := schema.EncodeRaw(payload)
	if err != nil {
		r.fail(fmt.Errorf("%s: encode payload: %w", what, err))
		runtime.Goexit()
	}
	d := &schema.SignalExternal{ID: r.issued + 1, WorkflowID: workflowID, Name: name, Payload: raw}
	r.decide(d)
	f := &future{activity: what}
	r.links.sent[d.ID] = f
	if done, ok := r.links.sentDone[d.ID]; ok {
		resolveSent(f, done, r.tick)
	}
	return Future[struct{}]{f: f}
}

// signalSent delivers the record that a sent signal is stored.
func (r *replayer) signalSent(done *schema.SignalExternalDone) {
	r.links.init()
	if _, dup := r.links.sentDone[done.Signal]; dup {
		return
	}
	r.links.sentDone[done.Signal] = done
	if f := r.links.sent[done.Signal]; f != nil {
		resolveSent(f, done, r.tick)
	}
}

func resolveSent(f *future, done *schema.SignalExternalDone, tick int64) {
	f.ready, f.readyAt = true, tick
	switch done.Error {
	case "":
		f.output = nil
	case schema.SignalExternalNotFound:
		f.err = fmt.Errorf("%s: %w", f.activity, ErrExternalWorkflowNotFound)
	case schema.SignalExternalEnded:
		f.err = fmt.Errorf("%s: %w", f.activity, ErrExternalWorkflowEnded)
	default:
		if reason, ok := strings.CutPrefix(done.Error, schema.SignalExternalRefused); ok {
			f.err = fmt.Errorf("%s: %w: %s", f.activity, ErrExternalSignalRefused, reason)
			return
		}
		f.err = fmt.Errorf("%s: %s", f.activity, done.Error)
	}
}

// sameLink compares the decisions of this file (sameDecision).
func sameLink(a, b schema.Kinded) bool {
	switch x := a.(type) {
	case *schema.ChildStarted:
		y, ok := b.(*schema.ChildStarted)
		return ok && x.ChildID == y.ChildID && x.Type == y.Type
	case *schema.ChildCancelRequested:
		y, ok := b.(*schema.ChildCancelRequested)
		return ok && x.Child == y.Child
	case *schema.SignalExternal:
		y, ok := b.(*schema.SignalExternal)
		return ok && x.WorkflowID == y.WorkflowID && x.Name == y.Name
	}
	return false
}

// describeLink describes the decisions of this file (describe).
func describeLink(v schema.Kinded) (string, bool) {
	switch x := v.(type) {
	case *schema.ChildStarted:
		return fmt.Sprintf("child %s %s", x.Type, x.ChildID), true
	case *schema.ChildCancelRequested:
		return fmt.Sprintf("cancel of child %d", x.Child), true
	case *schema.SignalExternal:
		return fmt.Sprintf("signal %s to %s", x.Name, x.WorkflowID), true
	}
	return "", false
}

// validSignalName reports whether name can be the <name> of
// signal.<name>.<id>.
func validSignalName(name string) bool {
	for _, tok := range strings.Split(name, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return false
		}
	}
	return true
}
