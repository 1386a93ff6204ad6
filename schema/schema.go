// Package schema holds the types jetflow persists and sends on the wire: the
// events of a workflow history, the commands sent to participants, their
// results, and the codec that encodes them.
//
// Wire names are contracts. Every persisted type has a stable string name
// (Kind) and a schema version that travel in message headers; they are never
// derived from Go type names. The golden-byte tests in this package pin the
// encoding, so a refactor cannot silently change what is on disk.
//
// The package is dependency-light on purpose: it imports only the msgpack
// codec, so any service (a participant written by another team, a reporting
// job) can decode jetflow messages without pulling in the engine.
package schema

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Version is the schema version written with every message jetflow produces.
// A reader refuses messages with a higher version than it knows.
const Version = 1

// Header names. They are part of the wire contract.
const (
	// HeaderKind names the type of the message body (one of the Kind constants).
	HeaderKind = "Jetflow-Kind"
	// HeaderSchema carries the schema version of the body.
	HeaderSchema = "Jetflow-Schema"
	// HeaderContentType is the standard content type header. jetflow writes
	// ContentTypeMsgpack; intake also accepts ContentTypeJSON.
	HeaderContentType = "Content-Type"
	// HeaderReason is set on dead-letter messages: why the message was refused.
	HeaderReason = "Jetflow-Reason"
	// HeaderSourceSubject and HeaderSourceSeq are set on dead-letter messages:
	// where the refused message came from.
	HeaderSourceSubject = "Jetflow-Source-Subject"
	HeaderSourceSeq     = "Jetflow-Source-Seq"
	// HeaderSourceStream is set on dead-letter messages: the stream that
	// holds the refused message, at HeaderSourceSeq.
	HeaderSourceStream = "Jetflow-Source-Stream"
	// HeaderTruncated is set on a dead-letter message that had to be cut to
	// fit the server's max payload: what was cut, from what size to what
	// size. The original stays whole in its source stream.
	HeaderTruncated = "Jetflow-Truncated"
	// HeaderWorkflowID names the workflow a message belongs to, when known.
	HeaderWorkflowID = "Jetflow-Workflow-Id"
	// HeaderStatus is set on terminal events: the final workflow status.
	HeaderStatus = "Jetflow-Status"
)

// Content types.
const (
	ContentTypeMsgpack = "application/msgpack"
	ContentTypeJSON    = "application/json"
)

// Kind is the stable wire name of a persisted type.
type Kind string

// The kinds of message jetflow writes.
const (
	KindWorkflowStarted  Kind = "workflow.started"
	KindCommand          Kind = "command"
	KindMarker           Kind = "marker"
	KindResult           Kind = "result"
	KindWorkflowFinished Kind = "workflow.finished"
	KindWorkflowBlocked  Kind = "workflow.blocked"
	KindTimerStarted     Kind = "timer.started"
	KindTimerCancelled   Kind = "timer.cancelled"
	KindTimerFired       Kind = "timer.fired"
	KindSignal           Kind = "signal"
	KindStepCancelled    Kind = "step.cancelled"
	// The operator requests, one kind per verb (see OperatorRequest).
	KindCancelRequested    Kind = "operator.cancel"
	KindTerminateRequested Kind = "operator.terminate"
	KindRetryRequested     Kind = "operator.retry"
	KindResolveRequested   Kind = "operator.resolve"
	KindResumeRequested    Kind = "operator.resume"
)

// Kinded is implemented by every persisted type.
type Kinded interface {
	// Kind returns the stable wire name of the type.
	Kind() Kind
}

// Status is the state of a workflow as its history shows it.
type Status string

// Workflow states.
const (
	// StatusRunning: started and not finished.
	StatusRunning Status = "running"
	// StatusCompleted: the workflow function returned without error.
	StatusCompleted Status = "completed"
	// StatusCompensated: the workflow failed and every compensation succeeded
	// (or there was nothing to compensate).
	StatusCompensated Status = "compensated"
	// StatusManual: the workflow needs a person, for example because a
	// compensation failed for good. The reason is in the terminal event.
	StatusManual Status = "manual"
	// StatusFailed: the workflow function returned an error without
	// compensating (not a ManualError, not the error of a saga's
	// compensation), as a Temporal workflow ends Failed. The error, its kind
	// and whether it is retryable are in the terminal event.
	StatusFailed Status = "failed"
	// StatusBlocked: the workflow code no longer matches its history
	// (nondeterminism). The workflow is parked; nothing is sent for it.
	StatusBlocked Status = "blocked"
	// StatusCancelled: an operator cancelled the workflow and its code
	// returned the cancellation (after compensating what it had done).
	StatusCancelled Status = "cancelled"
	// StatusTerminated: an operator stopped the workflow at once, without
	// running any more of its code; nothing was compensated.
	StatusTerminated Status = "terminated"
	// StatusResolved: a person settled a manual (or blocked) workflow by
	// hand; it has left the manual queue.
	StatusResolved Status = "resolved"
	// StatusContinuedAsNew: the run returned workflow.ContinueAsNew; the
	// workflow goes on in its next run (WorkflowFinished.NextRun), under
	// the same workflow ID, with a history that starts empty.
	StatusContinuedAsNew Status = "continued-as-new"
)

// Terminal reports whether no further decision will be made for s. A
// manual workflow is terminal until an operator retries it (see
// OperatorRequest): then it runs again and ends anew.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusCompensated, StatusManual, StatusCancelled, StatusTerminated, StatusResolved:
		return true
	case StatusFailed:
		return true
	case StatusContinuedAsNew:
		return true
	}
	return false
}

// Valid reports whether s is one of the known states.
func (s Status) Valid() bool {
	switch s {
	case StatusRunning, StatusCompleted, StatusCompensated, StatusManual, StatusBlocked,
		StatusCancelled, StatusTerminated, StatusResolved:
		return true
	case StatusFailed:
		return true
	case StatusContinuedAsNew:
		return true
	}
	return false
}

// WorkflowStarted is the first event of every history.
type WorkflowStarted struct {
	WorkflowID string `msgpack:"workflow_id" json:"workflow_id"`
	// Type is the registered name of the workflow function.
	Type string `msgpack:"type" json:"type"`
	// Input is the msgpack-encoded argument of the workflow function.
	Input Raw `msgpack:"input" json:"input"`
	// Source says what started it, e.g. "order.created#42".
	Source string `msgpack:"source,omitempty" json:"source,omitempty"`
	// ClockOffset shifts the workflow's clock: its time is the stream time
	// of its events plus ClockOffset. Zero in production; a test
	// environment whose clock was moved forward records how far, so a
	// workflow started after the move lives on the moved clock, as its
	// timers do.
	ClockOffset time.Duration `msgpack:"clock_offset,omitempty" json:"clock_offset,omitempty"`
	// Run is the run number of a workflow that continued as new: 2 for
	// the run after the first, and so on; 0 (or 1) for the first run.
	Run int `msgpack:"run,omitempty" json:"run,omitempty"`
	// Parent is set on a child workflow's start: the parent and its
	// decision that started it.
	Parent *ChildOf `msgpack:"parent,omitempty" json:"parent,omitempty"`
	// Signal is the signal of a signal-with-start that started the
	// workflow: replay hands it to the code before any other event.
	Signal *Signal `msgpack:"signal,omitempty" json:"signal,omitempty"`
}

// Kind implements Kinded.
func (WorkflowStarted) Kind() Kind { return KindWorkflowStarted }

// RetryPolicy says how a participant retries a failing command. It travels
// with the command, so the participant applies the policy the workflow chose.
type RetryPolicy struct {
	// InitialInterval is the delay before the second attempt.
	InitialInterval time.Duration `msgpack:"initial" json:"initial_interval"`
	// BackoffCoefficient multiplies the delay after each attempt.
	BackoffCoefficient float64 `msgpack:"coef" json:"backoff_coefficient"`
	// MaxInterval caps the delay between attempts.
	MaxInterval time.Duration `msgpack:"max_interval" json:"max_interval"`
	// MaxAttempts is the number of attempts before the command fails for
	// good; 0 means unlimited.
	MaxAttempts int `msgpack:"max_attempts" json:"max_attempts"`
	// NonRetryable lists error kinds that fail the command at once.
	NonRetryable []string `msgpack:"non_retryable,omitempty" json:"non_retryable,omitempty"`
}

// Delay returns the wait before attempt number next (2 for the first retry).
func (p RetryPolicy) Delay(next int) time.Duration {
	d := float64(p.InitialInterval)
	if d <= 0 {
		d = float64(time.Second)
	}
	coef := p.BackoffCoefficient
	if coef < 1 {
		coef = 1
	}
	for i := 2; i < next; i++ {
		d *= coef
		if p.MaxInterval > 0 && d >= float64(p.MaxInterval) {
			return p.MaxInterval
		}
	}
	if p.MaxInterval > 0 && d > float64(p.MaxInterval) {
		return p.MaxInterval
	}
	return time.Duration(d)
}

// Exhausted reports whether attempt was the last one the policy allows.
func (p RetryPolicy) Exhausted(attempt int) bool {
	return p.MaxAttempts > 0 && attempt >= p.MaxAttempts
}

// IsNonRetryable reports whether errors of this kind must not be retried.
func (p RetryPolicy) IsNonRetryable(kind string) bool {
	for _, k := range p.NonRetryable {
		if k == kind {
			return true
		}
	}
	return false
}

// Command is a request to a participant to perform one step. It is recorded
// in the workflow history and is, in the same message, what the participant
// consumes: recording a command and sending it is one write.
type Command struct {
	WorkflowID string `msgpack:"workflow_id" json:"workflow_id"`
	// ID numbers the decisions of a workflow: 1, 2, 3, ... in issue order.
	ID int `msgpack:"id" json:"id"`
	// Service and Action name the step, e.g. "payment" and "charge".
	Service string `msgpack:"service" json:"service"`
	Action  string `msgpack:"action" json:"action"`
	// Input is the msgpack-encoded argument.
	Input Raw `msgpack:"input" json:"input"`
	// IdempotencyKey is unique per command and stable across redeliveries.
	IdempotencyKey string `msgpack:"idempotency_key" json:"idempotency_key"`
	// ReplyTo is the subject the result must be published to.
	ReplyTo string `msgpack:"reply_to" json:"reply_to"`
	// StartToClose bounds one attempt of the handler.
	StartToClose time.Duration `msgpack:"start_to_close" json:"start_to_close"`
	Retry        RetryPolicy   `msgpack:"retry" json:"retry"`
	// ScheduleToClose bounds the command's total time across attempts,
	// from when it was recorded (its stream timestamp); 0: no bound.
	// Once it has passed, the participant answers a final "timeout"
	// failure instead of trying again.
	ScheduleToClose time.Duration `msgpack:"schedule_to_close,omitempty" json:"schedule_to_close,omitempty"`
	// HeartbeatTimeout fails an attempt whose handler goes that long
	// without a heartbeat (participants' Command.Heartbeat) as a retryable
	// "timeout"; 0: no heartbeat required.
	HeartbeatTimeout time.Duration `msgpack:"heartbeat_timeout,omitempty" json:"heartbeat_timeout,omitempty"`
	// Compensation marks a command issued by a saga to undo a step.
	Compensation bool `msgpack:"compensation,omitempty" json:"compensation,omitempty"`
}

// Kind implements Kinded.
func (Command) Kind() Kind { return KindCommand }

// Marker records a value the workflow computed once and must see again on
// replay: a side effect (random number, generated ID) or a version choice.
type Marker struct {
	// ID shares the numbering of Command.ID.
	ID    int    `msgpack:"id" json:"id"`
	Name  string `msgpack:"name" json:"name"`
	Value Raw    `msgpack:"value" json:"value"`
}

// Kind implements Kinded.
func (Marker) Kind() Kind { return KindMarker }

// Error is a step failure as it travels in a result.
type Error struct {
	// Kind classifies the failure ("declined", "timeout", ...); workflows
	// branch on it and retry policies list non-retryable kinds.
	Kind    string `msgpack:"kind" json:"kind"`
	Message string `msgpack:"message" json:"message"`
}

// FailedAttempt is a participant's note of the last failed attempt of a
// command it will try again: the JSON value of key
// <service>.<idempotency key> in the attempts bucket, rewritten at each
// failed attempt. It is not part of any history: `jetflow show` reads it
// for the steps a workflow waits on. A command's final failure, like its
// success, is its Result.
type FailedAttempt struct {
	WorkflowID string `json:"workflow_id"`
	CommandID  int    `json:"command_id"`
	// Attempt is the number of the attempt that failed, from 1.
	Attempt int `json:"attempt"`
	// Kind and Error are its failure, as a Result's Error would carry it.
	Kind  string `json:"kind"`
	Error string `json:"error"`
	// At is when it failed; NextRetry when the next attempt is due.
	At        time.Time `json:"at"`
	NextRetry time.Time `json:"next_retry"`
}

// Result is a participant's answer to a command.
type Result struct {
	WorkflowID string `msgpack:"workflow_id" json:"workflow_id"`
	// CommandID is the Command.ID this answers.
	CommandID int    `msgpack:"command_id" json:"command_id"`
	Service   string `msgpack:"service" json:"service"`
	Action    string `msgpack:"action" json:"action"`
	// Output is the msgpack-encoded return value; empty on failure.
	Output Raw `msgpack:"output,omitempty" json:"output,omitempty"`
	// Error is set when the command failed for good.
	Error *Error `msgpack:"error,omitempty" json:"error,omitempty"`
	// Attempts is how many attempts it took.
	Attempts int `msgpack:"attempts" json:"attempts"`
}

// Kind implements Kinded.
func (Result) Kind() Kind { return KindResult }

// WorkflowFinished is the terminal event of a history.
type WorkflowFinished struct {
	Status Status `msgpack:"status" json:"status"`
	// Output is the msgpack-encoded return value, on completion.
	Output Raw `msgpack:"output,omitempty" json:"output,omitempty"`
	// Error is the error the workflow returned, if any.
	Error string `msgpack:"error,omitempty" json:"error,omitempty"`
	// Reason says why a person is needed (StatusManual), or why an
	// operator ended it (StatusTerminated, StatusResolved).
	Reason string `msgpack:"reason,omitempty" json:"reason,omitempty"`
	// ErrorKind classifies Error: the kind of the workflow's application
	// error, or of the failed step it returned ("declined", ...).
	ErrorKind string `msgpack:"error_kind,omitempty" json:"error_kind,omitempty"`
	// NonRetryable is set when the workflow's application error says that
	// running it again cannot succeed.
	NonRetryable bool `msgpack:"non_retryable,omitempty" json:"non_retryable,omitempty"`
	// Retryable is set on a manual end whose code waits for an operator's
	// retry (a compensation failed for good): a retry request re-sends the
	// failed compensations. A manual end without it (the code returned a
	// ManualError) has nothing to retry.
	Retryable bool `msgpack:"retryable,omitempty" json:"retryable,omitempty"`
	// Identity names the operator who ended it (StatusTerminated,
	// StatusResolved).
	Identity string `msgpack:"identity,omitempty" json:"identity,omitempty"`
	// NextRun is the run a StatusContinuedAsNew end continues in, and
	// NextInput that run's input (msgpack): the next run's start event is
	// written from them, again after a crash.
	NextRun   int `msgpack:"next_run,omitempty" json:"next_run,omitempty"`
	NextInput Raw `msgpack:"next_input,omitempty" json:"next_input,omitempty"`
}

// Kind implements Kinded.
func (WorkflowFinished) Kind() Kind { return KindWorkflowFinished }

// WorkflowBlocked records that replay diverged from the history.
type WorkflowBlocked struct {
	// Reason is the full, human-readable error.
	Reason string `msgpack:"reason" json:"reason"`
	// EventSeq is the stream sequence of the history event that did not match
	// (0 when the code issued more than the history holds).
	EventSeq uint64 `msgpack:"event_seq" json:"event_seq"`
	// Recorded and Issued describe the recorded decision and the new one.
	Recorded string `msgpack:"recorded" json:"recorded"`
	Issued   string `msgpack:"issued" json:"issued"`
}

// Kind implements Kinded.
func (WorkflowBlocked) Kind() Kind { return KindWorkflowBlocked }

// TimerStarted is the decision to wait until Due. The timer service fires
// it into the history as TimerFired.
type TimerStarted struct {
	// ID shares the numbering of Command.ID.
	ID       int           `msgpack:"id" json:"id"`
	Duration time.Duration `msgpack:"duration" json:"duration"`
	Due      time.Time     `msgpack:"due" json:"due"`
}

// Kind implements Kinded.
func (TimerStarted) Kind() Kind { return KindTimerStarted }

// TimerCancelled is the decision to drop a started timer; a fire for it that
// still arrives is ignored.
type TimerCancelled struct {
	// ID is this decision's number; TimerID the cancelled timer's.
	ID      int `msgpack:"id" json:"id"`
	TimerID int `msgpack:"timer_id" json:"timer_id"`
}

// Kind implements Kinded.
func (TimerCancelled) Kind() Kind { return KindTimerCancelled }

// TimerFired records that a timer's due time passed. Only the first fire of
// a timer counts; a fire whose Due differs from the started timer's is not
// for it and is ignored.
type TimerFired struct {
	TimerID int       `msgpack:"timer_id" json:"timer_id"`
	Due     time.Time `msgpack:"due" json:"due"`
}

// Kind implements Kinded.
func (TimerFired) Kind() Kind { return KindTimerFired }

// StepCancelled is the decision to stop waiting for a command's result:
// its context was cancelled. The participant that runs the command is told
// (its handler's context is cancelled) and answers it with a final
// "cancelled" failure; a result that still comes is recorded and ignored.
type StepCancelled struct {
	// ID is this decision's number; CommandID the cancelled command's.
	ID        int `msgpack:"id" json:"id"`
	CommandID int `msgpack:"command_id" json:"command_id"`
}

// Kind implements Kinded.
func (StepCancelled) Kind() Kind { return KindStepCancelled }

// Signal is a message sent to a running workflow from outside.
type Signal struct {
	Name string `msgpack:"name" json:"name"`
	// Payload is the msgpack-encoded body (JSON bodies are converted).
	Payload Raw `msgpack:"payload,omitempty" json:"payload,omitempty"`
	// Source says where it came from, e.g. "signal.carrier.picked_up.o-1#12".
	Source string `msgpack:"source,omitempty" json:"source,omitempty"`
}

// Kind implements Kinded.
func (Signal) Kind() Kind { return KindSignal }

// The operator verbs, as OperatorRequest.Verb and in the request's kind
// ("operator.<verb>").
const (
	VerbCancel    = "cancel"
	VerbTerminate = "terminate"
	VerbRetry     = "retry"
	VerbResolve   = "resolve"
	VerbResume    = "resume"
)

// OperatorRequest records a person's (or a program's) action on a
// workflow: who asked, why, and what. It is appended to the history,
// fenced on the tree's last message, on wf.<id>.op.<seq>.<verb>, and it
// wakes the decision loop like a result:
//
//   - cancel: delivered to the workflow code in history order, it cancels
//     the workflow's root context (workflow.ErrCanceled);
//   - terminate: the workflow ends terminated at the next decision, its
//     code not run again;
//   - retry: a manual workflow waiting in Saga.Compensate re-sends its
//     failed compensations as new commands;
//   - resolve: the workflow ends resolved at the next decision;
//   - resume: a blocked workflow is replayed with the current code.
type OperatorRequest struct {
	// Verb is one of the Verb constants; the kind is "operator.<verb>".
	Verb string `msgpack:"verb" json:"verb"`
	// Reason says why, in the operator's words.
	Reason string `msgpack:"reason,omitempty" json:"reason,omitempty"`
	// Identity names who asked, e.g. "alice@ops-1".
	Identity string `msgpack:"identity,omitempty" json:"identity,omitempty"`
}

// Kind implements Kinded.
func (o OperatorRequest) Kind() Kind { return Kind("operator." + o.Verb) }

// ErrUnknownKind is returned when a message names a kind this version of
// jetflow does not know.
var ErrUnknownKind = errors.New("jetflow: unknown message kind")

// ErrFutureSchema is returned when a message was written by a newer schema.
var ErrFutureSchema = errors.New("jetflow: message from a newer schema version")

// New returns a zero value of the type named by kind.
func New(kind Kind) (Kinded, error) {
	switch kind {
	case KindWorkflowStarted:
		return &WorkflowStarted{}, nil
	case KindCommand:
		return &Command{}, nil
	case KindMarker:
		return &Marker{}, nil
	case KindResult:
		return &Result{}, nil
	case KindWorkflowFinished:
		return &WorkflowFinished{}, nil
	case KindWorkflowBlocked:
		return &WorkflowBlocked{}, nil
	case KindTimerStarted:
		return &TimerStarted{}, nil
	case KindTimerCancelled:
		return &TimerCancelled{}, nil
	case KindTimerFired:
		return &TimerFired{}, nil
	case KindSignal:
		return &Signal{}, nil
	case KindStepCancelled:
		return &StepCancelled{}, nil
	case KindCancelRequested, KindTerminateRequested, KindRetryRequested, KindResolveRequested, KindResumeRequested:
		return &OperatorRequest{Verb: strings.TrimPrefix(string(kind), "operator.")}, nil
	case KindUpdateAccepted:
		return &UpdateAccepted{}, nil
	case KindUpdateCompleted:
		return &UpdateCompleted{}, nil
	case KindChildStarted:
		return &ChildStarted{}, nil
	case KindChildCancelRequested:
		return &ChildCancelRequested{}, nil
	case KindChildEnded:
		return &ChildEnded{}, nil
	case KindSignalExternal:
		return &SignalExternal{}, nil
	case KindSignalExternalDone:
		return &SignalExternalDone{}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownKind, kind)
}
