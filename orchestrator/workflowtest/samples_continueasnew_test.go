package workflowtest_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
)

// ---- continue-as-new ----
//
// Temporal's continue-as-new sample: a workflow that would loop for ever
// ends its run every so many iterations and goes on in a new one with its
// state as input, so that its history and the cost of replaying it stay
// bounded.

// loopState is the state a run passes to the next.
type loopState struct {
	Done   int `msgpack:"done"`
	Target int `msgpack:"target"`
	Every  int `msgpack:"every"`
}

// countingLoop counts to Target, one recorded iteration (a side effect)
// at a time, and continues as new after Every iterations of a run.
func countingLoop(ctx workflow.Context, s loopState) (int, error) {
	for i := 0; i < s.Every && s.Done < s.Target; i++ {
		s.Done = workflow.SideEffect(ctx, func() int { return s.Done + 1 })
	}
	if s.Done < s.Target {
		return 0, workflow.ContinueAsNew(ctx, s)
	}
	return s.Done, nil
}

func TestSampleContinueAsNew(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "counting-loop", countingLoop)
	env.Run()
	const target, every = 10000, 250
	env.Start("counting-loop", "loop-1", loopState{Target: target, Every: every})
	env.SetWaitTimeout(2 * time.Minute)
	d := env.Wait("loop-1")
	if d.Status != schema.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Error)
	}
	var n int
	if err := env.Output("loop-1", &n); err != nil {
		t.Fatal(err)
	}
	if n != target {
		t.Fatalf("count %d, want %d", n, target)
	}
	const runs = target / every
	if d.Run != runs || len(d.Runs) != runs {
		t.Fatalf("described run %d with %d runs listed, want run %d of %d", d.Run, len(d.Runs), runs, runs)
	}
	for _, r := range d.Runs[:runs-1] {
		if r.Status != schema.StatusContinuedAsNew {
			t.Errorf("run %d: status %s, want %s", r.Run, r.Status, schema.StatusContinuedAsNew)
		}
	}
	// The history of every run is bounded by the iterations of one run,
	// however long the loop ran: its start, one marker per iteration, its
	// end.
	for _, run := range []int{1, 2, runs / 2, runs} {
		rd, err := env.DescribeRun("loop-1", run)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(rd.History); got != every+2 {
			t.Errorf("run %d: %d history events, want %d (start, %d iterations, end)", run, got, every+2, every)
		}
		if rd.Run != run || rd.ID != "loop-1" {
			t.Errorf("run %d described as run %d of %q", run, rd.Run, rd.ID)
		}
	}
	// A closed run stays inspectable and names the run it continued in.
	first, err := env.DescribeRun("loop-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	last := first.History[len(first.History)-1]
	if first.Status != schema.StatusContinuedAsNew || last.Subject != "wf.loop-1.done."+string(schema.StatusContinuedAsNew) {
		t.Errorf("run 1: status %s, last event on %s", first.Status, last.Subject)
	}
}

// tick is the step a stepped loop runs at every iteration.
var tick = workflow.Activity{Service: "clock", Action: "tick"}

// steppedLoop runs one step per iteration, each a wake and a replay of
// the run's history, and continues as new after Every iterations (never,
// when Every is 0).
func steppedLoop(ctx workflow.Context, s loopState) (int, error) {
	for i := 0; (s.Every == 0 || i < s.Every) && s.Done < s.Target; i++ {
		n, err := workflow.Execute[int](ctx, tick, s.Done)
		if err != nil {
			return 0, err
		}
		s.Done = n
	}
	if s.Done < s.Target {
		return 0, workflow.ContinueAsNew(ctx, s)
	}
	return s.Done, nil
}

// TestContinueAsNewSignalsReachTheCurrentRun sends signals to a workflow
// by its ID while it moves from run to run: each is received by the run
// current when it was recorded, and the ones sent after the last
// continue-as-new reach the last run.
func TestContinueAsNewSignalsReachTheCurrentRun(t *testing.T) {
	env := workflowtest.New(t)
	// Each run waits for one signal, adds it, and continues; the third
	// run returns the total.
	workflow.Register(env.Registry(), "adder", func(ctx workflow.Context, total int) (int, error) {
		v, err := workflow.WaitSignal[int](ctx, "add")
		if err != nil {
			return 0, err
		}
		total += v
		if workflow.RunNumber(ctx) < 3 {
			return 0, workflow.ContinueAsNew(ctx, total)
		}
		return total, nil
	})
	env.Run()
	env.Start("adder", "add-1", 0)
	for run, v := range []int{1, 10, 100} {
		env.Signal("add-1", "add", v)
		if run < 2 {
			env.WaitFor("add-1", func(d *orchestrator.Description) bool { return d.Run == run+2 })
		}
	}
	d := env.Wait("add-1")
	var total int
	if err := env.Output("add-1", &total); err != nil {
		t.Fatal(err)
	}
	if d.Status != schema.StatusCompleted || total != 111 || d.Run != 3 {
		t.Fatalf("status %s, total %d, run %d: want completed, 111, run 3", d.Status, total, d.Run)
	}
}

// BenchmarkContinueAsNew runs a loop of one step per iteration on a real
// embedded server and reports the cost of a decision (ns/decision): with
// continue-as-new every 100 iterations it stays flat however many
// iterations ran, without it every decision replays the whole history so
// far and the cost grows with the iterations.
//
//	go test -run '^$' -bench BenchmarkContinueAsNew -benchtime 1x ./orchestrator/workflowtest/
func BenchmarkContinueAsNew(b *testing.B) {
	for _, c := range []struct {
		name  string
		iters int
		every int
	}{
		{"never/500", 500, 0},
		{"never/1000", 1000, 0},
		{"every-100/500", 500, 100},
		{"every-100/1000", 1000, 100},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				env := workflowtest.New(b)
				workflow.Register(env.Registry(), "stepped", steppedLoop)
				env.Stub(tick, func(_ context.Context, cmd *participants.Command) (any, error) {
					var n int
					err := cmd.Decode(&n)
					return n + 1, err
				})
				env.Run()
				env.SetWaitTimeout(10 * time.Minute)
				id := "bench-" + strconv.Itoa(i)
				begin := time.Now()
				env.Start("stepped", id, loopState{Target: c.iters, Every: c.every})
				d := env.Wait(id)
				if d.Status != schema.StatusCompleted {
					b.Fatalf("status %s: %s", d.Status, d.Error)
				}
				b.ReportMetric(float64(time.Since(begin).Nanoseconds())/float64(c.iters), "ns/decision")
			}
		})
	}
}
