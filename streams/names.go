// Package streams is the whole JetStream topology of jetflow in one place:
// stream, KV and consumer names and configs, the subject layout, an
// idempotent Ensure, the fenced history writer, a consumer-free history
// reader (direct get), and start/stop of an embedded nats-server.
//
// JetStream error codes are translated to the sentinel errors of this package
// here and nowhere else.
package streams

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Stream names.
const (
	// HistoryStream holds every workflow history: the subject tree wf.<id>.> of a
	// workflow is its history, in stream order.
	HistoryStream = "JETFLOW_HISTORY"
	// OrdersStream captures order.created, so an order published while no
	// orchestrator runs waits for one.
	OrdersStream = "JETFLOW_ORDERS"
	// SignalsStream captures signal.<name>.<workflow id>, so a signal sent
	// while no orchestrator runs waits for one. It also holds the scheduled
	// messages of the simulated systems (schedule.>), which the server
	// publishes onto signal subjects when they are due.
	SignalsStream = "JETFLOW_SIGNALS"
	// DeadLetterStream keeps every message jetflow refused, with the reason.
	DeadLetterStream = "JETFLOW_DLQ"
	// IndexStream holds a copy of every end and blocked event of
	// HistoryStream on one subject per status (IndexDoneFilter), sourced
	// by the server: a status's events are counted and found from the
	// subject index without walking every workflow's subjects.
	IndexStream = "JETFLOW_INDEX"
)

// KV bucket names.
const (
	// IdempotencyBucket holds the participants' heartbeat details, keyed
	// <service>.<idempotency key>.heartbeat (a command's result, its
	// idempotency record, is in the history).
	IdempotencyBucket = "jetflow_idempotency"
	// LedgerBucketPrefix + system name ("payment", ...) is the bucket of a
	// simulated external system's ledger.
	LedgerBucketPrefix = "jetflow_ledger_"
	// TimersBucket holds every pending durable timer, keyed
	// <workflow id>.<timer id>; `nats kv ls jetflow_timers` shows them.
	TimersBucket = "jetflow_timers"
	// AttemptsBucket holds the last failed attempt of each command a
	// participant will retry (schema.FailedAttempt), keyed
	// <service>.<idempotency key>.
	AttemptsBucket = "jetflow_attempts"
)

// Consumer names.
const (
	// OrchestratorConsumer is the durable consumer all orchestrators share:
	// it delivers the history events that call for a decision.
	OrchestratorConsumer = "jetflow-orchestrator"
	// IntakeConsumer is the durable consumer on Orders.
	IntakeConsumer = "jetflow-intake"
	// SignalsConsumer is the durable consumer on SignalsStream.
	SignalsConsumer = "jetflow-signals"
	// ParticipantConsumerPrefix + service is a participant's durable consumer.
	ParticipantConsumerPrefix = "jetflow-participant-"
)

// Subjects outside the history tree.
const (
	// OrderCreated is where anyone publishes a new order.
	OrderCreated = "order.created"
	// DeadLetterPrefix is the prefix of dead-letter subjects: dlq.<origin>.
	DeadLetterPrefix = "dlq"
)

// Terminal subject tokens, under wf.<id>.
const (
	tokStart   = "start"
	tokCmd     = "cmd"
	tokRes     = "res"
	tokMarker  = "marker"
	tokDone    = "done"
	tokBlocked = "blocked"
	tokTimer   = "timer"
	tokFired   = "fired"
	tokSignal  = "signal"
	tokOp      = "op"
	tokCancel  = "cancel"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidID reports an error unless id can name a workflow: 1 to 128 letters,
// digits, '-' or '_', so it is one subject token and part of a KV key.
func ValidID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("invalid workflow id %q: want 1-128 characters of [A-Za-z0-9_-]", Clip(id, 200))
	}
	return nil
}

// ValidToken reports an error unless s can be a service or action name.
func ValidToken(s string) error {
	if !idPattern.MatchString(s) {
		return fmt.Errorf("invalid name %q: want 1-128 characters of [A-Za-z0-9_-]", Clip(s, 200))
	}
	return nil
}

// Tree is the subject tree of a workflow's history: wf.<id>.>
func Tree(id string) string { return "wf." + id + ".>" }

// StartSubject is where the first event of a history is written.
func StartSubject(id string) string { return "wf." + id + "." + tokStart }

// Every message of a history has a subject of its own: the decision number
// (or the timer, or the signal's sequence) is part of it. Reads can then ask
// the stream's subject index for the last message of every subject of a tree
// (direct get "multi_last"), which returns the whole history without
// scanning the stream, and a duplicate (a second result for a command, a
// second fire of a timer) is refused by the server with an expected last
// subject sequence of 0.

// CommandSubject is where command n for service/action is recorded and sent.
func CommandSubject(id string, n int, service, action string) string {
	return "wf." + id + "." + tokCmd + "." + strconv.Itoa(n) + "." + service + "." + action
}

// CommandFilter is a participant's consumer filter: every command for service.
func CommandFilter(service string) string { return "wf.*." + tokCmd + ".*." + service + ".*" }

// ResultSubject is where a participant publishes the result of command n.
// Results are domain events: subscribe to wf.*.res.*.payment.charge to see
// every charge.
func ResultSubject(id string, n int, service, action string) string {
	return "wf." + id + "." + tokRes + "." + strconv.Itoa(n) + "." + service + "." + action
}

// MarkerSubject records side-effect or version marker n.
func MarkerSubject(id string, n int) string {
	return "wf." + id + "." + tokMarker + "." + strconv.Itoa(n)
}

// DoneSubject is the terminal event, with the status as last token, so
// `nats stream subjects JETFLOW_HISTORY 'wf.*.done.manual'` lists the
// manual-intervention queue.
func DoneSubject(id, status string) string { return "wf." + id + "." + tokDone + "." + status }

// DoneSubjectAfter is the terminal event of a workflow that an operator
// retried at history sequence retry: a retried manual workflow ends again,
// and each end after a retry carries that retry's sequence, so no end
// takes the subject of an earlier one. retry 0 is DoneSubject.
func DoneSubjectAfter(id, status string, retry uint64) string {
	if retry == 0 {
		return DoneSubject(id, status)
	}
	return DoneSubject(id, status) + "." + strconv.FormatUint(retry, 10)
}

// ParseDone parses the part of a done subject after the workflow ID
// ("done.manual", "done.compensated.42") into the status and the sequence
// of the retry it ended (0 for the first end).
func ParseDone(rest string) (status string, retry uint64, ok bool) {
	s, found := strings.CutPrefix(rest, tokDone+".")
	if !found || s == "" {
		return "", 0, false
	}
	status, after, dotted := strings.Cut(s, ".")
	if !dotted {
		return status, 0, true
	}
	n, err := strconv.ParseUint(after, 10, 64)
	return status, n, err == nil
}

// DoneFilterOf matches the terminal events of workflow id.
func DoneFilterOf(id string) string { return "wf." + id + "." + tokDone + ".>" }

// StepCancelSubject records that the workflow stopped waiting for command
// n (schema.StepCancelled): the participant running it watches this
// subject and cancels its handler.
func StepCancelSubject(id string, n int) string {
	return "wf." + id + "." + tokCancel + "." + strconv.Itoa(n)
}

// StepCancelFilter matches every step cancellation, the subscription a
// participant's permissions allow.
const StepCancelFilter = "wf.*." + tokCancel + ".*"

// OperatorSubject records an operator's request (schema.OperatorRequest)
// fenced on history sequence at, the last of the tree when it was made.
func OperatorSubject(id string, at uint64, verb string) string {
	return "wf." + id + "." + tokOp + "." + strconv.FormatUint(at, 10) + "." + verb
}

// ParseOperator parses the part of an operator subject after the workflow
// ID ("op.41.retry") into the sequence it was fenced on and the verb.
func ParseOperator(rest string) (at uint64, verb string, ok bool) {
	s, found := strings.CutPrefix(rest, tokOp+".")
	if !found {
		return 0, "", false
	}
	n, verb, found := strings.Cut(s, ".")
	at, err := strconv.ParseUint(n, 10, 64)
	return at, verb, found && err == nil && verb != ""
}

// BlockedSubject records that a workflow diverged from its history when
// deciding on the history up to sequence at.
func BlockedSubject(id string, at uint64) string {
	return "wf." + id + "." + tokBlocked + "." + strconv.FormatUint(at, 10)
}

// TimerSubject records timer decision n (a start or a cancel).
func TimerSubject(id string, n int) string {
	return "wf." + id + "." + tokTimer + "." + strconv.Itoa(n)
}

// FiredSubject is where the timer service fires timer n, once.
func FiredSubject(id string, n int) string {
	return "wf." + id + "." + tokFired + "." + strconv.Itoa(n)
}

// SignalEventSubject is where the signal with sequence seq in SignalsStream
// is recorded in the history, once.
func SignalEventSubject(id string, seq uint64) string {
	return "wf." + id + "." + tokSignal + "." + strconv.FormatUint(seq, 10)
}

// SignalEventSeq is the JETFLOW_SIGNALS sequence of the signal recorded on
// subject, wf.<history id>.signal.<seq>; false for any other subject.
func SignalEventSeq(subject string) (uint64, bool) {
	_, rest, ok := ParseSubject(subject)
	if !ok {
		return 0, false
	}
	s, ok := strings.CutPrefix(rest, tokSignal+".")
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	return seq, err == nil && seq > 0
}

// SignalPrefix starts the subjects signals are sent on:
// signal.<name>.<workflow id>. The name may contain dots
// (signal.carrier.picked_up.o-1001).
const SignalPrefix = "signal"

// SignalSubject is where anyone sends signal name to workflow id.
func SignalSubject(name, id string) string { return SignalPrefix + "." + name + "." + id }

// ParseSignalSubject splits signal.<name>.<id>.
func ParseSignalSubject(subject string) (name, id string, ok bool) {
	s, found := strings.CutPrefix(subject, SignalPrefix+".")
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// ScheduleSubject is where a delayed signal was scheduled in SignalsStream
// by versions whose signals stream allowed message schedules. Such a
// stream is still read (CheckScheduled); new schedules go to a callbacks
// stream (CallbacksStream).
func ScheduleSubject(key string) string { return "schedule." + key }

// HeaderScheduler is set by the server on a message it published for a
// schedule: the subject of the schedule. The server refuses a client's
// publish that carries it (but for a schedule's purge).
const HeaderScheduler = "Nats-Scheduler"

// CheckScheduled reports an error when signal name for workflow id was
// published by a schedule other than schedule.<id>.<name>, in a signals
// stream made by an earlier version, with schedules. The server does not
// check a schedule's target (Nats-Schedule-Target) against the scheduler's
// publish permissions, so a party allowed to schedule its own signal could
// otherwise deliver any signal; the schedule subject is the part the
// permissions do check.
func CheckScheduled(name, id, scheduler string) error {
	if scheduler == "" || scheduler == ScheduleSubject(id+"."+name) {
		return nil
	}
	return fmt.Errorf("signal %s for %s was published by schedule %s: a scheduled signal must come from %s",
		name, id, scheduler, ScheduleSubject(id+"."+name))
}

// CallbackPrefix starts the subjects of the callbacks streams.
const CallbackPrefix = "callback"

// CallbacksStream is the stream of system's scheduled callbacks: a system
// that calls a workflow back later (a gateway's late settlement, a
// carrier's pickup) schedules the callback there, as a server-side message
// schedule, and forwards it as a signal when the server fires it. The
// signals stream itself allows no schedules: a stream that does must allow
// roll-ups, and any signal publisher could then purge the signals not yet
// recorded with one Nats-Rollup header. Each system has a stream of its
// own, so a party can roll up only its own callbacks.
func CallbacksStream(system string) string { return CallbacksStreamPrefix + system }

// CallbacksStreamPrefix starts the name of every callbacks stream.
const CallbacksStreamPrefix = "JETFLOW_CALLBACKS_"

// CallbackAtSubject is where system schedules signal name for workflow id:
// callback.<system>.at.<id>.<name>. Scheduling again replaces it.
func CallbackAtSubject(system, id, name string) string {
	return CallbackPrefix + "." + system + ".at." + id + "." + name
}

// CallbackDueSubject is where the server publishes that schedule when it
// is due (its Nats-Schedule-Target): callback.<system>.due.<id>.<name>.
func CallbackDueSubject(system, id, name string) string {
	return CallbackPrefix + "." + system + ".due." + id + "." + name
}

// CallbackDueFilter matches every due callback of system.
func CallbackDueFilter(system string) string { return CallbackPrefix + "." + system + ".due.>" }

// ParseCallbackDue splits callback.<system>.due.<id>.<name>.
func ParseCallbackDue(system, subject string) (id, name string, ok bool) {
	rest, found := strings.CutPrefix(subject, CallbackPrefix+"."+system+".due.")
	if !found {
		return "", "", false
	}
	id, name, ok = strings.Cut(rest, ".")
	return id, name, ok && id != "" && name != ""
}

// CallbackOrigin is the dead-letter origin of system's callbacks that
// were not sent (dlq.callback.<system>): scheduled for another signal's
// due subject, or given up after CallbackMaxDeliver deliveries.
func CallbackOrigin(system string) string { return CallbackPrefix + "." + system }

// CallbackConsumer is the durable consumer that forwards a system's due
// callbacks as signals.
const CallbackConsumer = "jetflow-callbacks"

// Filters used by listings.
const (
	StartFilter = "wf.*." + tokStart
	DoneFilter  = "wf.*." + tokDone + ".>"
	// OperatorFilter matches every operator request.
	OperatorFilter = "wf.*." + tokOp + ".>"
	BlockedFilter  = "wf.*." + tokBlocked + ".*"
	ResultFilter   = "wf.*." + tokRes + ".>"
	FiredFilter    = "wf.*." + tokFired + ".*"
	SignalFilter   = "wf.*." + tokSignal + ".*"
)

// DeadLetterSubject is where refused messages of an origin go, e.g.
// dlq.order.created or dlq.cmd.payment.
func DeadLetterSubject(origin string) string { return DeadLetterPrefix + "." + origin }

// ParseSubject splits a history subject into the workflow ID and the part
// after it ("start", "cmd.payment.charge", ...).
func ParseSubject(subject string) (id, rest string, ok bool) {
	s, found := strings.CutPrefix(subject, "wf.")
	if !found {
		return "", "", false
	}
	id, rest, found = strings.Cut(s, ".")
	return id, rest, found && id != ""
}

// AttemptKey is the key of a command's failed attempts in AttemptsBucket.
func AttemptKey(service, idempotencyKey string) string { return service + "." + idempotencyKey }

// IndexPrefix starts the subjects of IndexStream.
const IndexPrefix = "ix"

// IndexDoneFilter is the subject of the end events of status in
// IndexStream, ix.done.<status>; "" gives ix.done.*, every status. One
// subject per status: the server counts its messages from one entry of
// its subject index, and pages them by skipping to the blocks that hold
// them.
func IndexDoneFilter(status string) string {
	if status == "" {
		return IndexPrefix + "." + tokDone + ".*"
	}
	return IndexPrefix + "." + tokDone + "." + status
}

// IndexBlockedSubject is the subject of the blocked events in IndexStream.
const IndexBlockedSubject = IndexPrefix + "." + tokBlocked

// HeaderStreamSource is set by the server on a sourced message:
// "<stream> <seq> <filters> <destinations> <original subject> <ident>".
const HeaderStreamSource = "Nats-Stream-Source"

// SourceStream returns the stream a message of IndexStream was sourced
// from (a partition, in a partitioned history), from its
// Nats-Stream-Source header value.
func SourceStream(header string) string {
	name, _, _ := strings.Cut(header, " ")
	return name
}

// SourceSubject returns the subject a message of IndexStream had in the
// history stream, from its Nats-Stream-Source header value.
func SourceSubject(header string) string {
	// Split on spaces only: a source with several transforms lists their
	// filters joined by form feeds, in one field.
	f := strings.Split(header, " ")
	if len(f) < 5 {
		return ""
	}
	return f[4]
}
