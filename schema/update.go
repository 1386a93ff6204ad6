package schema

// The kinds of a workflow update's two history events.
const (
	// KindUpdateAccepted records an update an orchestrator validated
	// against the workflow's replayed state: replay hands it to the
	// workflow's update handler at this point of the history.
	KindUpdateAccepted Kind = "update.accepted"
	// KindUpdateCompleted records what the update handler returned: the
	// caller's wait is answered from it.
	KindUpdateCompleted Kind = "update.completed"
)

// UpdateAccepted is an update to a running workflow that passed its
// validator. It is recorded once per UpdateID, on its own subject.
type UpdateAccepted struct {
	// UpdateID is chosen by the caller and stable across its retries.
	UpdateID string `msgpack:"update_id" json:"update_id"`
	// Name is the update handler's name.
	Name string `msgpack:"name" json:"name"`
	// Arg is the msgpack-encoded argument (a JSON argument is converted).
	Arg Raw `msgpack:"arg,omitempty" json:"arg,omitempty"`
}

// Kind implements Kinded.
func (UpdateAccepted) Kind() Kind { return KindUpdateAccepted }

// UpdateCompleted is the decision that records an update handler's return.
type UpdateCompleted struct {
	// ID shares the numbering of Command.ID.
	ID       int    `msgpack:"id" json:"id"`
	UpdateID string `msgpack:"update_id" json:"update_id"`
	Name     string `msgpack:"name" json:"name"`
	// Output is the msgpack-encoded return value, when Error is empty.
	Output Raw `msgpack:"output,omitempty" json:"output,omitempty"`
	// Error is the error the handler returned (or why it never returned:
	// the workflow ended first).
	Error string `msgpack:"error,omitempty" json:"error,omitempty"`
}

// Kind implements Kinded.
func (UpdateCompleted) Kind() Kind { return KindUpdateCompleted }
