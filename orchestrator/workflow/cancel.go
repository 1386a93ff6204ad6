package workflow

import (
	"errors"
	"runtime"

	"github.com/jetflow-io/jetflow/schema"
)

// ErrCanceled is what the workflow calls blocked on a cancelled context
// return (errors.Is), and the error of a cancelled timer or step. A
// workflow that returns it (or an error wrapping it) ends cancelled.
var ErrCanceled = errors.New("workflow: cancelled")

// CanceledError is a cancellation with who asked and why: an operator's
// cancel request recorded in the history, or a CancelFunc of WithCancel
// (then both are empty). It is ErrCanceled for errors.Is.
type CanceledError struct {
	// Identity and Reason are the operator's, from the history.
	Identity string
	Reason   string

	// stepKey is, on the error of a step cancelled while its command was
	// out, the step's idempotency key (UnknownOutcome).
	stepKey string
}

func (e *CanceledError) Error() string {
	msg := ErrCanceled.Error()
	if e.Identity != "" {
		msg += " by " + e.Identity
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Is makes errors.Is(err, ErrCanceled) hold.
func (e *CanceledError) Is(target error) bool { return target == ErrCanceled }

// CancelFunc cancels the context WithCancel returned, with the steps and
// timers started on it. Calling it again does nothing.
type CancelFunc func()

// cancelScope is a node of the cancellation tree. Everything started on a
// context (steps, timers) is registered in its scope, so a cancellation
// reaches it at the point of history where it happens: the delivery of
// the cancel request, or the CancelFunc call. Both come in history order,
// so every replay cancels the same things at the same decision.
type cancelScope struct {
	r        *replayer
	children []*cancelScope
	// detached: a cancellation of the parent does not reach this scope
	// (NewDisconnectedContext).
	detached bool
	cause    error
	timers   []*Timer
	steps    []stepRef
	// childWfs are the child workflows started on this scope (child.go).
	childWfs []*childState
}

type stepRef struct {
	id int
	f  *future
}

func (s *cancelScope) err() error { return s.cause }

// child returns a new scope under s, already cancelled if s is and the
// child is not detached.
func (s *cancelScope) child(detached bool) *cancelScope {
	c := &cancelScope{r: s.r, detached: detached}
	s.children = append(s.children, c)
	if !detached && s.cause != nil {
		c.cause = s.cause
	}
	return c
}

// cancel cancels s and every scope under it that is not detached: pending
// timers are cancelled (a timer.cancelled decision each, in the order they
// were started), pending steps resolve with cause at once, each with a
// step.cancelled decision that tells its participant (their result, when
// it comes, is recorded and ignored). It reports false when a
// decision did not match the history (the replay has failed).
func (s *cancelScope) cancel(cause error) bool {
	if s.cause != nil {
		return true
	}
	s.cause = cause
	r := s.r
	for _, t := range s.timers {
		if !t.cancelWith(cause) {
			return false
		}
	}
	for _, st := range s.steps {
		if st.f.ready {
			continue
		}
		// Recorded, so the participant running it is told.
		if _, ok := r.match(&schema.StepCancelled{ID: r.issued + 1, CommandID: st.id}); !ok {
			return false
		}
		st.f.ready, st.f.readyAt, st.f.err = true, r.tick, cause
		if ce, ok := cause.(*CanceledError); ok {
			// The same cancellation, naming the step: its outcome is
			// unknown (the participant may have done it already).
			named := *ce
			named.stepKey = st.f.key
			st.f.err = &named
		}
		delete(r.pending, st.id)
	}
	if !s.cancelChildren() {
		return false
	}
	for _, c := range s.children {
		if !c.detached && !c.cancel(cause) {
			return false
		}
	}
	return true
}

// WithCancel returns a context whose cancellation is its parent's or the
// returned CancelFunc's, whichever comes first. Steps and timers started
// on it are cancelled with it: a pending timer records timer.cancelled and
// its Get returns ErrCanceled; a pending step's future returns ErrCanceled
// at once, and its result, when the participant sends it, is recorded in
// the history and ignored.
func WithCancel(parent Context) (Context, CancelFunc) {
	sc := parent.scope().child(false)
	c := parent.co()
	return scopedCtx{c: c, sc: sc}, func() {
		if !sc.cancel(&CanceledError{}) || c.r.failure != nil {
			runtime.Goexit() // the replay has failed; stop this coroutine
		}
	}
}

// NewDisconnectedContext returns a context that a cancellation of parent
// does not reach, so a cancelled workflow can still run steps: undo what
// it did, then return the cancellation.
//
//	if errors.Is(err, workflow.ErrCanceled) {
//		return saga.Compensate(err) // runs on a disconnected context
//	}
func NewDisconnectedContext(parent Context) Context {
	return scopedCtx{c: parent.co(), sc: parent.scope().child(true)}
}

// cancelRequested delivers an operator's cancel request: the workflow's
// root context is cancelled.
func (r *replayer) cancelRequested(op *schema.OperatorRequest) {
	r.root.cancel(&CanceledError{Identity: op.Identity, Reason: op.Reason})
}

// operator delivers an operator request recorded in the history.
func (r *replayer) operator(op *schema.OperatorRequest) {
	switch op.Verb {
	case schema.VerbCancel:
		r.cancelRequested(op)
	case schema.VerbRetry:
		r.retries++
	}
	// terminate and resolve end the workflow without its code; resume only
	// wakes it (see orchestrator).
}

// awaitRetry parks the workflow until an operator retries it: it has
// reached a state only a person can settle (m says why). While it waits,
// the replay reports it finished manual and retryable, and the
// orchestrator records that end; a retry request recorded after it wakes
// it here.
func awaitRetry(ctx Context, m *ManualError) {
	r := ctx.co().r
	seen := r.retries
	r.manual = m
	ctx.co().block(func() bool { return r.retries > seen })
	r.manual = nil
}

// manualOutcome is the end a replay reports for a workflow waiting in
// awaitRetry.
func manualOutcome(m *ManualError) *schema.WorkflowFinished {
	return &schema.WorkflowFinished{Status: schema.StatusManual, Reason: m.Reason, Error: m.Error(), Retryable: true}
}
