package workflowtest_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/schema"
)

// QueryState (Temporal's query sample): the workflow's state is queried
// while it waits on a timer, and after it has finished.
func QueryState(ctx workflow.Context, _ struct{}) (string, error) {
	state := "started"
	if err := workflow.SetQueryHandler(ctx, "state", func(struct{}) (string, error) { return state, nil }); err != nil {
		return "", err
	}
	// A query handler only reads: this one tries to start a step.
	if err := workflow.SetQueryHandler(ctx, "meddle", func(struct{}) (string, error) {
		_, err := workflow.Execute[string](ctx, workflow.Activity{Service: "x", Action: "y"}, nil)
		return "", err
	}); err != nil {
		return "", err
	}
	// A query with an argument, whose handler may answer an error.
	if err := workflow.SetQueryHandler(ctx, "echo", func(s string) (string, error) {
		if s == "" {
			return "", errors.New("say something")
		}
		return s, nil
	}); err != nil {
		return "", err
	}
	state = "waiting on timer"
	if err := workflow.Sleep(ctx, 2*time.Minute); err != nil {
		return "", err
	}
	state = "done"
	return state, nil
}

func kindCount(d *orchestrator.Description, kind schema.Kind) int {
	n := 0
	for _, h := range d.History {
		if h.Type == string(kind) {
			n++
		}
	}
	return n
}

func TestSampleQueryWhileWaitingAndAfter(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "query", QueryState)
	env.Run()
	env.Start("query", "q-1", struct{}{})
	waiting := env.WaitFor("q-1", func(d *orchestrator.Description) bool { return len(d.Timers) == 1 })

	var state string
	if err := env.Query("q-1", "state", nil, &state); err != nil {
		t.Fatal(err)
	}
	if state != "waiting on timer" {
		t.Fatalf("state while the timer runs: %q, want %q", state, "waiting on timer")
	}
	err := env.Query("q-1", "nope", nil, nil)
	if !errors.Is(err, workflow.ErrUnknownHandler) || !strings.Contains(err.Error(), "echo, meddle, state") {
		t.Fatalf("unknown query: %v; want ErrUnknownHandler listing echo, meddle, state", err)
	}
	var echo string
	if err := env.Query("q-1", "echo", "hello", &echo); err != nil || echo != "hello" {
		t.Fatalf("echo: %q, %v", echo, err)
	}
	if err := env.Query("q-1", "echo", strings.Repeat("x", 2<<20), nil); err == nil || !strings.Contains(err.Error(), "the limit is") {
		t.Fatalf("a 2 MiB argument: %v; want it refused with the limit", err)
	}
	if err := env.Query("q-1", "echo", "", nil); !errors.Is(err, orchestrator.ErrHandlerFailed) || !strings.Contains(err.Error(), "say something") {
		t.Fatalf("a query handler's error: %v; want ErrHandlerFailed with its text", err)
	}
	err = env.Query("q-1", "meddle", nil, nil)
	if !errors.Is(err, workflow.ErrNotReadOnly) {
		t.Fatalf("a query handler that starts a step: %v, want ErrNotReadOnly", err)
	}
	if err := env.Query("q-404", "state", nil, nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("query of an unknown workflow: %v", err)
	}
	if d, _ := env.Describe("q-1"); len(d.History) != len(waiting.History) || d.Status != schema.StatusRunning {
		t.Fatalf("queries wrote to the history: %d events, was %d", len(d.History), len(waiting.History))
	}

	env.Advance(2 * time.Minute)
	if d := env.Wait("q-1"); d.Status != schema.StatusCompleted {
		t.Fatalf("status %s", d.Status)
	}
	if err := env.Query("q-1", "state", nil, &state); err != nil {
		t.Fatal(err)
	}
	if state != "done" {
		t.Fatalf("state of the finished workflow: %q, want done", state)
	}
}

// Counter (Temporal's updates sample): updates add to a counter and return
// its new value; a validator rejects negative additions before anything is
// recorded. The workflow ends on signal "done" with the total.
func Counter(ctx workflow.Context, _ struct{}) (int, error) {
	counter := 0
	err := workflow.SetUpdateHandler(ctx, "add",
		func(ctx workflow.Context, n int) (int, error) {
			counter += n
			return counter, nil
		},
		func(n int) error {
			if n < 0 {
				return errors.New("rejecting negative number")
			}
			return nil
		})
	if err != nil {
		return 0, err
	}
	if err := workflow.SetQueryHandler(ctx, "counter", func(struct{}) (int, error) { return counter, nil }); err != nil {
		return 0, err
	}
	workflow.ReceiveSignal(ctx, "done")
	return counter, nil
}

func TestSampleUpdatesCounterWithValidator(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "counter", Counter)
	env.Run()
	env.Start("counter", "c-1", struct{}{})

	var got int
	if err := env.Update("c-1", "add", 5, &got); err != nil || got != 5 {
		t.Fatalf("add 5: %d, %v; want 5", got, err)
	}
	err := env.Update("c-1", "add", -1, &got)
	if !errors.Is(err, workflow.ErrRejected) || !strings.Contains(err.Error(), "rejecting negative number") {
		t.Fatalf("add -1: %v; want the validator's rejection", err)
	}
	if err := env.Update("c-1", "add", 3, &got); err != nil || got != 8 {
		t.Fatalf("add 3: %d, %v; want 8", got, err)
	}
	if err := env.Update("c-1", "sub", 3, nil); !errors.Is(err, workflow.ErrUnknownHandler) || !strings.Contains(err.Error(), "add") {
		t.Fatalf("unknown update: %v; want ErrUnknownHandler listing add", err)
	}
	if err := env.Query("c-1", "counter", nil, &got); err != nil || got != 8 {
		t.Fatalf("counter query: %d, %v; want 8", got, err)
	}
	d, _ := env.Describe("c-1")
	if a, c := kindCount(d, schema.KindUpdateAccepted), kindCount(d, schema.KindUpdateCompleted); a != 2 || c != 2 {
		t.Fatalf("history holds %d accepted and %d completed updates, want 2 and 2 (the rejected one not recorded)", a, c)
	}
	for _, h := range d.History {
		if (h.Type == string(schema.KindUpdateAccepted) || h.Type == string(schema.KindUpdateCompleted)) && !strings.HasPrefix(h.Step, "update add ") {
			t.Fatalf("history entry %+v: want its step named after the update", h)
		}
	}
	env.Signal("c-1", "done", nil)
	env.Wait("c-1")
	var out int
	if err := env.Output("c-1", &out); err != nil || out != 8 {
		t.Fatalf("output %d, %v; want 8", out, err)
	}
	if err := env.Update("c-1", "add", 1, nil); !errors.Is(err, orchestrator.ErrWorkflowFinished) {
		t.Fatalf("update of a finished workflow: %v, want ErrWorkflowFinished", err)
	}
}

// Concurrent updates each validate on the state they read and are recorded
// once each, in some order: the fence makes a request that lost the race
// validate again on the new tail.
func TestConcurrentUpdatesAreEachAppliedOnce(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "counter", Counter)
	env.Run()
	env.Start("counter", "cc-1", struct{}{})
	const n = 12
	results := make(chan int, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			var got int
			if err := env.Update("cc-1", "add", 1, &got); err != nil {
				errs <- err
				return
			}
			results <- got
		}()
	}
	seen := map[int]bool{}
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			t.Fatalf("update: %v", err)
		case got := <-results:
			if seen[got] {
				t.Fatalf("two updates answered %d: each must see the one before it", got)
			}
			seen[got] = true
		}
	}
	d, _ := env.Describe("cc-1")
	if a := kindCount(d, schema.KindUpdateAccepted); a != n {
		t.Fatalf("%d updates recorded, want %d", a, n)
	}
	var total int
	if err := env.Query("cc-1", "counter", nil, &total); err != nil || total != n {
		t.Fatalf("counter %d, %v; want %d", total, err, n)
	}
}
