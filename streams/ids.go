package streams

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/jetflow-io/jetflow/schema"
)

// ReservedIDPrefix starts every workflow ID the engine derives itself: the
// workflows a late signal starts (and child workflows, later). No user ID
// may start with it, so a user order cannot take the ID of a workflow the
// engine is about to start, and the engine's starts cannot be squatted.
const ReservedIDPrefix = "_"

// ValidUserID reports an error unless id can name a workflow started from
// outside the engine: a valid ID (ValidID) outside the reserved namespace.
func ValidUserID(id string) error {
	if err := ValidID(id); err != nil {
		return err
	}
	if strings.HasPrefix(id, ReservedIDPrefix) {
		return fmt.Errorf("invalid workflow id %q: ids starting with %q are reserved for the workflows the engine starts itself", id, ReservedIDPrefix)
	}
	return nil
}

// maxIDLen is the longest workflow ID (see ValidID).
const maxIDLen = 128

// DerivedID returns the ID of a workflow the engine starts itself:
// ReservedIDPrefix, kind, then parts, joined by '-'. kind and parts must be
// made of ID characters. An ID that would be longer than 128 characters
// keeps its first characters and ends with a hash of the whole, so it
// stays valid and two different derivations do not meet.
func DerivedID(kind string, parts ...string) string {
	id := ReservedIDPrefix + kind + "-" + strings.Join(parts, "-")
	if len(id) <= maxIDLen {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	h := hex.EncodeToString(sum[:16]) // 32 characters, 128 bits
	return id[:maxIDLen-len(h)-1] + "-" + h
}

// OnItsSubject reports whether a history event sits on the subject its
// value belongs to: a timer's fire on wf.<id>.fired.<its timer>, a result
// on the result subject of its command, a signal on a signal subject.
// Anything else there was published by hand (the history stream takes any
// message under wf.>) and is skipped by replay, the same way on every
// replay, as an undecodable event is.
func OnItsSubject(ev Event) bool {
	id, _, ok := ParseSubject(ev.Subject)
	if !ok {
		return false
	}
	switch v := ev.Value.(type) {
	case *schema.TimerFired:
		return ev.Subject == FiredSubject(id, v.TimerID)
	case *schema.Result:
		return ev.Subject == ResultSubject(id, v.CommandID, v.Service, v.Action)
	case *schema.Signal:
		return strings.HasPrefix(ev.Subject, "wf."+id+"."+tokSignal+".")
	case *schema.StepCancelled:
		return ev.Subject == StepCancelSubject(id, v.CommandID)
	case *schema.OperatorRequest:
		_, rest, _ := ParseSubject(ev.Subject)
		_, verb, ok := ParseOperator(rest)
		return ok && verb == v.Verb
	case *schema.UpdateAccepted:
		return isUpdateSubject(ev.Subject, id, v.UpdateID, false)
	case *schema.UpdateCompleted:
		return isUpdateSubject(ev.Subject, id, v.UpdateID, true)
	case *schema.ChildStarted:
		return isChildSubject(ev.Subject, id, v.ID, "")
	case *schema.ChildCancelRequested:
		return isChildSubject(ev.Subject, id, v.Child, ".cancel")
	case *schema.ChildEnded:
		return isChildSubject(ev.Subject, id, v.Child, "."+tokDone)
	case *schema.SignalExternal:
		return isSignalOutSubject(ev.Subject, id, v.ID, false)
	case *schema.SignalExternalDone:
		return isSignalOutSubject(ev.Subject, id, v.Signal, true)
	}
	return true
}
