package workflow

import (
	"runtime"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

// Awaitable is anything a Selector can wait on: a Future or a Timer.
type Awaitable interface {
	awaitable() *future
}

// Timer is a durable timer. It holds no thread and survives every restart:
// the decision is in the history, the pending timer in the jetflow_timers
// bucket, and the timer service fires it into the history when it is due.
type Timer struct {
	r  *replayer
	id int
	f  *future
}

type timerState struct {
	due       time.Time
	f         *future
	cancelled bool
}

// NewTimer starts a timer that fires d after the workflow's current time.
// On a cancelled context it starts nothing and its Get returns the
// cancellation; a timer whose context is cancelled later is cancelled with
// it (recorded as timer.cancelled).
func NewTimer(ctx Context, d time.Duration) *Timer {
	r := ctx.co().r
	if err := ctx.Err(); err != nil {
		return &Timer{r: r, f: &future{activity: "timer", ready: true, readyAt: r.tick, err: err}}
	}
	ts := &schema.TimerStarted{ID: r.issued + 1, Duration: d, Due: r.now.Add(d).UTC()}
	if rec := r.decide(ts); rec != nil {
		ts = rec.(*schema.TimerStarted)
	}
	t := &Timer{r: r, id: ts.ID, f: &future{activity: "timer"}}
	r.timers[ts.ID] = &timerState{due: ts.Due, f: t.f}
	if due, ok := r.fired[ts.ID]; ok && due.Equal(ts.Due) {
		t.f.ready, t.f.readyAt = true, r.tick
	} else {
		sc := ctx.scope()
		sc.timers = append(sc.timers, t)
	}
	return t
}

func (t *Timer) awaitable() *future { return t.f }

// ID is the timer's decision number; its bucket key is <workflow id>.<ID>.
func (t *Timer) ID() int { return t.id }

// IsReady reports whether the timer fired or was cancelled.
func (t *Timer) IsReady() bool { return t.f.ready }

// Get waits until the timer fires (nil) or is cancelled (ErrCanceled),
// or ctx is cancelled (then it returns the cancellation).
func (t *Timer) Get(ctx Context) error {
	if err := blockCtx(ctx, func() bool { return t.f.ready }); err != nil {
		return err
	}
	return t.f.err
}

// Cancel drops the timer if it has not fired: it is recorded in the history
// and removed from the timers bucket, and Get returns ErrCanceled. Cancelling
// a fired or cancelled timer does nothing.
func (t *Timer) Cancel(ctx Context) {
	if !t.cancelWith(ErrCanceled) {
		runtime.Goexit()
	}
}

// cancelWith cancels the timer with err if it is pending; false when the
// cancel decision diverged from the history (the replay has failed).
func (t *Timer) cancelWith(err error) bool {
	r := t.r
	st := r.timers[t.id]
	if st == nil || st.cancelled || t.f.ready {
		return true
	}
	if _, ok := r.match(&schema.TimerCancelled{ID: r.issued + 1, TimerID: t.id}); !ok {
		return false
	}
	st.cancelled = true
	t.f.ready, t.f.readyAt, t.f.err = true, r.tick, err
	return true
}

// Sleep waits d of workflow time, durably.
func Sleep(ctx Context, d time.Duration) error {
	return NewTimer(ctx, d).Get(ctx)
}

// fire delivers a TimerFired event: only the first fire of a live timer with
// the recorded due time counts.
func (r *replayer) fire(ev *schema.TimerFired) {
	if _, seen := r.fired[ev.TimerID]; seen {
		return
	}
	r.fired[ev.TimerID] = ev.Due
	st := r.timers[ev.TimerID]
	if st == nil || st.cancelled || st.f.ready || !st.due.Equal(ev.Due) {
		return
	}
	st.f.ready, st.f.readyAt = true, r.tick
}
