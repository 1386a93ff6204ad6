package workflow

import (
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

// pickupFlow waits for a signal or a 72h deadline, whichever comes first.
func pickupFlow(ctx Context, _ int) (string, error) {
	timer := NewTimer(ctx, 72*time.Hour)
	outcome := ""
	NewSelector(ctx).
		AddSignal(ctx, "carrier.picked_up", func(p Payload) {
			var body map[string]string
			_ = p.Decode(&body)
			outcome = "picked up by " + body["carrier"]
			timer.Cancel(ctx)
		}).
		AddFuture(timer, func() { outcome = "deadline" }).
		Select(ctx)
	return outcome, nil
}

func pickupFn(t *testing.T) Func {
	r := NewRegistry()
	Register(r, "pickup", pickupFlow)
	fn, _ := r.Lookup("pickup")
	return fn
}

func sig(name string, body any) *schema.Signal {
	raw, _ := schema.EncodeRaw(body)
	return &schema.Signal{Name: name, Payload: raw}
}

func output(t *testing.T, o Outcome) string {
	t.Helper()
	if o.Finished == nil {
		t.Fatalf("not finished: decisions %v blocked %+v", decisions(o), o.Blocked)
	}
	var s string
	_ = schema.DecodeRaw(o.Finished.Output, &s)
	return s
}

func TestTimerDueIsRecordedAndFires(t *testing.T) {
	fn := pickupFn(t)
	o := Replay(fn, "w1", hist(t, 0), nil)
	if len(o.Decisions) != 1 {
		t.Fatalf("decisions %v", decisions(o))
	}
	ts := o.Decisions[0].(*schema.TimerStarted)
	if want := time.Unix(100, 0).Add(72 * time.Hour).UTC(); !ts.Due.Equal(want) || ts.ID != 1 {
		t.Fatalf("timer %+v, want due %v", ts, want)
	}
	got := output(t, Replay(fn, "w1", hist(t, 0, ts, &schema.TimerFired{TimerID: 1, Due: ts.Due}), nil))
	if got != "deadline" {
		t.Fatalf("got %q", got)
	}
	// A fire with another due time is not this timer's: still waiting.
	o = Replay(fn, "w1", hist(t, 0, ts, &schema.TimerFired{TimerID: 1, Due: ts.Due.Add(time.Second)}), nil)
	if o.Finished != nil || len(o.Decisions) != 0 {
		t.Fatalf("foreign fire counted: %+v", o)
	}
}

func TestSignalBeforeDeadlineCancelsTimer(t *testing.T) {
	fn := pickupFn(t)
	ts := Replay(fn, "w1", hist(t, 0), nil).Decisions[0].(*schema.TimerStarted)
	o := Replay(fn, "w1", hist(t, 0, ts, sig("carrier.picked_up", map[string]string{"carrier": "DHL"})), nil)
	if len(o.Decisions) != 1 || o.Decisions[0].(*schema.TimerCancelled).TimerID != 1 {
		t.Fatalf("want the timer cancelled, got %v", decisions(o))
	}
	if output(t, o) != "picked up by DHL" {
		t.Fatalf("output %q", output(t, o))
	}
}

// A signal and the deadline recorded back to back: the first in the history
// wins, and every replay takes the same branch.
func TestSignalAndDeadlineTakeExactlyOneBranch(t *testing.T) {
	fn := pickupFn(t)
	ts := Replay(fn, "w1", hist(t, 0), nil).Decisions[0].(*schema.TimerStarted)
	fired := &schema.TimerFired{TimerID: 1, Due: ts.Due}
	s := sig("carrier.picked_up", map[string]string{"carrier": "UPS"})
	for i := 0; i < 3; i++ {
		if got := output(t, Replay(fn, "w1", hist(t, 0, ts, fired, s), nil)); got != "deadline" {
			t.Fatalf("fire first: %q", got)
		}
		o := Replay(fn, "w1", hist(t, 0, ts, s, fired), nil)
		if got := output(t, o); got != "picked up by UPS" {
			t.Fatalf("signal first: %q", got)
		}
	}
	// The cancel recorded after the signal replays cleanly even though a
	// fire arrived too.
	o := Replay(fn, "w1", hist(t, 0, ts, s, fired, &schema.TimerCancelled{ID: 2, TimerID: 1}), nil)
	if o.Blocked != nil || output(t, o) != "picked up by UPS" {
		t.Fatalf("replay with cancel: %+v", o)
	}
}

func TestSignalSentBeforeWaitIsKept(t *testing.T) {
	r := NewRegistry()
	Register(r, "late-wait", func(ctx Context, _ int) (string, error) {
		if _, err := Execute[string](ctx, charge, 1); err != nil {
			return "", err
		}
		v, err := WaitSignal[map[string]string](ctx, "go")
		return v["k"], err
	})
	fn, _ := r.Lookup("late-wait")
	// The signal is recorded before the step result that leads to the wait.
	o := Replay(fn, "w1", hist(t, 0, cmd(1, charge), sig("go", map[string]string{"k": "v"}), ok(1, "c")), nil)
	if output(t, o) != "v" {
		t.Fatalf("early signal lost: %+v", o)
	}
}

func TestSleep(t *testing.T) {
	r := NewRegistry()
	Register(r, "sleep", func(ctx Context, _ int) (time.Time, error) {
		err := Sleep(ctx, time.Hour)
		return Now(ctx), err
	})
	fn, _ := r.Lookup("sleep")
	ts := Replay(fn, "w1", hist(t, 0), nil).Decisions[0].(*schema.TimerStarted)
	h := hist(t, 0, ts, &schema.TimerFired{TimerID: 1, Due: ts.Due})
	h[2].Time = ts.Due.Add(5 * time.Millisecond)
	o := Replay(fn, "w1", h, nil)
	var now time.Time
	if err := schema.DecodeRaw(o.Finished.Output, &now); err != nil || !now.Equal(h[2].Time) {
		t.Fatalf("Now after sleep = %v (%v), want the fire's time %v", now, err, h[2].Time)
	}
}

// A finished workflow reports the signals it never received: the second of
// two carrier signals (left in the queue), and one recorded after the
// deadline it had already taken (never fed).
func TestFinishedReportsUnreceivedSignals(t *testing.T) {
	fn := pickupFn(t)
	ts := Replay(fn, "w1", hist(t, 0), nil).Decisions[0].(*schema.TimerStarted)
	first, second := sig("carrier.picked_up", map[string]string{"carrier": "DHL"}), sig("carrier.picked_up", map[string]string{"carrier": "UPS"})
	h := hist(t, 0, ts, first, second, &schema.TimerCancelled{ID: 2, TimerID: 1})
	o := Replay(fn, "w1", h, nil)
	if output(t, o) != "picked up by DHL" {
		t.Fatalf("output %q", output(t, o))
	}
	if len(o.Unreceived) != 1 || o.Unreceived[0].Signal != second || o.Unreceived[0].Seq != h[3].Seq {
		t.Fatalf("unreceived %+v, want the second signal at #%d", o.Unreceived, h[3].Seq)
	}

	late := sig("carrier.picked_up", map[string]string{"carrier": "FedEx"})
	h = hist(t, 0, ts, &schema.TimerFired{TimerID: 1, Due: ts.Due}, late)
	o = Replay(fn, "w1", h, nil)
	if output(t, o) != "deadline" {
		t.Fatalf("output %q", output(t, o))
	}
	if len(o.Unreceived) != 1 || o.Unreceived[0].Signal != late {
		t.Fatalf("unreceived %+v, want the signal after the deadline", o.Unreceived)
	}

	// Not finished: nothing is reported.
	if o := Replay(fn, "w1", hist(t, 0, ts), nil); o.Finished != nil || o.Unreceived != nil {
		t.Fatalf("outcome %+v", o)
	}
}
