package workflow

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

func raw(t *testing.T, v any) schema.Raw {
	t.Helper()
	r, err := schema.EncodeRaw(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func funcOf[In, Out any](fn func(Context, In) (Out, error)) Func {
	r := NewRegistry()
	Register(r, "f", fn)
	f, _ := r.Lookup("f")
	return f
}

// adder charges, then sets an "add" handler that charges per update and
// waits for signal "stop".
func adder(ctx Context, _ int) (int, error) {
	total := 0
	if err := SetUpdateHandler(ctx, "add", func(ctx Context, n int) (int, error) {
		if _, err := Execute[string](ctx, charge, n); err != nil {
			return 0, err
		}
		total += n
		return total, nil
	}, func(n int) error {
		if n < 0 {
			return errors.New("negative")
		}
		_, err := Execute[string](ctx, charge, n) // not allowed in a validator
		return err
	}); err != nil {
		return 0, err
	}
	if err := SetQueryHandler(ctx, "total", func(struct{}) (int, error) { return total, nil }); err != nil {
		return 0, err
	}
	ReceiveSignal(ctx, "stop")
	return total, nil
}

// An accepted update runs its handler at its place in the history; its
// steps are decisions like any other, and its return is the decision
// update.completed.
func TestUpdateHandlerRunsAtItsPlaceInHistory(t *testing.T) {
	fn := funcOf(adder)
	out := Replay(fn, "w1", hist(t, 0, &schema.UpdateAccepted{UpdateID: "u1", Name: "add", Arg: raw(t, 2)}), nil)
	if out.Blocked != nil || len(out.Decisions) != 1 || describe(out.Decisions[0]) != "command payment.charge" {
		t.Fatalf("outcome %+v: want the handler's charge", out)
	}
	out = Replay(fn, "w1", hist(t, 0,
		&schema.UpdateAccepted{UpdateID: "u1", Name: "add", Arg: raw(t, 2)},
		cmd(1, charge), ok(1, "ch"),
	), nil)
	if len(out.Decisions) != 1 {
		t.Fatalf("decisions %+v", out.Decisions)
	}
	c, isC := out.Decisions[0].(*schema.UpdateCompleted)
	if !isC || c.UpdateID != "u1" || c.ID != 2 || c.Error != "" {
		t.Fatalf("decision %+v: want update u1 completed as decision 2", out.Decisions[0])
	}
	var total int
	if err := schema.DecodeRaw(c.Output, &total); err != nil || total != 2 {
		t.Fatalf("output %d, %v", total, err)
	}
	// A second record of the same update is not applied twice.
	out = Replay(fn, "w1", hist(t, 0,
		&schema.UpdateAccepted{UpdateID: "u1", Name: "add", Arg: raw(t, 2)},
		cmd(1, charge), ok(1, "ch"), c,
		&schema.UpdateAccepted{UpdateID: "u1", Name: "add", Arg: raw(t, 2)},
	), nil)
	if out.Blocked != nil || len(out.Decisions) != 0 {
		t.Fatalf("duplicate accept: %+v", out)
	}
}

// A workflow that returns while an update's handler waits completes the
// update with an error, before its end, so the caller is answered.
func TestUpdateOpenWhenWorkflowReturnsCompletesWithError(t *testing.T) {
	out := Replay(funcOf(adder), "w1", hist(t, 0,
		&schema.UpdateAccepted{UpdateID: "u1", Name: "add", Arg: raw(t, 2)},
		cmd(1, charge),
		&schema.Signal{Name: "stop"},
	), nil)
	if out.Finished == nil || len(out.Decisions) != 1 {
		t.Fatalf("outcome %+v", out)
	}
	c, isC := out.Decisions[0].(*schema.UpdateCompleted)
	if !isC || c.UpdateID != "u1" || c.Error != errUpdateAbandoned.Error() {
		t.Fatalf("decision %+v: want u1 completed with %q", out.Decisions[0], errUpdateAbandoned)
	}
}

// An update recorded before the code sets its handler waits for it.
func TestUpdateBeforeItsHandlerWaitsForIt(t *testing.T) {
	late := func(ctx Context, _ int) (int, error) {
		ReceiveSignal(ctx, "ready")
		got := 0
		if err := SetUpdateHandler(ctx, "set", func(_ Context, n int) (int, error) { got = n; return n, nil }, nil); err != nil {
			return 0, err
		}
		ReceiveSignal(ctx, "stop")
		return got, nil
	}
	out := Replay(funcOf(late), "w1", hist(t, 0,
		&schema.UpdateAccepted{UpdateID: "u1", Name: "set", Arg: raw(t, 7)},
		&schema.Signal{Name: "ready"},
	), nil)
	if len(out.Decisions) != 1 {
		t.Fatalf("outcome %+v: want the update completed once its handler is set", out)
	}
	if c, isC := out.Decisions[0].(*schema.UpdateCompleted); !isC || c.UpdateID != "u1" {
		t.Fatalf("decision %+v", out.Decisions[0])
	}
}

// A validator runs on the replayed state; one that issues a step is an
// error, and a rejection names the validator's reason. Neither changes
// what the replay decides.
func TestValidateUpdate(t *testing.T) {
	fn := funcOf(adder)
	h := hist(t, 0)
	if err := ValidateUpdate(fn, "w1", h, "add", raw(t, -1), nil); !errors.Is(err, ErrRejected) || err.Error() != "update rejected: negative" {
		t.Fatalf("add -1: %v", err)
	}
	if err := ValidateUpdate(fn, "w1", h, "add", raw(t, 1), nil); !errors.Is(err, ErrRejected) || !errors.Is(err, ErrNotReadOnly) {
		t.Fatalf("validator issuing a step: %v; want ErrRejected and ErrNotReadOnly", err)
	}
	if err := ValidateUpdate(fn, "w1", h, "nope", nil, nil); !errors.Is(err, ErrUnknownHandler) {
		t.Fatalf("unknown update: %v", err)
	}
	if err := ValidateUpdate(fn, "w1", hist(t, 0, &schema.Signal{Name: "stop"}), "add", raw(t, 1), nil); !errors.Is(err, ErrRejected) {
		t.Fatalf("update of a returned workflow: %v", err)
	}
}

// A query answers from the state at the end of the history and leaves the
// replay's decisions as they were.
func TestQueryAnswersFromReplayedState(t *testing.T) {
	fn := funcOf(adder)
	done := &schema.UpdateCompleted{ID: 2, UpdateID: "u1", Name: "add", Output: raw(t, 2)}
	h := hist(t, 0, &schema.UpdateAccepted{UpdateID: "u1", Name: "add", Arg: raw(t, 2)}, cmd(1, charge), ok(1, "ch"), done)
	got, err := Query(fn, "w1", h, "total", nil, nil)
	var total int
	if err != nil || schema.DecodeRaw(got, &total) != nil || total != 2 {
		t.Fatalf("total %d, %v; want 2", total, err)
	}
	if out := Replay(fn, "w1", h, nil); out.Blocked != nil || len(out.Decisions) != 0 {
		t.Fatalf("replay after the query: %+v", out)
	}
	if _, err := Query(fn, "w1", hist(t, 0, cmd(1, refund)), "total", nil, nil); !errors.Is(err, ErrNotDeciding) {
		t.Fatalf("query of a diverged history: %v; want ErrNotDeciding", err)
	}
}

// A query handler that panics, or whose step ends its goroutine, is an
// error answer; the replay goes on as if it had not been asked.
func TestQueryHandlerFailuresAreAnswers(t *testing.T) {
	fn := funcOf(func(ctx Context, _ int) (int, error) {
		_ = SetQueryHandler(ctx, "boom", func(struct{}) (int, error) { panic("boom") })
		_ = SetQueryHandler(ctx, "unencodable", func(struct{}) (int, error) {
			_, err := Execute[int](ctx, charge, make(chan int))
			return 0, err
		})
		_ = SetQueryHandler(ctx, "sleep", func(struct{}) (int, error) { return 0, Sleep(ctx, time.Hour) })
		ReceiveSignal(ctx, "stop")
		return 1, nil
	})
	h := hist(t, 0)
	if _, err := Query(fn, "w1", h, "boom", nil, nil); err == nil || !strings.Contains(err.Error(), "query handler boom panicked: boom") {
		t.Fatalf("panicking handler: %v", err)
	}
	if _, err := Query(fn, "w1", h, "unencodable", nil, nil); !errors.Is(err, ErrNotReadOnly) {
		t.Fatalf("handler whose step cannot be encoded: %v", err)
	}
	if _, err := Query(fn, "w1", h, "sleep", nil, nil); !errors.Is(err, ErrNotReadOnly) {
		t.Fatalf("handler that sleeps: %v", err)
	}
	if _, err := Query(fn, "w1", h, "nope", nil, nil); !errors.Is(err, ErrUnknownHandler) || !strings.Contains(err.Error(), "(it has: boom, sleep, unencodable)") {
		t.Fatalf("unknown query: %v", err)
	}
}
