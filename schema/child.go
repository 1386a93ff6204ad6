package schema

// The kinds of the history events of child workflows and of signals one
// workflow sends another.
const (
	// KindChildStarted is the parent's decision to start a child workflow.
	KindChildStarted Kind = "child.started"
	// KindChildCancelRequested is the parent's decision to cancel a child
	// it started: its context (or the scope the child was started on) was
	// cancelled.
	KindChildCancelRequested Kind = "child.cancel"
	// KindChildEnded records in the parent's history how a child ended.
	KindChildEnded Kind = "child.ended"
	// KindSignalExternal is a workflow's decision to signal another one.
	KindSignalExternal Kind = "signal.external"
	// KindSignalExternalDone records in the sender's history that the
	// signal it decided to send is stored (or why it could not be).
	KindSignalExternalDone Kind = "signal.external.done"
)

// The parent-close policies of a child workflow (ChildStarted.ParentClose):
// what happens to a child still running when its parent ends.
const (
	// ParentCloseTerminate terminates the child (the default, as Temporal).
	ParentCloseTerminate = "terminate"
	// ParentCloseRequestCancel asks the child to cancel: it may compensate.
	ParentCloseRequestCancel = "request_cancel"
	// ParentCloseAbandon leaves the child running on its own.
	ParentCloseAbandon = "abandon"
)

// ChildOf names the parent of a child workflow in the child's start event.
type ChildOf struct {
	// WorkflowID is the parent's ID.
	WorkflowID string `msgpack:"workflow_id" json:"workflow_id"`
	// Child is the number of the parent's ChildStarted decision.
	Child int `msgpack:"child" json:"child"`
}

// ChildStarted is a parent's decision to start a child workflow. The
// orchestrator that records it then writes the child's start event, once
// (expected last subject sequence 0), with Parent set.
type ChildStarted struct {
	// ID shares the numbering of Command.ID.
	ID int `msgpack:"id" json:"id"`
	// ChildID is the child's workflow ID.
	ChildID string `msgpack:"child_id" json:"child_id"`
	// Type is the child's registered workflow type.
	Type string `msgpack:"type" json:"type"`
	// Input is the msgpack-encoded argument of the child.
	Input Raw `msgpack:"input,omitempty" json:"input,omitempty"`
	// ParentClose is one of the ParentClose constants; empty is
	// ParentCloseTerminate.
	ParentClose string `msgpack:"parent_close,omitempty" json:"parent_close,omitempty"`
}

// Kind implements Kinded.
func (ChildStarted) Kind() Kind { return KindChildStarted }

// ChildCancelRequested is a parent's decision to cancel child Child: the
// orchestrator records an operator cancel request in the child's history.
type ChildCancelRequested struct {
	// ID is this decision's number; Child the ChildStarted decision's.
	ID    int `msgpack:"id" json:"id"`
	Child int `msgpack:"child" json:"child"`
}

// Kind implements Kinded.
func (ChildCancelRequested) Kind() Kind { return KindChildCancelRequested }

// ChildEnded records in the parent's history how child Child ended: it
// is written once, by the orchestrator that recorded the child's end, on
// a subject of its own (written once).
type ChildEnded struct {
	// Child is the number of the parent's ChildStarted decision.
	Child   int    `msgpack:"child" json:"child"`
	ChildID string `msgpack:"child_id" json:"child_id"`
	// Status is the child's terminal status.
	Status Status `msgpack:"status" json:"status"`
	// Output is the child's msgpack-encoded return value, on completion.
	Output Raw `msgpack:"output,omitempty" json:"output,omitempty"`
	// Error, ErrorKind and NonRetryable are the child's end's.
	Error        string `msgpack:"error,omitempty" json:"error,omitempty"`
	ErrorKind    string `msgpack:"error_kind,omitempty" json:"error_kind,omitempty"`
	NonRetryable bool   `msgpack:"non_retryable,omitempty" json:"non_retryable,omitempty"`
}

// Kind implements Kinded.
func (ChildEnded) Kind() Kind { return KindChildEnded }

// SignalExternal is a workflow's decision to send signal Name to workflow
// WorkflowID. The orchestrator that records it publishes the signal on
// signal.<name>.<workflow id> (its message ID derived from the sender and
// the decision, so a repeat is dropped), then records SignalExternalDone.
type SignalExternal struct {
	// ID shares the numbering of Command.ID.
	ID         int    `msgpack:"id" json:"id"`
	WorkflowID string `msgpack:"workflow_id" json:"workflow_id"`
	Name       string `msgpack:"name" json:"name"`
	// Payload is the msgpack-encoded body.
	Payload Raw `msgpack:"payload,omitempty" json:"payload,omitempty"`
}

// Kind implements Kinded.
func (SignalExternal) Kind() Kind { return KindSignalExternal }

// SignalExternalDone records that the signal of decision Signal is stored
// in the signals stream at Seq, or why it was not sent (Error).
type SignalExternalDone struct {
	Signal int    `msgpack:"signal" json:"signal"`
	Seq    uint64 `msgpack:"seq,omitempty" json:"seq,omitempty"`
	// Error is SignalExternalNotFound, SignalExternalEnded,
	// SignalExternalRefused followed by the server's reason, or another
	// reason in words; empty when the signal is stored.
	Error string `msgpack:"error,omitempty" json:"error,omitempty"`
}

// The reasons a signal to another workflow is not sent
// (SignalExternalDone.Error).
const (
	// SignalExternalNotFound: the target workflow was never started.
	SignalExternalNotFound = "not_found"
	// SignalExternalEnded: the target workflow has ended.
	SignalExternalEnded = "ended"
	// SignalExternalRefused begins the reason of a signal the signals
	// stream refused to store: it was full (--signals-max-bytes). The
	// stream's name and the server's words follow ("JETFLOW_SIGNALS:
	// maximum bytes exceeded").
	SignalExternalRefused = "refused: "
)

// Kind implements Kinded.
func (SignalExternalDone) Kind() Kind { return KindSignalExternalDone }
