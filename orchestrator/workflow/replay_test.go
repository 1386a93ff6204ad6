package workflow

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

var (
	charge  = Activity{Service: "payment", Action: "charge"}
	refund  = Activity{Service: "payment", Action: "refund"}
	reserve = Activity{Service: "inventory", Action: "reserve"}
	release = Activity{Service: "inventory", Action: "release"}
	ship    = Activity{Service: "shipping", Action: "create"}
)

func sagaFlow(ctx Context, amount int) (string, error) {
	saga := NewSaga(ctx)
	id, err := Execute[string](ctx, charge, amount)
	if err != nil {
		return "", err
	}
	saga.AddCompensation(refund, id)
	if _, err := Execute[string](ctx, reserve, amount); err != nil {
		return "", saga.Compensate(err)
	}
	saga.AddCompensation(release, id)
	if _, err := Execute[string](ctx, ship, amount); err != nil {
		return "", saga.Compensate(err)
	}
	return "done:" + id, nil
}

// hist builds a history: the start event followed by vs.
func hist(t *testing.T, in any, vs ...schema.Kinded) []Event {
	t.Helper()
	raw, err := schema.EncodeRaw(in)
	if err != nil {
		t.Fatal(err)
	}
	evs := []Event{{Seq: 1, Time: time.Unix(100, 0), Value: &schema.WorkflowStarted{WorkflowID: "w1", Type: "t", Input: raw}}}
	for i, v := range vs {
		evs = append(evs, Event{Seq: uint64(i + 2), Time: time.Unix(int64(101+i), 0), Value: v})
	}
	return evs
}

func ok(id int, v any) *schema.Result {
	raw, _ := schema.EncodeRaw(v)
	return &schema.Result{CommandID: id, Output: raw, Attempts: 1}
}

func failed(id int, kind string) *schema.Result {
	return &schema.Result{CommandID: id, Error: &schema.Error{Kind: kind, Message: "no"}, Attempts: 1}
}

func cmd(id int, a Activity) *schema.Command {
	return &schema.Command{ID: id, Service: a.Service, Action: a.Action}
}

func fnOf(t *testing.T) Func {
	r := NewRegistry()
	Register(r, "saga", sagaFlow)
	fn, _ := r.Lookup("saga")
	return fn
}

func decisions(o Outcome) []string {
	var out []string
	for _, d := range o.Decisions {
		out = append(out, describe(d))
	}
	return out
}

func TestReplayIssuesOnlyTheNextStep(t *testing.T) {
	fn := fnOf(t)
	o := Replay(fn, "w1", hist(t, 5), nil)
	if got := decisions(o); len(got) != 1 || got[0] != "command payment.charge" {
		t.Fatalf("first decision = %v", got)
	}
	if o.Decisions[0].(*schema.Command).ID != 1 {
		t.Fatalf("first command ID = %d", o.Decisions[0].(*schema.Command).ID)
	}
	// Charge recorded and answered: only reserve is new.
	o = Replay(fn, "w1", hist(t, 5, cmd(1, charge), ok(1, "ch-1")), nil)
	if got := decisions(o); len(got) != 1 || got[0] != "command inventory.reserve" || o.Decisions[0].(*schema.Command).ID != 2 {
		t.Fatalf("second decision = %v", got)
	}
	// Waiting for a result: nothing new.
	o = Replay(fn, "w1", hist(t, 5, cmd(1, charge), ok(1, "ch-1"), cmd(2, reserve)), nil)
	if len(o.Decisions) != 0 || o.Finished != nil || o.Blocked != nil {
		t.Fatalf("waiting replay decided %+v", o)
	}
}

func TestReplayCompletes(t *testing.T) {
	o := Replay(fnOf(t), "w1", hist(t, 5,
		cmd(1, charge), ok(1, "ch-1"), cmd(2, reserve), ok(2, "r"), cmd(3, ship), ok(3, "s")), nil)
	if o.Finished == nil || o.Finished.Status != schema.StatusCompleted {
		t.Fatalf("outcome %+v", o)
	}
	var out string
	if err := schema.DecodeRaw(o.Finished.Output, &out); err != nil || out != "done:ch-1" {
		t.Fatalf("output %q %v", out, err)
	}
}

func TestReplayIgnoresDuplicateResults(t *testing.T) {
	o := Replay(fnOf(t), "w1", hist(t, 5,
		cmd(1, charge), ok(1, "ch-1"), ok(1, "ch-OTHER"), cmd(2, reserve), ok(2, "r"), cmd(3, ship), ok(3, "s")), nil)
	var out string
	_ = schema.DecodeRaw(o.Finished.Output, &out)
	if out != "done:ch-1" {
		t.Fatalf("duplicate result changed the outcome: %q", out)
	}
}

func TestSagaCompensatesInReverse(t *testing.T) {
	fn := fnOf(t)
	h := []schema.Kinded{cmd(1, charge), ok(1, "ch-1"), cmd(2, reserve), ok(2, "r"), cmd(3, ship), failed(3, "rejected")}
	o := Replay(fn, "w1", hist(t, 5, h...), nil)
	if got := decisions(o); len(got) != 1 || got[0] != "command inventory.release (compensation)" {
		t.Fatalf("first compensation = %v", got)
	}
	h = append(h, &schema.Command{ID: 4, Service: "inventory", Action: "release", Compensation: true}, ok(4, nil))
	o = Replay(fn, "w1", hist(t, 5, h...), nil)
	if got := decisions(o); len(got) != 1 || got[0] != "command payment.refund (compensation)" {
		t.Fatalf("second compensation = %v", got)
	}
	h = append(h, &schema.Command{ID: 5, Service: "payment", Action: "refund", Compensation: true})
	o = Replay(fn, "w1", hist(t, 5, append(h, ok(5, nil))...), nil)
	if o.Finished == nil || o.Finished.Status != schema.StatusCompensated {
		t.Fatalf("outcome %+v", o.Finished)
	}
	o = Replay(fn, "w1", hist(t, 5, append(h, failed(5, "gateway_error"))...), nil)
	if o.Finished == nil || o.Finished.Status != schema.StatusManual || !strings.Contains(o.Finished.Reason, "payment.refund") {
		t.Fatalf("outcome %+v", o.Finished)
	}
}

func TestReplayDetectsNondeterminism(t *testing.T) {
	// The history says the first step was a reservation; the code charges.
	o := Replay(fnOf(t), "w1", hist(t, 5, cmd(1, reserve), ok(1, "x")), nil)
	if o.Blocked == nil {
		t.Fatalf("not blocked: %+v", o)
	}
	for _, want := range []string{"decision 1", "#2", "inventory.reserve", "payment.charge"} {
		if !strings.Contains(o.Blocked.Reason, want) {
			t.Errorf("reason %q lacks %q", o.Blocked.Reason, want)
		}
	}
	if len(o.Decisions) != 0 {
		t.Fatalf("blocked replay still decided %v", decisions(o))
	}
}

func TestReplayDetectsRemovedStep(t *testing.T) {
	r := NewRegistry()
	Register(r, "short", func(ctx Context, in int) (int, error) { return in, nil })
	fn, _ := r.Lookup("short")
	o := Replay(fn, "w1", hist(t, 5, cmd(1, charge)), nil)
	if o.Blocked == nil || !strings.Contains(o.Blocked.Reason, "payment.charge") {
		t.Fatalf("outcome %+v", o)
	}
}

func TestSideEffectAndVersionAreRecorded(t *testing.T) {
	calls := 0
	r := NewRegistry()
	Register(r, "se", func(ctx Context, in int) (int, error) {
		v := SideEffect(ctx, func() int { calls++; return 42 })
		ver := GetVersion(ctx, "new-step", DefaultVersion, 1)
		if _, err := Execute[string](ctx, charge, v+ver); err != nil {
			return 0, err
		}
		return v, nil
	})
	fn, _ := r.Lookup("se")
	o := Replay(fn, "w1", hist(t, 0), nil)
	if len(o.Decisions) != 3 || calls != 1 {
		t.Fatalf("decisions %v calls %d", decisions(o), calls)
	}
	// Replay with the marker recorded: fn not called again, value kept.
	h := append([]schema.Kinded{}, o.Decisions...)
	h = append(h, ok(3, "c"))
	o = Replay(fn, "w1", hist(t, 0, h...), nil)
	if calls != 1 || o.Finished == nil {
		t.Fatalf("calls %d outcome %+v", calls, o)
	}
	var out int
	_ = schema.DecodeRaw(o.Finished.Output, &out)
	if out != 42 {
		t.Fatalf("out %d", out)
	}
}

func TestGetVersionOnOldHistoryTakesOldPath(t *testing.T) {
	r := NewRegistry()
	Register(r, "v", func(ctx Context, in int) (int, error) {
		if GetVersion(ctx, "fraud", DefaultVersion, 1) == 1 {
			_, err := Execute[string](ctx, reserve, in)
			return 1, err
		}
		_, err := Execute[string](ctx, charge, in)
		return 0, err
	})
	fn, _ := r.Lookup("v")
	o := Replay(fn, "w1", hist(t, 0, cmd(1, charge), ok(1, "c")), nil)
	if o.Finished == nil || o.Finished.Status != schema.StatusCompleted {
		t.Fatalf("old history: %+v", o)
	}
}

func TestPanicBlocks(t *testing.T) {
	r := NewRegistry()
	Register(r, "p", func(ctx Context, in int) (int, error) { panic("boom") })
	fn, _ := r.Lookup("p")
	o := Replay(fn, "w1", hist(t, 0), nil)
	if o.Blocked == nil || !strings.Contains(o.Blocked.Reason, "boom") {
		t.Fatalf("outcome %+v", o)
	}
}

func TestParallelStepsWithGo(t *testing.T) {
	r := NewRegistry()
	Register(r, "par", func(ctx Context, in int) (int, error) {
		a := ExecuteAsync[int](ctx, charge, 1)
		b := ExecuteAsync[int](ctx, reserve, 2)
		x, err1 := a.Get(ctx)
		y, err2 := b.Get(ctx)
		return x + y, errors.Join(err1, err2)
	})
	fn, _ := r.Lookup("par")
	o := Replay(fn, "w1", hist(t, 0), nil)
	if len(o.Decisions) != 2 {
		t.Fatalf("want both commands at once, got %v", decisions(o))
	}
	o = Replay(fn, "w1", hist(t, 0, cmd(1, charge), cmd(2, reserve), ok(2, 20), ok(1, 10)), nil)
	var out int
	_ = schema.DecodeRaw(o.Finished.Output, &out)
	if out != 30 {
		t.Fatalf("out %d", out)
	}
}
