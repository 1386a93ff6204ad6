package workflow

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

// Event is one history event as the replayer needs it.
type Event struct {
	// Seq is the stream sequence, used in error messages.
	Seq  uint64
	Time time.Time
	// Value is the decoded event; events that failed to decode are passed
	// with a nil Value and skipped, the same way on every replay.
	Value schema.Kinded
}

// Outcome is what a replay decided.
type Outcome struct {
	// Decisions are the new commands and markers, not yet in the history, in
	// issue order. Their IDs continue the history's numbering.
	Decisions []schema.Kinded
	// Finished is set when the workflow function returned.
	Finished *schema.WorkflowFinished
	// Blocked is set when the code diverged from the history or panicked.
	Blocked *schema.WorkflowBlocked
	// Unreceived are, when Finished is set, the signals recorded in the
	// history that the function never received, in history order: it
	// returned before it took them, or before they were recorded. For the
	// workflow they came too late.
	Unreceived []UnreceivedSignal
	// Waiting is the number of signals recorded in the history that the
	// function has not received (yet, if it runs on). The orchestrator caps
	// it per workflow.
	Waiting int
}

// UnreceivedSignal is a recorded signal a finished workflow never received.
type UnreceivedSignal struct {
	// Seq is the stream sequence of its history event.
	Seq    uint64
	Signal *schema.Signal
}

// NondeterminismError describes where replay diverged from the history.
type NondeterminismError struct {
	// Decision is the 1-based number of the decision that did not match.
	Decision int
	// EventSeq is the stream sequence of the recorded event (0 if none).
	EventSeq uint64
	Recorded string
	Issued   string
}

func (e *NondeterminismError) Error() string {
	return fmt.Sprintf("nondeterminism at decision %d (history event #%d): history has %s, code issued %s",
		e.Decision, e.EventSeq, e.Recorded, e.Issued)
}

type recorded struct {
	seq   uint64
	value schema.Kinded
}

// replayer feeds one workflow's history through its function.
type replayer struct {
	id      string
	logger  *slog.Logger
	sched   *scheduler
	history []recorded // recorded decisions (commands and markers) in order
	issued  int        // decisions issued by code so far
	fresh   []schema.Kinded
	results map[int]*schema.Result
	pending map[int]*future
	timers  map[int]*timerState
	fired   map[int]time.Time // first fire of each timer ID seen so far
	signals map[string]*signalQueue
	// versions is the version of each change ID GetVersion decided.
	versions map[string]int
	// tick counts delivered events; readiness is stamped with it so a
	// selector picks whatever became ready first in history order.
	tick int64
	now  time.Time
	// fedAll is set once the last history result is being delivered.
	fedAll   bool
	failure  error
	finished *schema.WorkflowFinished
	// root is the cancellation scope of the workflow function's context.
	root *cancelScope
	// retries counts the operator retries delivered so far; manual is set
	// while the code waits for one (awaitRetry).
	retries int
	manual  *ManualError
	// handlers are the query and update handlers the code set (query.go,
	// update.go).
	handlers handlers
	// links are the children started and the signals sent (child.go).
	links links
	// started is the history's start event.
	started *schema.WorkflowStarted
	// startSeq is the start event's stream sequence.
	startSeq uint64
}

// isReplaying reports whether the code is re-executing decisions that the
// history already holds.
func (r *replayer) isReplaying() bool {
	return !r.fedAll || r.issued < len(r.history)
}

func (r *replayer) fail(err error) {
	if r.failure == nil {
		r.failure = err
	}
	r.sched.aborted = true
}

// Replay runs fn over the history of workflow id and returns what to do
// next. history must start with the WorkflowStarted event.
func Replay(fn Func, id string, history []Event, logger *slog.Logger) Outcome {
	return replay(fn, id, history, logger, nil)
}

// replay is Replay; inspect, when set, is called with the replayed state
// once every event is fed, before the workflow's coroutines are unwound
// (queries and update validators run there).
func replay(fn Func, id string, history []Event, logger *slog.Logger, inspect func(*replayer)) Outcome {
	r, o := begin(id, history, logger)
	if r == nil {
		return o
	}
	defer r.sched.close()
	feed := r.classify(history[1:])
	r.start(fn, len(feed) == 0)
	return r.feed(feed, inspect)
}

// begin builds the replayer of a history that starts with its
// WorkflowStarted event; it returns nil and the blocked outcome when the
// history does not.
func begin(id string, history []Event, logger *slog.Logger) (*replayer, Outcome) {
	if logger == nil {
		logger = slog.New(discard{})
	}
	if len(history) == 0 {
		return nil, blockedOutcome(errors.New("history is empty"), 0)
	}
	started, ok := history[0].Value.(*schema.WorkflowStarted)
	if !ok {
		return nil, blockedOutcome(fmt.Errorf("history event #%d is not workflow.started", history[0].Seq), history[0].Seq)
	}
	r := &replayer{
		id:       id,
		results:  map[int]*schema.Result{},
		pending:  map[int]*future{},
		timers:   map[int]*timerState{},
		fired:    map[int]time.Time{},
		signals:  map[string]*signalQueue{},
		versions: map[string]int{},
		now:      history[0].Time.Add(started.ClockOffset),
		started:  started,
		startSeq: history[0].Seq,
	}
	r.logger = slog.New(&replayAware{inner: logger.Handler(), r: r})
	r.sched = &scheduler{r: r, yield: make(chan struct{})}
	return r, Outcome{}
}

// classify files events after the start: the decisions join the recorded
// history the code is matched against, and what the code is fed (results,
// fires, signals, requests) is returned in history order.
func (r *replayer) classify(events []Event) []Event {
	var feed []Event
	for _, ev := range events {
		switch v := ev.Value.(type) {
		case *schema.Command, *schema.Marker, *schema.TimerStarted, *schema.TimerCancelled, *schema.StepCancelled, *schema.UpdateCompleted:
			r.history = append(r.history, recorded{seq: ev.Seq, value: v})
		case *schema.ChildStarted, *schema.ChildCancelRequested, *schema.SignalExternal:
			r.history = append(r.history, recorded{seq: ev.Seq, value: v})
		case *schema.Result, *schema.TimerFired, *schema.Signal, *schema.OperatorRequest, *schema.UpdateAccepted:
			feed = append(feed, ev)
		case *schema.ChildEnded, *schema.SignalExternalDone:
			feed = append(feed, ev)
		}
	}
	return feed
}

// start spawns the workflow function and runs it up to its first waits.
func (r *replayer) start(fn Func, fedAll bool) {
	started := r.started
	r.fedAll = fedAll
	if started.Signal != nil {
		// Signal-with-start: the signal is there before anything else.
		r.queue(started.Signal.Name).push(started.Signal.Payload, 0, r.startSeq, started.Signal)
	}
	r.root = &cancelScope{r: r}
	r.sched.spawn("main", r.root, func(ctx Context) {
		out, err := fn(ctx, started.Input)
		r.finish(out, err)
	})
	r.sched.run()
}

// feed delivers events to the code in order, letting it run after each,
// and returns what it decided.
func (r *replayer) feed(feed []Event, inspect func(*replayer)) Outcome {
	fed := 0
	for i, ev := range feed {
		if r.failure != nil || r.finished != nil {
			break
		}
		r.fedAll = i == len(feed)-1
		fed = i + 1
		// Workflow time never goes back, and a fired timer means at least
		// its due time has passed (which matters when the timer service
		// runs on a clock of its own, as in tests).
		if t := ev.Time.Add(r.started.ClockOffset); t.After(r.now) {
			r.now = t
		}
		r.tick++
		switch v := ev.Value.(type) {
		case *schema.Result:
			r.deliver(v)
		case *schema.TimerFired:
			if v.Due.After(r.now) {
				r.now = v.Due
			}
			r.fire(v)
		case *schema.Signal:
			r.queue(v.Name).push(v.Payload, r.tick, ev.Seq, v)
		case *schema.OperatorRequest:
			r.operator(v)
		case *schema.UpdateAccepted:
			r.acceptUpdate(v)
		case *schema.ChildEnded:
			r.childEnded(v)
		case *schema.SignalExternalDone:
			r.signalSent(v)
		}
		r.sched.run()
	}
	if r.failure == nil && r.issued < len(r.history) {
		next := r.history[r.issued]
		r.failure = &NondeterminismError{
			Decision: r.issued + 1, EventSeq: next.seq,
			Recorded: describe(next.value), Issued: "nothing (the code did not reach it)",
		}
	}
	if inspect != nil {
		inspect(r)
	}
	waiting := r.unreceived(feed[fed:])
	if r.failure != nil {
		var seq uint64
		var nd *NondeterminismError
		if errors.As(r.failure, &nd) {
			seq = nd.EventSeq
		}
		o := blockedOutcome(r.failure, seq)
		if nd != nil {
			o.Blocked.Recorded, o.Blocked.Issued = nd.Recorded, nd.Issued
		}
		o.Waiting = len(waiting)
		return o
	}
	if r.finished == nil && r.manual != nil {
		r.finished = manualOutcome(r.manual)
	}
	out := Outcome{Decisions: r.fresh, Finished: r.finished, Waiting: len(waiting)}
	if r.finished != nil {
		out.Unreceived = waiting
	}
	return out
}

// unreceived lists the signals left in the queues and those among the
// events never fed, in history order.
func (r *replayer) unreceived(unfed []Event) []UnreceivedSignal {
	var out []UnreceivedSignal
	for _, q := range r.signals {
		for _, it := range q.items {
			out = append(out, UnreceivedSignal{Seq: it.seq, Signal: it.signal})
		}
	}
	for _, ev := range unfed {
		if s, ok := ev.Value.(*schema.Signal); ok {
			out = append(out, UnreceivedSignal{Seq: ev.Seq, Signal: s})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

func blockedOutcome(err error, seq uint64) Outcome {
	return Outcome{Blocked: &schema.WorkflowBlocked{Reason: err.Error(), EventSeq: seq}}
}

// deliver resolves the future of a result. A second result for the same
// command (a duplicate delivery) is ignored: the first one is the fact.
func (r *replayer) deliver(res *schema.Result) {
	if _, dup := r.results[res.CommandID]; dup {
		return
	}
	r.results[res.CommandID] = res
	if f := r.pending[res.CommandID]; f != nil {
		delete(r.pending, res.CommandID)
		f.resolveResult(res, r.tick)
	}
}

// decide matches a decision the code issues against the history. It returns
// the recorded value when the decision was already made, or nil when it is
// new (and then queues it to be written).
func (r *replayer) decide(d schema.Kinded) schema.Kinded {
	rec, ok := r.match(d)
	if !ok {
		runtime.Goexit()
	}
	return rec
}

// match is decide for callers that must not exit their goroutine (the
// delivery of a cancel request): ok=false when the decision diverged, and
// the replay has failed.
func (r *replayer) match(d schema.Kinded) (schema.Kinded, bool) {
	if r.handlers.readOnly {
		panic(readOnlyViolation{what: "issued " + describe(d)})
	}
	r.issued++
	if r.issued <= len(r.history) {
		rec := r.history[r.issued-1]
		if !sameDecision(rec.value, d) {
			r.fail(&NondeterminismError{
				Decision: r.issued, EventSeq: rec.seq,
				Recorded: describe(rec.value), Issued: describe(d),
			})
			return nil, false
		}
		return rec.value, true
	}
	r.fresh = append(r.fresh, d)
	return nil, true
}

func sameDecision(a, b schema.Kinded) bool {
	switch x := a.(type) {
	case *schema.Command:
		y, ok := b.(*schema.Command)
		return ok && x.Service == y.Service && x.Action == y.Action
	case *schema.Marker:
		y, ok := b.(*schema.Marker)
		return ok && x.Name == y.Name
	case *schema.TimerStarted:
		_, ok := b.(*schema.TimerStarted)
		return ok
	case *schema.TimerCancelled:
		y, ok := b.(*schema.TimerCancelled)
		return ok && x.TimerID == y.TimerID
	case *schema.StepCancelled:
		y, ok := b.(*schema.StepCancelled)
		return ok && x.CommandID == y.CommandID
	case *schema.UpdateCompleted:
		y, ok := b.(*schema.UpdateCompleted)
		return ok && x.UpdateID == y.UpdateID
	}
	return sameLink(a, b)
}

func describe(v schema.Kinded) string {
	switch x := v.(type) {
	case *schema.Command:
		if x.Compensation {
			return fmt.Sprintf("command %s.%s (compensation)", x.Service, x.Action)
		}
		return fmt.Sprintf("command %s.%s", x.Service, x.Action)
	case *schema.Marker:
		return fmt.Sprintf("marker %q", x.Name)
	case *schema.TimerStarted:
		return fmt.Sprintf("timer %s", x.Duration)
	case *schema.TimerCancelled:
		return fmt.Sprintf("cancel of timer %d", x.TimerID)
	case *schema.StepCancelled:
		return fmt.Sprintf("cancel of step %d", x.CommandID)
	case *schema.UpdateCompleted:
		return fmt.Sprintf("completion of update %q (%s)", x.UpdateID, x.Name)
	}
	if d, ok := describeLink(v); ok {
		return d
	}
	return string(v.Kind())
}

func (r *replayer) finish(out any, err error) {
	r.abandonUpdates()
	if f := continuedAsNew(r, err); f != nil {
		r.finished = f
		return
	}
	f := &schema.WorkflowFinished{Status: schema.StatusCompleted}
	if err != nil {
		f.Status, f.Reason = endStatus(err)
		if f.Status == schema.StatusCancelled && (r.root == nil || r.root.cause == nil) {
			// The code cancelled a scope of its own and returned that:
			// nobody cancelled the workflow, it failed.
			f.Status = schema.StatusFailed
		}
		f.Error = err.Error()
		f.ErrorKind, f.NonRetryable = errorKind(err)
	} else if raw, ok := out.(schema.Raw); ok {
		f.Output = raw
	}
	r.finished = f
}

// endStatus is the status a workflow that returned err ends in: manual
// when it needs a person, compensated when it returned what Saga.Compensate
// returned, failed otherwise.
func endStatus(err error) (schema.Status, string) {
	var m *ManualError
	var c *CompensatedError
	switch {
	case errors.As(err, &m):
		return schema.StatusManual, m.Reason
	case errors.Is(err, ErrCanceled):
		// Compensated or not, a cancelled workflow that returns its
		// cancellation ends cancelled, as Temporal reports Canceled.
		return schema.StatusCancelled, ""
	case errors.As(err, &c):
		return schema.StatusCompensated, ""
	}
	return schema.StatusFailed, ""
}
