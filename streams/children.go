package streams

import (
	"strconv"
	"strings"
)

// Subjects of child workflows and of signals between workflows, in the
// parent's (or the sender's) tree:
//
//	wf.<id>.child.<n>              decision n: start a child (schema.ChildStarted)
//	wf.<id>.child.<n>.cancel       decision: cancel child n (schema.ChildCancelRequested)
//	wf.<id>.child.<n>.done         child n ended (schema.ChildEnded), written once
//	wf.<id>.sigout.<n>             decision n: signal another workflow (schema.SignalExternal)
//	wf.<id>.sigout.<n>.done        that signal is stored, or why not (schema.SignalExternalDone)
//
// Each subject holds one message: the decisions are fenced like every
// decision, the two events are written with an expected last subject
// sequence of 0, so a repeat after a crash is refused by the server.
const (
	tokChild  = "child"
	tokSigOut = "sigout"

	// ChildFilter matches every child decision and event.
	ChildFilter = "wf.*." + tokChild + ".>"
	// ChildDoneFilter matches every child end recorded in a parent: it
	// wakes the parent's decision.
	ChildDoneFilter = "wf.*." + tokChild + ".*." + tokDone
	// SignalOutFilter matches every signal decision and event.
	SignalOutFilter = "wf.*." + tokSigOut + ".>"
	// SignalOutDoneFilter matches every sent-signal event: it wakes the
	// sender's decision.
	SignalOutDoneFilter = "wf.*." + tokSigOut + ".*." + tokDone
)

// ChildSubject records decision n of workflow id: start a child.
func ChildSubject(id string, n int) string {
	return "wf." + id + "." + tokChild + "." + strconv.Itoa(n)
}

// ChildCancelSubject records the decision to cancel the child of decision n.
func ChildCancelSubject(id string, n int) string { return ChildSubject(id, n) + ".cancel" }

// ChildDoneSubject records how the child of decision n ended.
func ChildDoneSubject(id string, n int) string { return ChildSubject(id, n) + "." + tokDone }

// SignalOutSubject records decision n of workflow id: signal another workflow.
func SignalOutSubject(id string, n int) string {
	return "wf." + id + "." + tokSigOut + "." + strconv.Itoa(n)
}

// SignalOutDoneSubject records that the signal of decision n is stored.
func SignalOutDoneSubject(id string, n int) string { return SignalOutSubject(id, n) + "." + tokDone }

// ChildID is the ID of the child workflow decision n of parent (a
// history ID) starts when the code names none: in the engine's namespace,
// so no user start takes it. A run after the first derives its children's
// IDs under a kind of their own, with the run number first, so they meet
// neither the first run's nor another workflow's.
func ChildID(parent string, n int) string {
	if id, run := ParseRunID(parent); run > 1 {
		return DerivedID("runchild", strconv.Itoa(run), id, strconv.Itoa(n))
	}
	return DerivedID("child", parent, strconv.Itoa(n))
}

// SignalOutMsgID is the message ID of the signal decision n of workflow
// id sends: a repeat of the publish after a crash is dropped by the
// signals stream's duplicate window.
func SignalOutMsgID(id string, n int) string { return "sigout-" + id + "-" + strconv.Itoa(n) }

// isChildSubject reports whether subject is one of the child subjects of
// decision n in id's tree (suffix "", ".cancel" or ".done").
func isChildSubject(subject, id string, n int, suffix string) bool {
	return subject == ChildSubject(id, n)+suffix
}

// isSignalOutSubject is isChildSubject for sent signals.
func isSignalOutSubject(subject, id string, n int, done bool) bool {
	if done {
		return subject == SignalOutDoneSubject(id, n)
	}
	return subject == SignalOutSubject(id, n) && !strings.HasSuffix(subject, "."+tokDone)
}
