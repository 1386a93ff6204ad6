// Package console serves jetflow's web console: the workflow list with
// counts by status, one workflow's timeline, the operator actions and the
// dead letters, as server-rendered pages that work without JavaScript.
//
// The pages talk to a Backend, never to JetStream directly, and every action
// is the same engine operation as the CLI verb of that name: NATSBackend
// calls the engine's Go API.
package console

import (
	"context"
	"errors"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
)

// Backend is what the console's pages read and do. Every call does I/O and
// takes ctx first.
type Backend interface {
	// List returns one page of workflows, oldest start first, or, with a
	// status filter other than running, in the order they reached it.
	List(ctx context.Context, opts ListOptions) (Page, error)
	// Counts returns how many workflows are in each status.
	Counts(ctx context.Context) (map[schema.Status]int, error)
	// Describe returns a workflow's state and decoded history; an unknown
	// workflow is an error wrapping streams.ErrNotFound.
	Describe(ctx context.Context, id string) (*orchestrator.Description, error)
	// DescribeRun is Describe for run number run (1 the first) of a
	// workflow that continued as new; 0 is the current run.
	DescribeRun(ctx context.Context, id string, run int) (*orchestrator.Description, error)
	// DeadLetters returns one page of dead letters, newest first.
	DeadLetters(ctx context.Context, opts DeadLetterOptions) (DeadLetterPage, error)
	// DeadLetter returns the dead letter at stream sequence seq.
	DeadLetter(ctx context.Context, seq uint64) (*DeadLetter, error)
	// Act applies an operator verb to workflow id and returns the history
	// sequence it recorded.
	Act(ctx context.Context, verb Verb, id string, r Request) (seq uint64, err error)
	// Signal sends signal name with a JSON payload (may be empty) to
	// workflow id and returns what became of it.
	Signal(ctx context.Context, id, name string, payload []byte, r Request) (SignalVerdict, error)
	// Start starts workflow id of type wfType with a JSON input; started is
	// false when a workflow with that ID existed.
	Start(ctx context.Context, wfType, id string, input []byte, r Request) (started bool, err error)
}

// Verb is an operator action on one workflow.
type Verb string

// The operator verbs, each the engine operation of the CLI verb of the
// same name.
const (
	// VerbCancel asks the workflow to stop and compensate.
	VerbCancel Verb = "cancel"
	// VerbTerminate ends the workflow at once, without compensation.
	VerbTerminate Verb = "terminate"
	// VerbRetry runs a manual or blocked workflow's failed step again.
	VerbRetry Verb = "retry"
	// VerbResolve closes a manual workflow as settled by a person.
	VerbResolve Verb = "resolve"
	// VerbResume lets a blocked workflow decide again.
	VerbResume Verb = "resume"
)

// Verbs lists the operator verbs in the order the pages show them.
var Verbs = []Verb{VerbRetry, VerbResolve, VerbResume, VerbCancel, VerbTerminate}

// ErrNotAvailable means the engine this console was built with does not
// have the operation yet.
var ErrNotAvailable = errors.New("not available in this build")

// ErrNotApplicable means the verb does not apply to the workflow in its
// current status (retry of a completed workflow, ...).
var ErrNotApplicable = errors.New("not applicable to this workflow")

// Request says who asks for an action and why; both are recorded with it.
type Request struct {
	Reason   string
	Identity string
}

// ListOptions selects a page of workflows. Zero values select everything.
type ListOptions struct {
	Status schema.Status
	Type   string
	// Prefix keeps the IDs that start with it, out of the pages the other
	// filters select.
	Prefix string
	// Since and Until bound the start time (Until exclusive).
	Since, Until time.Time
	// Limit is the page size; zero means 50.
	Limit int
	// Cursor is a Page.Next from the previous page; empty for the first.
	Cursor string
}

// Summary is one workflow in a list.
type Summary struct {
	ID        string        `json:"id"`
	Status    schema.Status `json:"status"`
	Type      string        `json:"type,omitempty"`
	StartedAt time.Time     `json:"started_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	// Reason says why a workflow is manual or blocked.
	Reason string `json:"reason,omitempty"`
}

// Page is one page of a list; Next is the cursor of the following page,
// empty on the last.
type Page struct {
	Workflows []Summary `json:"workflows"`
	Next      string    `json:"next,omitempty"`
}

// SignalVerdict is what became of a signal: recorded in the history (at
// HistorySeq), or refused with Reason. StreamSeq is the signal's sequence
// in the signal stream. Recorded false with no Reason means no
// orchestrator gave a verdict while the console waited.
type SignalVerdict struct {
	Recorded   bool   `json:"recorded"`
	HistorySeq uint64 `json:"history_seq,omitempty"`
	Reason     string `json:"reason,omitempty"`
	StreamSeq  uint64 `json:"stream_seq"`
}

// DeadLetterOptions selects a page of dead letters.
type DeadLetterOptions struct {
	// Limit is the page size; zero means 50.
	Limit int
	// Cursor is a DeadLetterPage.Next; empty for the newest.
	Cursor string
}

// DeadLetterPage is one page of dead letters, newest first.
type DeadLetterPage struct {
	Letters []DeadLetter `json:"letters"`
	Next    string       `json:"next,omitempty"`
}

// DeadLetter is a refused message kept in the dead-letter stream.
type DeadLetter struct {
	// Seq is its sequence in the dead-letter stream.
	Seq uint64 `json:"seq"`
	// Origin is what refused it: the subject after "dlq.".
	Origin string    `json:"origin"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
	// SourceSubject, SourceStream and SourceSeq name the original message.
	SourceSubject string `json:"source_subject,omitempty"`
	SourceStream  string `json:"source_stream,omitempty"`
	SourceSeq     uint64 `json:"source_seq,omitempty"`
	// WorkflowID is the workflow the original concerned, when known.
	WorkflowID string `json:"workflow_id,omitempty"`
	// Truncated lists what was cut to fit the copy.
	Truncated string `json:"truncated,omitempty"`
	// Headers are the original's headers (Orig-*).
	Headers map[string][]string `json:"headers,omitempty"`
	// Body is the body as readable text: msgpack decoded to JSON, JSON
	// and text as they are.
	Body string `json:"body"`
	// Size is the body's size in bytes.
	Size int `json:"size"`
}
