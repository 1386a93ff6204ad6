package workflow

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

func fnFor[In, Out any](fn func(Context, In) (Out, error)) Func {
	r := NewRegistry()
	Register(r, "t", fn)
	f, _ := r.Lookup("t")
	return f
}

func cancelOp() *schema.OperatorRequest {
	return &schema.OperatorRequest{Verb: schema.VerbCancel, Reason: "customer asked", Identity: "alice@ops"}
}

func retryOp() *schema.OperatorRequest {
	return &schema.OperatorRequest{Verb: schema.VerbRetry, Identity: "alice@ops"}
}

// drive runs fn the way the orchestrator does: replay, append the new
// decisions, answer each new command with answer (nil: no answer yet),
// and after the n-th replay append extra[n] if there is one, until
// nothing changes. It returns the history and the last outcome.
func drive(t *testing.T, fn Func, answer func(*schema.Command) *schema.Result, extra map[int][]schema.Kinded) ([]schema.Kinded, Outcome) {
	t.Helper()
	var h []schema.Kinded
	var o Outcome
	for round := 0; round < 50; round++ {
		o = Replay(fn, "w1", hist(t, 0, h...), nil)
		if o.Blocked != nil {
			t.Fatalf("blocked: %s", o.Blocked.Reason)
		}
		changed := len(o.Decisions) > 0 || len(extra[round]) > 0
		h = append(h, o.Decisions...)
		for _, d := range o.Decisions {
			if c, ok := d.(*schema.Command); ok {
				if res := answer(c); res != nil {
					h = append(h, res)
				}
			}
		}
		h = append(h, extra[round]...)
		if !changed {
			return h, o
		}
	}
	t.Fatal("no fixed point after 50 rounds")
	return nil, o
}

// okAll answers every command with an empty output (what a compensation
// returns).
func okAll(c *schema.Command) *schema.Result {
	return &schema.Result{CommandID: c.ID, Service: c.Service, Action: c.Action, Attempts: 1}
}

func kinds(h []schema.Kinded) string {
	var out []string
	for _, v := range h {
		switch x := v.(type) {
		case *schema.Command:
			out = append(out, "cmd:"+x.Action)
		case *schema.Result:
			if x.Error != nil {
				out = append(out, "fail:"+x.Action)
			} else {
				out = append(out, "res:"+x.Action)
			}
		default:
			out = append(out, string(v.Kind()))
		}
	}
	return strings.Join(out, " ")
}

func TestCancelWhileExecuteReturnsErrCanceledAndIgnoresTheLateResult(t *testing.T) {
	var got error
	fn := fnFor(func(ctx Context, _ int) (string, error) {
		_, err := Execute[string](ctx, charge, 1)
		got = err
		return "", err
	})
	// The charge is sent and not answered; the cancel comes; the charge's
	// result arrives after it.
	o := Replay(fn, "w1", hist(t, 0, cmd(1, charge), cancelOp(), ok(1, "ch-1")), nil)
	if o.Finished == nil || o.Finished.Status != schema.StatusCancelled {
		t.Fatalf("outcome %+v, want finished cancelled", o)
	}
	var ce *CanceledError
	if !errors.Is(got, ErrCanceled) || !errors.As(got, &ce) || ce.Identity != "alice@ops" || ce.Reason != "customer asked" {
		t.Fatalf("Execute returned %v, want a CanceledError by alice@ops", got)
	}
	// The cancel of the step is recorded, for its participant.
	if got := decisions(o); len(got) != 1 || got[0] != "cancel of step 1" {
		t.Fatalf("decisions after cancel: %v, want the step's cancel", got)
	}
	if !strings.Contains(o.Finished.Error, "cancelled by alice@ops: customer asked") {
		t.Fatalf("end error %q", o.Finished.Error)
	}
	// With the cancel recorded, the replay decides nothing more.
	o = Replay(fn, "w1", hist(t, 0, cmd(1, charge), cancelOp(), &schema.StepCancelled{ID: 2, CommandID: 1}, ok(1, "ch-1")), nil)
	if len(o.Decisions) != 0 || o.Finished == nil || o.Finished.Status != schema.StatusCancelled {
		t.Fatalf("replay with the step's cancel recorded: %v %+v", decisions(o), o.Finished)
	}
}

func TestExecuteOnACancelledContextSendsNothing(t *testing.T) {
	fn := fnFor(func(ctx Context, _ int) (string, error) {
		_ = Sleep(ctx, time.Hour) // cancelled while it sleeps
		if _, err := Execute[string](ctx, charge, 1); !errors.Is(err, ErrCanceled) {
			return "", errors.New("Execute on a cancelled context: " + errString(err))
		}
		if err := NewTimer(ctx, time.Minute).Get(ctx); !errors.Is(err, ErrCanceled) {
			return "", errors.New("NewTimer on a cancelled context: " + errString(err))
		}
		return "", ctx.Err()
	})
	h, o := drive(t, fn, okAll, map[int][]schema.Kinded{0: {cancelOp()}})
	if o.Finished == nil || o.Finished.Status != schema.StatusCancelled {
		t.Fatalf("outcome %+v (%s)", o.Finished, kinds(h))
	}
	if k := kinds(h); k != "timer.started operator.cancel timer.cancelled" {
		t.Fatalf("history %s", k)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func TestCancelledSleepRecordsTimerCancelled(t *testing.T) {
	var got error
	fn := fnFor(func(ctx Context, _ int) (string, error) {
		got = Sleep(ctx, 72*time.Hour)
		return "", got
	})
	ts := Replay(fn, "w1", hist(t, 0), nil).Decisions[0].(*schema.TimerStarted)
	o := Replay(fn, "w1", hist(t, 0, ts, cancelOp()), nil)
	if len(o.Decisions) != 1 {
		t.Fatalf("decisions %v, want the timer's cancel", decisions(o))
	}
	if tc, ok := o.Decisions[0].(*schema.TimerCancelled); !ok || tc.TimerID != ts.ID {
		t.Fatalf("decision %v", decisions(o))
	}
	if !errors.Is(got, ErrCanceled) || o.Finished == nil || o.Finished.Status != schema.StatusCancelled {
		t.Fatalf("Sleep returned %v, end %+v", got, o.Finished)
	}
	// A fire after the cancel changes nothing.
	o = Replay(fn, "w1", hist(t, 0, ts, cancelOp(), o.Decisions[0], &schema.TimerFired{TimerID: ts.ID, Due: ts.Due}), nil)
	if len(o.Decisions) != 0 || o.Finished == nil || o.Finished.Status != schema.StatusCancelled {
		t.Fatalf("replay after the fire: %v %+v", decisions(o), o.Finished)
	}
}

func TestCancelWhileWaitSignal(t *testing.T) {
	var got error
	fn := fnFor(func(ctx Context, _ int) (string, error) {
		_, got = WaitSignal[map[string]string](ctx, "carrier.picked_up")
		return "", got
	})
	o := Replay(fn, "w1", hist(t, 0, cancelOp(), sig("carrier.picked_up", map[string]string{"carrier": "DHL"})), nil)
	if !errors.Is(got, ErrCanceled) || o.Finished == nil || o.Finished.Status != schema.StatusCancelled {
		t.Fatalf("WaitSignal returned %v, end %+v", got, o.Finished)
	}
	// The signal recorded after the cancel was never received: a late one.
	if len(o.Unreceived) != 1 {
		t.Fatalf("unreceived %+v", o.Unreceived)
	}
}

func TestCancelWhileSelect(t *testing.T) {
	var got error
	fired := false
	fn := fnFor(func(ctx Context, _ int) (string, error) {
		deadline := NewTimer(ctx, time.Hour)
		got = NewSelector(ctx).
			AddSignal(ctx, "go", func(Payload) { fired = true }).
			AddFuture(deadline, func() { fired = true }).
			Select(ctx)
		return "", got
	})
	ts := Replay(fn, "w1", hist(t, 0), nil).Decisions[0].(*schema.TimerStarted)
	o := Replay(fn, "w1", hist(t, 0, ts, cancelOp()), nil)
	if !errors.Is(got, ErrCanceled) || fired {
		t.Fatalf("Select returned %v, a case ran: %v", got, fired)
	}
	if len(o.Decisions) != 1 || o.Decisions[0].Kind() != schema.KindTimerCancelled {
		t.Fatalf("decisions %v, want the deadline cancelled", decisions(o))
	}
	if o.Finished == nil || o.Finished.Status != schema.StatusCancelled {
		t.Fatalf("end %+v", o.Finished)
	}
}

// compensatingFlow charges, waits for a pickup and, when cancelled,
// refunds on a disconnected context, then returns the cancellation.
func compensatingFlow(ctx Context, _ int) (string, error) {
	saga := NewSaga(ctx)
	if _, err := Execute[struct{}](ctx, charge, 1); err != nil {
		return "", err
	}
	saga.AddCompensation(refund, "ch-1")
	if _, err := WaitSignal[string](ctx, "carrier.picked_up"); err != nil {
		return "", saga.Compensate(err)
	}
	return "shipped", nil
}

func TestDisconnectedContextCompensatesAfterCancel(t *testing.T) {
	fn := fnFor(compensatingFlow)
	h, o := drive(t, fn, okAll, map[int][]schema.Kinded{1: {cancelOp()}})
	if k := kinds(h); k != "cmd:charge res:charge operator.cancel cmd:refund res:refund" {
		t.Fatalf("history %s", k)
	}
	if c := h[3].(*schema.Command); !c.Compensation {
		t.Fatal("refund not sent as a compensation")
	}
	if o.Finished == nil || o.Finished.Status != schema.StatusCancelled {
		t.Fatalf("end %+v, want cancelled", o.Finished)
	}
	// Replaying the recorded history decides nothing new: deterministic.
	again := Replay(fn, "w1", hist(t, 0, h...), nil)
	if len(again.Decisions) != 0 || again.Finished == nil || again.Finished.Status != schema.StatusCancelled || again.Blocked != nil {
		t.Fatalf("replay of the recorded history: %v %+v %+v", decisions(again), again.Finished, again.Blocked)
	}
}

func TestNewDisconnectedContextIsNotCancelled(t *testing.T) {
	var errs []error
	fn := fnFor(func(ctx Context, _ int) (string, error) {
		err := Sleep(ctx, time.Hour)
		dctx := NewDisconnectedContext(ctx)
		errs = append(errs, err, ctx.Err(), dctx.Err())
		if err := Sleep(dctx, time.Minute); err != nil {
			return "", err
		}
		return "", err
	})
	ts := Replay(fn, "w1", hist(t, 0), nil).Decisions[0].(*schema.TimerStarted)
	o := Replay(fn, "w1", hist(t, 0, ts, cancelOp()), nil)
	if len(errs) != 3 || !errors.Is(errs[0], ErrCanceled) || !errors.Is(errs[1], ErrCanceled) || errs[2] != nil {
		t.Fatalf("errors %v: want cancelled, cancelled, nil", errs)
	}
	if got := decisions(o); len(got) != 2 || got[0] != "cancel of timer 1" || got[1] != "timer 1m0s" {
		t.Fatalf("decisions %v: want the cancel of the first timer and a second timer", got)
	}
}

func TestWithCancelCancelsItsTimerAndStepOnly(t *testing.T) {
	var stepErr, timerErr error
	fn := fnFor(func(ctx Context, _ int) (string, error) {
		sctx, cancel := WithCancel(ctx)
		f := ExecuteAsync[string](sctx, reserve, 1)
		tm := NewTimer(sctx, time.Hour)
		cancel()
		_, stepErr = f.Get(ctx)
		timerErr = tm.Get(ctx)
		// The parent is not cancelled: it goes on.
		return Execute[string](ctx, ship, 1)
	})
	h, o := drive(t, fn, func(c *schema.Command) *schema.Result {
		// The reserve's result comes after its cancel, and is ignored.
		res := ok(c.ID, c.Action+"-ok")
		res.Service, res.Action = c.Service, c.Action
		return res
	}, nil)
	if !errors.Is(stepErr, ErrCanceled) || !errors.Is(timerErr, ErrCanceled) {
		t.Fatalf("step %v, timer %v: want both cancelled", stepErr, timerErr)
	}
	if k := kinds(h); k != "cmd:reserve timer.started timer.cancelled step.cancelled cmd:create res:reserve res:create" {
		t.Fatalf("history %s", k)
	}
	if output(t, o) != "create-ok" || o.Finished.Status != schema.StatusCompleted {
		t.Fatalf("end %+v", o.Finished)
	}
}

func TestCancelRequestBeforeTheCodeWaitsIsSeenWhereItIsRecorded(t *testing.T) {
	// The cancel is recorded after the charge's result: the charge
	// succeeds, the wait that follows is cancelled.
	fn := fnFor(compensatingFlow)
	o := Replay(fn, "w1", hist(t, 0, cmd(1, charge), okAll(cmd(1, charge)), cancelOp()), nil)
	if got := decisions(o); len(got) != 1 || got[0] != "command payment.refund (compensation)" {
		t.Fatalf("decisions %v", got)
	}
	// Recorded before the result: the charge's Execute is cancelled, and
	// nothing was added to the saga.
	o = Replay(fn, "w1", hist(t, 0, cmd(1, charge), cancelOp(), ok(1, "ch-1")), nil)
	if got := decisions(o); len(got) != 1 || got[0] != "cancel of step 1" || o.Finished == nil || o.Finished.Status != schema.StatusCancelled {
		t.Fatalf("decisions %v end %+v", got, o.Finished)
	}
}

func TestRetryResendsOnlyTheFailedCompensations(t *testing.T) {
	fn := fnOf(t) // sagaFlow: charge, reserve (fails), compensate: refund
	base := []schema.Kinded{cmd(1, charge), ok(1, "ch-1"), cmd(2, reserve), failed(2, "out_of_stock")}
	o := Replay(fn, "w1", hist(t, 5, base...), nil)
	refund1 := o.Decisions[0].(*schema.Command)
	if !refund1.Compensation || refund1.Action != "refund" {
		t.Fatalf("decisions %v", decisions(o))
	}
	h := append(append([]schema.Kinded{}, base...), refund1, failed(refund1.ID, "gateway_error"))
	o = Replay(fn, "w1", hist(t, 5, h...), nil)
	// The saga records the version under which it waits for a retry (a
	// history from before retries existed goes on past the failure).
	if o.Finished == nil || o.Finished.Status != schema.StatusManual || !o.Finished.Retryable || len(o.Decisions) != 1 {
		t.Fatalf("after the failed refund: %v %+v, want manual and retryable", decisions(o), o.Finished)
	}
	if m, ok := o.Decisions[0].(*schema.Marker); !ok || m.Name != "version:"+sagaAwaitRetry {
		t.Fatalf("after the failed refund: %v, want the saga's version marker", decisions(o))
	}
	h = append(h, o.Decisions[0])
	if !strings.Contains(o.Finished.Reason, "payment.refund failed") {
		t.Fatalf("reason %q", o.Finished.Reason)
	}
	h = append(h, retryOp())
	o = Replay(fn, "w1", hist(t, 5, h...), nil)
	if len(o.Decisions) != 1 || o.Finished != nil {
		t.Fatalf("after the retry: %v %+v, want one new refund", decisions(o), o.Finished)
	}
	refund2 := o.Decisions[0].(*schema.Command)
	if refund2.ID == refund1.ID || !refund2.Compensation || refund2.Action != "refund" {
		t.Fatalf("retried refund %+v: want a new command for the refund", refund2)
	}
	h = append(h, refund2, &schema.Result{CommandID: refund2.ID, Attempts: 1})
	o = Replay(fn, "w1", hist(t, 5, h...), nil)
	if o.Finished == nil || o.Finished.Status != schema.StatusCompensated || len(o.Decisions) != 0 {
		t.Fatalf("after the retried refund: %v %+v, want compensated", decisions(o), o.Finished)
	}
}
