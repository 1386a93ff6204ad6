package orchestrator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/streams"
)

// SignalAndWait tells what became of a signal: recorded, with the sequence
// of the very history event that holds it; or refused, with the reason of
// its dead letter (unknown workflow, finished workflow, bad payload). With
// no orchestrator running, it gives up when its context ends and says so.
func TestSignalAndWaitGivesTheVerdict(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	reg := workflow.NewRegistry()
	workflow.Register(reg, "waiter", func(ctx workflow.Context, in string) (string, error) {
		workflow.ReceiveSignal(ctx, "go")
		return in, nil
	})
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(ctx, env.JS, "waiter", "verdict-1", "x", "test"); err != nil {
		t.Fatal(err)
	}

	// No orchestrator yet: no verdict within the wait.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	v, err := SignalAndWait(short, env.JS, "verdict-1", "early", nil)
	cancel()
	if !errors.Is(err, ErrNoVerdict) || v.StreamSeq == 0 {
		t.Fatalf("with no orchestrator: verdict %+v, err %v; want ErrNoVerdict with the stream sequence", v, err)
	}

	o := runOrchestrator(t, env, reg, 2)
	wait := func(id, name, payload string) SignalVerdict {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var body []byte
		if payload != "" {
			body = []byte(payload)
		}
		v, err := SignalAndWait(wctx, env.JS, id, name, body)
		if err != nil {
			t.Fatalf("signal %s to %s: %v", name, id, err)
		}
		return v
	}

	v = wait("verdict-1", "go", `{"a":1}`)
	if !v.Recorded || v.Reason != "" {
		t.Fatalf("signal to a running workflow: %+v, want recorded", v)
	}
	ev, err := o.hist.Last(ctx, streams.SignalEventSubject("verdict-1", v.StreamSeq))
	if err != nil || ev == nil || ev.Seq != v.HistorySeq {
		t.Fatalf("verdict says history #%d; the history holds %+v (%v)", v.HistorySeq, ev, err)
	}
	natstest.Eventually(t, 30*time.Second, func() bool { return finished(t, o, "verdict-1") }, "verdict-1 did not finish")

	for _, c := range []struct {
		name, id, signal, payload, reason string
	}{
		{"unknown workflow", "verdict-nobody", "go", "", "unknown workflow verdict-nobody"},
		{"finished workflow", "verdict-1", "go", "", "finished workflow verdict-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := wait(c.id, c.signal, c.payload)
			if v.Recorded || !strings.Contains(v.Reason, c.reason) {
				t.Fatalf("verdict %+v, want refused with %q", v, c.reason)
			}
		})
	}
	if _, err := SendSignal(ctx, env.JS, "verdict-1", "go", []byte("{not json")); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("bad JSON payload: %v, want refused before sending", err)
	}
	if _, err := SendSignal(ctx, env.JS, "verdict-1", "a.*.b", nil); err == nil || !strings.Contains(err.Error(), `"a.*.b"`) {
		t.Fatalf("wildcard signal name: %v, want refused naming it", err)
	}
}
