package streams

import "strings"

// Subjects of workflow queries and updates.
//
// A query or update request is core NATS request/reply, answered by one
// orchestrator of the queue group QueueGroup:
//
//	jetflow.query.<workflow id>    read-only: replay, call the query handler
//	jetflow.update.<workflow id>   validate, record, wait for the handler
//
// An accepted update is recorded in the history on wf.<id>.update.<update
// id> (it wakes a decision, like a signal), and the handler's return on
// wf.<id>.update.<update id>.done (a decision, written once: the subject
// holds one message).
const (
	// QueryPrefix starts the subjects queries are asked on.
	QueryPrefix = "jetflow.query"
	// UpdatePrefix starts the subjects updates are sent on.
	UpdatePrefix = "jetflow.update"
	// QueueGroup is the queue group of the orchestrators' query and update
	// subscriptions: one orchestrator answers each request.
	QueueGroup = "jetflow-orchestrator"
	// UpdateFilter matches every accepted-update event.
	UpdateFilter = "wf.*." + tokUpdate + ".*"
	// UpdateDoneFilter matches every update-completed event.
	UpdateDoneFilter = "wf.*." + tokUpdate + ".*." + tokDone

	tokUpdate = "update"
)

// QuerySubject is where queries to workflow id are asked.
func QuerySubject(id string) string { return QueryPrefix + "." + id }

// UpdateRequestSubject is where updates to workflow id are sent.
func UpdateRequestSubject(id string) string { return UpdatePrefix + "." + id }

// UpdateSubject records the acceptance of update uid of workflow id.
func UpdateSubject(id, uid string) string { return "wf." + id + "." + tokUpdate + "." + uid }

// UpdateDoneSubject records the completion of update uid of workflow id.
func UpdateDoneSubject(id, uid string) string { return UpdateSubject(id, uid) + "." + tokDone }

// isUpdateSubject reports whether subject is uid's acceptance (done=false)
// or completion (done=true) subject in workflow id's tree.
func isUpdateSubject(subject, id, uid string, done bool) bool {
	if done {
		return subject == UpdateDoneSubject(id, uid)
	}
	return subject == UpdateSubject(id, uid) && !strings.Contains(uid, ".")
}
