package workflow

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jetflow-io/jetflow/schema"
)

// Live is a workflow kept running between decisions (sticky execution, as
// Temporal's sticky cache): its coroutines stay parked at their wait
// points, so the next decision feeds it only the events that are new
// instead of replaying the whole history through the code again.
//
// A Live decides exactly as a full replay of the same history would, or it
// refuses: Advance reports ok=false whenever it cannot be sure (the events
// do not confirm the decisions it issued last, the code failed, diverged or
// panicked), and the caller replays in full. A Live holds goroutines: Close
// releases them, and every Live must be closed once it is not advanced
// again. A Live is used by one goroutine at a time.
type Live struct {
	r *replayer
	// at is the stream sequence up to which the Live has seen the history;
	// Advance takes the events after it.
	at     uint64
	closed bool
}

// Start replays history through fn like Replay. When the workflow is left
// waiting (it did not finish, fail or block), it also returns the Live
// workflow parked where the replay left it, positioned at the last
// event of history; otherwise the Live is nil and everything is released.
func Start(fn Func, id string, history []Event, logger *slog.Logger) (Outcome, *Live) {
	r, o := begin(id, history, logger)
	if r == nil {
		return o, nil
	}
	feed := r.classify(history[1:])
	r.start(fn, len(feed) == 0)
	o = r.feed(feed, nil)
	if !r.live() || o.Blocked != nil || o.Finished != nil {
		r.sched.close()
		return o, nil
	}
	return o, &Live{r: r, at: history[len(history)-1].Seq}
}

// live reports whether the code can go on: it has not returned, failed or
// ended for a person.
func (r *replayer) live() bool {
	return r.failure == nil && r.finished == nil && r.manual == nil
}

// At is the stream sequence of the last history event the Live has seen.
func (l *Live) At() uint64 { return l.at }

// Advance feeds the events that follow At in the history (stream order,
// every event of the workflow after At, none left out) and returns what the
// code decides, as a full replay of the whole history would. The first
// decisions among the events must be those the Live issued last, recorded
// as they were issued (the caller's append landed); anything else — a
// decision missing or different, an event at or before At, a failure, a
// divergence, a panic — makes Advance release the Live and return ok=false:
// the caller replays in full. After a finished outcome the Live is
// released too; after any other it may be advanced again.
func (l *Live) Advance(events []Event) (out Outcome, ok bool) {
	if l.closed {
		return Outcome{}, false
	}
	r := l.r
	last := l.at
	for _, ev := range events {
		if ev.Seq <= last {
			l.Close()
			return Outcome{}, false
		}
		last = ev.Seq
	}
	before := len(r.history)
	feed := r.classify(events)
	if !r.confirm(r.history[before:]) {
		l.Close()
		return Outcome{}, false
	}
	r.fedAll = len(feed) == 0
	out = r.feed(feed, nil)
	if out.Blocked != nil || r.failure != nil {
		l.Close()
		return Outcome{}, false
	}
	l.at = last
	if !r.live() {
		l.Close()
	}
	return out, true
}

// confirm checks that the recorded decisions that just joined the history
// begin with the decisions the code issued last, each recorded as it was
// issued, and takes those as recorded: a full replay would match them
// there and go on with the same values.
func (r *replayer) confirm(added []recorded) bool {
	if len(added) < len(r.fresh) {
		return false
	}
	for i, d := range r.fresh {
		if !sameRecord(added[i].value, d) {
			return false
		}
	}
	r.fresh = nil
	return true
}

// sameRecord reports whether rec, read from the history, stands for d as
// the code issued it. Where the code goes on with the recorded value (a
// marker's value, a timer's due time, and any kind not listed) it must be
// d to the byte; where it ignores it (a command, a cancel, an update's
// completion) it must match as a full replay matches it.
func sameRecord(rec, d schema.Kinded) bool {
	if rec.Kind() != d.Kind() {
		return false
	}
	switch d.(type) {
	case *schema.Command, *schema.TimerCancelled, *schema.StepCancelled, *schema.UpdateCompleted:
		return sameDecision(rec, d)
	}
	a, _, err := schema.Encode(rec)
	if err != nil {
		return false
	}
	b, _, err := schema.Encode(d)
	return err == nil && bytes.Equal(a, b)
}

// Close unwinds the Live's coroutines and waits until their goroutines
// have exited. It is safe to call more than once.
func (l *Live) Close() {
	if l == nil || l.closed {
		return
	}
	l.closed = true
	l.r.sched.close()
}

// Closed reports whether the Live was released.
func (l *Live) Closed() bool { return l == nil || l.closed }

// CompareOutcomes returns nil when a and b decide the same — the same
// decisions, end, block and signals left, values compared by their
// encoding — and otherwise an error naming the first difference, a's
// against b's. A blocked reason is compared without the stack trace a
// panic adds.
func CompareOutcomes(a, b Outcome) error {
	if len(a.Decisions) != len(b.Decisions) {
		return fmt.Errorf("%d decisions, b %d", len(a.Decisions), len(b.Decisions))
	}
	for i := range a.Decisions {
		if !sameValue(a.Decisions[i], b.Decisions[i]) {
			return fmt.Errorf("decision %d is %s %+v, b's %s %+v", i+1, a.Decisions[i].Kind(), a.Decisions[i], b.Decisions[i].Kind(), b.Decisions[i])
		}
	}
	if (a.Finished == nil) != (b.Finished == nil) || (a.Finished != nil && !sameValue(a.Finished, b.Finished)) {
		return fmt.Errorf("finished %+v, b %+v", a.Finished, b.Finished)
	}
	if (a.Blocked == nil) != (b.Blocked == nil) || (a.Blocked != nil && firstLine(a.Blocked.Reason) != firstLine(b.Blocked.Reason)) {
		return fmt.Errorf("blocked %+v, b %+v", a.Blocked, b.Blocked)
	}
	if a.Waiting != b.Waiting {
		return fmt.Errorf("%d signals waiting, b %d", a.Waiting, b.Waiting)
	}
	if len(a.Unreceived) != len(b.Unreceived) {
		return fmt.Errorf("%d signals unreceived, b %d", len(a.Unreceived), len(b.Unreceived))
	}
	for i := range a.Unreceived {
		if a.Unreceived[i].Seq != b.Unreceived[i].Seq {
			return fmt.Errorf("unreceived signal %d is #%d, b's #%d", i+1, a.Unreceived[i].Seq, b.Unreceived[i].Seq)
		}
	}
	return nil
}

func sameValue(a, b schema.Kinded) bool {
	x, ka, err := schema.Encode(a)
	if err != nil {
		return false
	}
	y, kb, err := schema.Encode(b)
	return err == nil && ka == kb && bytes.Equal(x, y)
}

// firstLine is a blocked reason without the stack a panic adds (it names
// goroutines, which differ from one run to the next).
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
