package workflowtest_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
)

// nap returns its start time after sleeping an hour.
func nap(ctx workflow.Context, _ int) (time.Time, error) {
	start := workflow.Now(ctx)
	return start, workflow.Sleep(ctx, time.Hour)
}

// After Advance(2h), a workflow started later starts 2h ahead and its
// hour-long sleep is due an hour after that: it waits for the next Advance.
func TestWorkflowStartedAfterAdvanceUsesTheTestClock(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "nap", nap)
	env.Run()
	before := time.Now()
	env.Advance(2 * time.Hour)
	env.Start("nap", "n-1", 0)
	d := env.WaitFor("n-1", func(d *orchestrator.Description) bool { return len(d.Timers) == 1 || d.Status != "running" })
	if len(d.Timers) != 1 {
		t.Fatalf("status %s, timers %+v: the sleep fired before its hour passed on the test clock", d.Status, d.Timers)
	}
	if due, want := d.Timers[0].Due, before.Add(3*time.Hour); due.Before(want) {
		t.Fatalf("sleep due %v, want at least %v (start + 2h advanced + 1h)", due, want)
	}
	env.Advance(time.Hour)
	env.Wait("n-1")
	var start time.Time
	if err := env.Output("n-1", &start); err != nil {
		t.Fatal(err)
	}
	if start.Before(before.Add(2 * time.Hour)) {
		t.Fatalf("workflow.Now at start %v, want the advanced clock (after %v)", start, before.Add(2*time.Hour))
	}
}

// fatalRecorder keeps the message of a Fatalf instead of failing the test.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func TestWaitForReportsTheLastStateSeen(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	env := workflowtest.New(rec)
	workflow.Register(env.Registry(), "nap", nap)
	env.Run()
	env.Start("nap", "n-2", 0)
	env.WaitFor("n-2", func(d *orchestrator.Description) bool { return len(d.Timers) == 1 })
	env.SetWaitTimeout(300 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		env.WaitFor("n-2", func(*orchestrator.Description) bool { return false })
	}()
	<-done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !strings.Contains(rec.msg, "last state running") {
		t.Fatalf("timeout message %q, want the last state seen (running)", rec.msg)
	}
}
