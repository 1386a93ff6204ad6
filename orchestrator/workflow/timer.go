package workflow

import (
	"errors"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

// ErrCanceled is returned by Timer.Get for a cancelled timer.
var ErrCanceled = errors.New("workflow: timer cancelled")

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
func NewTimer(ctx Context, d time.Duration) *Timer {
	r := ctx.co().r
	ts := &schema.TimerStarted{ID: r.issued + 1, Duration: d, Due: r.now.Add(d).UTC()}
	if rec := r.decide(ts); rec != nil {
		ts = rec.(*schema.TimerStarted)
	}
	t := &Timer{r: r, id: ts.ID, f: &future{activity: "timer"}}
	r.timers[ts.ID] = &timerState{due: ts.Due, f: t.f}
	if due, ok := r.fired[ts.ID]; ok && due.Equal(ts.Due) {
		t.f.ready, t.f.readyAt = true, r.tick
	}
	return t
}

func (t *Timer) awaitable() *future { return t.f }

// ID is the timer's decision number; its bucket key is <workflow id>.<ID>.
func (t *Timer) ID() int { return t.id }

// IsReady reports whether the timer fired or was cancelled.
func (t *Timer) IsReady() bool { return t.f.ready }

// Get waits until the timer fires (nil) or is cancelled (ErrCanceled).
func (t *Timer) Get(ctx Context) error {
	ctx.co().block(func() bool { return t.f.ready })
	return t.f.err
}

// Cancel drops the timer if it has not fired: it is recorded in the history
// and removed from the timers bucket, and Get returns ErrCanceled. Cancelling
// a fired or cancelled timer does nothing.
func (t *Timer) Cancel(ctx Context) {
	r := ctx.co().r
	st := r.timers[t.id]
	if st == nil || st.cancelled || t.f.ready {
		return
	}
	r.decide(&schema.TimerCancelled{ID: r.issued + 1, TimerID: t.id})
	st.cancelled = true
	t.f.ready, t.f.readyAt, t.f.err = true, r.tick, ErrCanceled
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
