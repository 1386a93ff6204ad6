package workflow

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jetflow-io/jetflow/schema"
)

// finishedOutput replays fn over h and decodes its output as a string
// slice, failing the test if it did not finish.
func finishedOutput(t *testing.T, fn func(Context, int) ([]string, error), h ...schema.Kinded) []string {
	t.Helper()
	r := NewRegistry()
	Register(r, "f", fn)
	f, _ := r.Lookup("f")
	o := Replay(f, "w1", hist(t, 0, h...), nil)
	if o.Finished == nil {
		t.Fatalf("not finished: decisions %v blocked %+v", decisions(o), o.Blocked)
	}
	if o.Finished.Status != schema.StatusCompleted {
		t.Fatalf("status %s: %s", o.Finished.Status, o.Finished.Error)
	}
	var out []string
	if err := schema.DecodeRaw(o.Finished.Output, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSettableFutureSetByAnotherCoroutine(t *testing.T) {
	flow := func(ctx Context, _ int) ([]string, error) {
		ok, setOK := NewFuture[string](ctx)
		bad, setBad := NewFuture[int](ctx)
		Go(ctx, func(ctx Context) {
			v, err := Execute[string](ctx, charge, 1)
			setOK.Set(v+"!", err)
			setBad.SetError(errors.New("no stock"))
		})
		v, err := ok.Get(ctx)
		if err != nil {
			return nil, err
		}
		_, err = bad.Get(ctx)
		return []string{v, fmt.Sprint(err)}, nil
	}
	if got := fmt.Sprint(finishedOutput(t, flow, cmd(1, charge), ok(1, "paid"))); got != "[paid! no stock]" {
		t.Fatalf("got %s", got)
	}
}

// A send and a receive pair up the same way on every replay: an
// unbuffered send returns once its value was taken; a buffered one at once.
func TestChannelHandsOverInOrder(t *testing.T) {
	for _, tc := range []struct {
		size int
		want string
	}{
		{0, "[recv 1 sent 1 recv 2 sent 2 recv 3 sent 3]"},
		{3, "[sent 1 sent 2 sent 3 recv 1 recv 2 recv 3]"},
	} {
		t.Run(fmt.Sprintf("buffer %d", tc.size), func(t *testing.T) {
			flow := func(ctx Context, _ int) ([]string, error) {
				var log []string
				ch := NewBufferedChannel[int](ctx, tc.size)
				Go(ctx, func(ctx Context) {
					for i := 1; i <= 3; i++ {
						ch.Send(ctx, i)
						log = append(log, fmt.Sprint("sent ", i))
					}
					ch.Close()
				})
				for {
					v, more := ch.Receive(ctx)
					if !more {
						return log, nil
					}
					log = append(log, fmt.Sprint("recv ", v))
				}
			}
			if got := fmt.Sprint(finishedOutput(t, flow)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// A Selector takes a signal channel, a workflow channel and a step future
// in the order they became ready in the history.
func TestSelectorReceivesInHistoryOrder(t *testing.T) {
	flow := func(ctx Context, _ int) ([]string, error) {
		var log []string
		sigs := GetSignalChannel[string](ctx, "go")
		ch := NewBufferedChannel[string](ctx, 1)
		step := ExecuteAsync[string](ctx, charge, 1)
		Go(ctx, func(ctx Context) {
			_ = Sleep(ctx, 1) // a timer: ready when it fires
			ch.Send(ctx, "woke")
		})
		sel := NewSelector(ctx).
			AddReceive(sigs, func() {
				v, _, _ := sigs.ReceiveAsync()
				log = append(log, "signal "+v)
			}).
			AddReceive(ch, func() {
				v, _ := ch.ReceiveAsync()
				log = append(log, "channel "+v)
			}).
			AddFuture(step, func() {
				v, _ := step.Get(ctx)
				log = append(log, "step "+v)
			})
		for i := 0; i < 4; i++ {
			sel.Select(ctx)
		}
		return log, nil
	}
	ts := &schema.TimerStarted{ID: 2, Duration: 1}
	fired := &schema.TimerFired{TimerID: 2}
	for _, tc := range []struct {
		name string
		h    []schema.Kinded
		want string
	}{
		{"signals first", []schema.Kinded{cmd(1, charge), ts, sig("go", "a"), sig("go", "b"), fired, ok(1, "paid")},
			"[signal a signal b channel woke step paid]"},
		{"step first", []schema.Kinded{cmd(1, charge), ts, ok(1, "paid"), sig("go", "a"), fired, sig("go", "b")},
			"[step paid signal a channel woke signal b]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(finishedOutput(t, flow, tc.h...)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSelectorDefaultRunsWhenNothingIsReady(t *testing.T) {
	flow := func(ctx Context, _ int) ([]string, error) {
		var log []string
		step := ExecuteAsync[string](ctx, charge, 1)
		sel := NewSelector(ctx).
			AddFuture(step, func() { log = append(log, "step") }).
			AddDefault(func() { log = append(log, "default") })
		sel.Select(ctx)
		if sel.HasPending() {
			log = append(log, "pending")
		}
		return log, nil
	}
	if got := fmt.Sprint(finishedOutput(t, flow)); got != "[default]" {
		t.Fatalf("nothing recorded: got %s", got)
	}
	// The result recorded later does not change the branch taken before it
	// was in: the replay takes the default again.
	if got := fmt.Sprint(finishedOutput(t, flow, cmd(1, charge), ok(1, "x"))); got != "[default]" {
		t.Fatalf("replay: got %s", got)
	}
}
