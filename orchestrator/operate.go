package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Request says who acts and why; it is recorded in the history with the
// verb.
type Request struct {
	// Reason says why, in the operator's words. Resolve requires one.
	Reason string
	// Identity names who acts, e.g. "alice@ops-1" (`jetflow` defaults it
	// to $USER@hostname).
	Identity string
}

// ErrNotApplicable is returned, wrapped with the reason, when a verb does
// not apply to the workflow in its current state: "workflow o-1 is
// completed: cancel applies to running or blocked workflows".
var ErrNotApplicable = errors.New("verb not applicable")

// notApplicable is an ErrNotApplicable whose message is the reason alone.
type notApplicable struct{ msg string }

func (e *notApplicable) Error() string { return e.msg }
func (e *notApplicable) Unwrap() error { return ErrNotApplicable }

// Cancel asks workflow id to stop: the request is recorded in its history
// and delivered to its code in history order, which cancels the
// workflow's context (workflow.ErrCanceled). The workflow compensates what
// it did on a disconnected context and ends cancelled (manual if a
// compensation fails for good). It applies to running and blocked
// workflows (a blocked one sees the cancel once it is resumed). seq is the
// history sequence of the recorded request.
func Cancel(ctx context.Context, js jetstream.JetStream, id string, r Request) (seq uint64, err error) {
	return operate(ctx, js, id, schema.VerbCancel, r)
}

// Terminate ends workflow id at once: its end, terminated, is appended by
// the next decision without running its code again, so no further command
// is sent; its pending timers are dropped and late results ignored.
// Nothing is compensated. It applies to running and blocked workflows.
func Terminate(ctx context.Context, js jetstream.JetStream, id string, r Request) (uint64, error) {
	return operate(ctx, js, id, schema.VerbTerminate, r)
}

// Retry reopens a manual workflow whose compensations failed for good: the
// failed compensations are sent again, as new commands with fresh
// attempts, from where they failed; the workflow ends compensated (or
// cancelled, if it was cancelled) when they succeed, or manual again. It
// applies to manual workflows that wait in workflow.Saga.Compensate; one
// whose code returned a ManualError has nothing to retry (resolve it).
func Retry(ctx context.Context, js jetstream.JetStream, id string, r Request) (uint64, error) {
	return operate(ctx, js, id, schema.VerbRetry, r)
}

// Resolve records that a person settled workflow id by hand: it ends
// resolved and leaves the manual queue. r.Reason is required. It applies
// to manual and blocked workflows.
func Resolve(ctx context.Context, js jetstream.JetStream, id string, r Request) (uint64, error) {
	return operate(ctx, js, id, schema.VerbResolve, r)
}

// Resume makes a blocked workflow decide now with the code the
// orchestrators run: it goes on if the code matches its history, and stays
// blocked, with the new reason recorded, if it still diverges. It applies
// to blocked workflows.
func Resume(ctx context.Context, js jetstream.JetStream, id string, r Request) (uint64, error) {
	return operate(ctx, js, id, schema.VerbResume, r)
}

// StartAs is Start for a person: the start records r as its source,
// "operator:<identity>: <reason>".
func StartAs(ctx context.Context, js jetstream.JetStream, wfType, id string, input any, r Request) (started bool, err error) {
	source := "operator:" + r.Identity
	if r.Reason != "" {
		source += ": " + r.Reason
	}
	return Start(ctx, js, wfType, id, input, source)
}

// histories holds one History per connection for the verbs, so that
// repeated calls share one reply subscription.
var histories sync.Map // *nats.Conn -> *streams.History

func historyOf(js jetstream.JetStream) *streams.History {
	nc := js.Conn()
	if h, ok := histories.Load(nc); ok {
		return h.(*streams.History)
	}
	h, _ := histories.LoadOrStore(nc, streams.NewHistory(nc, js))
	return h.(*streams.History)
}

// operate appends the request for verb to id's history, fenced on the last
// message of the tree read with the state that admitted it: if anything
// lands in between, the state is read and checked again.
func operate(ctx context.Context, js jetstream.JetStream, id, verb string, r Request) (uint64, error) {
	if err := streams.ValidID(id); err != nil {
		return 0, err
	}
	if verb == schema.VerbResolve && r.Reason == "" {
		return 0, fmt.Errorf("resolve %s: a reason is required (say how it was settled)", id)
	}
	h := historyOf(js)
	id, err := currentRun(ctx, h, id)
	if err != nil {
		return 0, err
	}
	for attempt := 0; attempt < maxFenceRetries; attempt++ {
		evs, err := h.Read(ctx, id, 0)
		if err != nil {
			return 0, err
		}
		st := &state{id: id}
		st.add(evs)
		if st.start == nil {
			return 0, archivedError(ctx, h, id, fmt.Errorf("%w: %s", streams.ErrNotFound, id))
		}
		if err := st.applies(verb); err != nil {
			return 0, err
		}
		op := &schema.OperatorRequest{Verb: verb, Reason: r.Reason, Identity: r.Identity}
		m, err := streams.NewMsg(streams.OperatorSubject(id, st.lastSeq, verb), op)
		if err != nil {
			return 0, err
		}
		m.Header.Set(jetstream.MsgIDHeader, "op-"+id+"-"+strconv.FormatUint(st.lastSeq, 10)+"-"+verb)
		m.Header.Set(schema.HeaderWorkflowID, id)
		if size := streams.MsgSize(m); size > streams.MaxPayload(js.Conn())-512 {
			return 0, fmt.Errorf("%s %s: the request is %d bytes, over the server's max payload: shorten the reason", verb, id, size)
		}
		seq, _, err := h.Append(ctx, id, st.lastSeq, []*nats.Msg{m})
		if errors.Is(err, streams.ErrFenced) {
			continue // something landed meanwhile: check again on it
		}
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", verb, id, err)
		}
		return seq, nil
	}
	return 0, fmt.Errorf("%s %s: %w %d times in a row", verb, id, streams.ErrFenced, maxFenceRetries)
}

// ops is what a workflow's state holds of the operator requests in its
// history.
type ops struct {
	// finished is the last end read; nil while the workflow runs (a retry
	// reopens it).
	finished *schema.WorkflowFinished
	// retrySeq is the sequence of the retry request that reopened the
	// workflow last (0: never retried); its next end is recorded on
	// done.<status>.<retrySeq>.
	retrySeq uint64
	// cancelSeq is the sequence of the first cancel request (0: none).
	cancelSeq uint64
	// ending is a terminate or resolve request not yet followed by the end
	// it asks for, at endingSeq.
	ending    *schema.OperatorRequest
	endingSeq uint64
}

// operator applies an operator request read from the history to the
// state. A request the state does not admit (one published by hand, out of
// turn) changes nothing here.
func (s *state) operator(ev streams.Event) {
	op, ok := ev.Value.(*schema.OperatorRequest)
	if !ok {
		return
	}
	switch op.Verb {
	case schema.VerbCancel:
		if s.cancelSeq == 0 && !s.status.Terminal() {
			s.cancelSeq = ev.Seq
		}
	case schema.VerbTerminate:
		if s.ending == nil && !s.status.Terminal() {
			s.ending, s.endingSeq = op, ev.Seq
		}
	case schema.VerbResolve:
		if s.ending == nil && (s.status == schema.StatusManual || s.status == schema.StatusBlocked) {
			s.ending, s.endingSeq = op, ev.Seq
			s.status, s.blocked = schema.StatusRunning, ""
		}
	case schema.VerbRetry:
		if s.status == schema.StatusManual && s.finished != nil && s.finished.Retryable {
			s.status, s.finished, s.retrySeq = schema.StatusRunning, nil, ev.Seq
		}
	case schema.VerbResume:
		if s.status == schema.StatusBlocked {
			// Decided again, it records a blocked event again if it still
			// diverges, even for the same reason.
			s.status, s.blocked = schema.StatusRunning, ""
		}
	}
}

// operatorEnd is the end a terminate or resolve request asks for, or nil.
func (s *state) operatorEnd() *schema.WorkflowFinished {
	if s.ending == nil {
		return nil
	}
	status := schema.StatusTerminated
	if s.ending.Verb == schema.VerbResolve {
		status = schema.StatusResolved
	}
	return &schema.WorkflowFinished{Status: status, Reason: s.ending.Reason, Identity: s.ending.Identity}
}

// applies reports whether verb applies to the workflow in state s, with
// the reason when it does not.
func (s *state) applies(verb string) error {
	refuse := func(format string, args ...any) error {
		return &notApplicable{msg: fmt.Sprintf("workflow %s ", s.id) + fmt.Sprintf(format, args...)}
	}
	if s.ending != nil {
		return refuse("is being ended: %s requested at history seq %d", s.ending.Verb, s.endingSeq)
	}
	status := s.status
	switch verb {
	case schema.VerbCancel:
		if status != schema.StatusRunning && status != schema.StatusBlocked {
			return refuse("is %s: cancel applies to running or blocked workflows", status)
		}
		if s.cancelSeq != 0 {
			return refuse("has a cancel requested at history seq %d already", s.cancelSeq)
		}
	case schema.VerbTerminate:
		if status != schema.StatusRunning && status != schema.StatusBlocked {
			return refuse("is %s: terminate applies to running or blocked workflows", status)
		}
	case schema.VerbRetry:
		if status != schema.StatusManual {
			return refuse("is %s: retry applies to manual workflows", status)
		}
		if s.finished == nil || !s.finished.Retryable {
			reason := ""
			if s.finished != nil {
				reason = s.finished.Reason
			}
			return refuse("is manual and its code has returned (%s): nothing to retry; resolve it once settled", reason)
		}
	case schema.VerbResolve:
		if status != schema.StatusManual && status != schema.StatusBlocked {
			return refuse("is %s: resolve applies to manual or blocked workflows", status)
		}
	case schema.VerbResume:
		if status != schema.StatusBlocked {
			return refuse("is %s: resume applies to blocked workflows", status)
		}
	default:
		return fmt.Errorf("unknown verb %q: want one of cancel, terminate, retry, resolve, resume", verb)
	}
	return nil
}

// JSONInput converts a JSON document into a workflow input, the way a
// signal's JSON body is converted: numbers become integers where they are
// whole. An empty document is no input.
func JSONInput(data []byte) (schema.Raw, error) {
	return signalPayload(data, nats.Header{})
}

// WorkflowType returns the type workflow id was started with, read from
// its start event alone; ErrNotFound when it was never started.
func WorkflowType(ctx context.Context, js jetstream.JetStream, id string) (string, error) {
	if err := streams.ValidID(id); err != nil {
		return "", err
	}
	ev, err := historyOf(js).Last(ctx, streams.StartSubject(id))
	if err != nil {
		return "", err
	}
	if ev == nil {
		return "", fmt.Errorf("%w: %s", streams.ErrNotFound, id)
	}
	st, ok := ev.Value.(*schema.WorkflowStarted)
	if !ok {
		return "", fmt.Errorf("%w: %s (its start event is unreadable)", streams.ErrNotFound, id)
	}
	return st.Type, nil
}
