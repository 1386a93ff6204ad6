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
	// StatusBlocked: the workflow code no longer matches its history
	// (nondeterminism). The workflow is parked; nothing is sent for it.
	StatusBlocked Status = "blocked"
)

// Terminal reports whether no further decision will be made for s.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusCompensated || s == StatusManual
}

// Valid reports whether s is one of the known states.
func (s Status) Valid() bool {
	switch s {
	case StatusRunning, StatusCompleted, StatusCompensated, StatusManual, StatusBlocked:
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
	// Reason says why a person is needed (StatusManual).
	Reason string `msgpack:"reason,omitempty" json:"reason,omitempty"`
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
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownKind, kind)
}
