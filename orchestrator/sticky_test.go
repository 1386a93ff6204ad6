package orchestrator_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// tally takes signal "add" rounds times, recording a side effect each
// round, and returns the sum; helpers coroutines wait beside it until it
// ends.
func tally(ctx workflow.Context, in struct{ Rounds, Helpers int }) (int, error) {
	total := 0
	done := false
	for i := 0; i < in.Helpers; i++ {
		workflow.Go(ctx, func(ctx workflow.Context) { workflow.Await(ctx, func() bool { return done }) })
	}
	for i := 0; i < in.Rounds; i++ {
		var n int
		if err := workflow.ReceiveSignal(ctx, "add").Decode(&n); err != nil {
			return 0, err
		}
		total += workflow.SideEffect(ctx, func() int { return 2 * n })
	}
	done = true
	return total, nil
}

// sender sends signal "add" with 1 to workflow target and returns the
// error its future failed with, "" when sent.
func sender(ctx workflow.Context, target string) (string, error) {
	if _, err := workflow.SignalExternal(ctx, target, "add", 1).Get(ctx); err != nil {
		return err.Error(), nil
	}
	return "", nil
}

// runSticky runs an orchestrator of tally (and sender) workflows with
// metrics until the test ends or stop is called.
func runSticky(t testing.TB, env *natstest.Env, cfg orchestrator.Config) (m *metrics.Metrics, stop func()) {
	t.Helper()
	reg := workflow.NewRegistry()
	workflow.Register(reg, "tally", tally)
	workflow.Register(reg, "sender", sender)
	m = metrics.New()
	cfg.NC, cfg.JS, cfg.Registry, cfg.Metrics, cfg.AckWait = env.NC, env.JS, reg, m, 5*time.Second
	o, err := orchestrator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("orchestrator: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return m, stop
}

// metric returns the value of the unlabelled counter or gauge name.
func metric(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	return labelled(t, m, name, "", "")
}

// labelled returns the value of counter or gauge name with label
// key=value; with key "", of its first (unlabelled) series.
func labelled(t *testing.T, m *metrics.Metrics, name, key, value string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			match := key == ""
			for _, l := range mt.GetLabel() {
				match = match || l.GetName() == key && l.GetValue() == value
			}
			if !match {
				continue
			}
			if c := mt.GetCounter(); c != nil {
				return c.GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s{%s=%q}", name, key, value)
	return 0
}

func markers(t *testing.T, env *natstest.Env, id string) int {
	t.Helper()
	return historyKinds(t, env, id)[schema.KindMarker]
}

// A workflow woken by one signal after another is decided by the workflow
// kept live since its last decision: only its first decision replays, the
// others feed it the new signal alone, and each decides what a full
// replay decides (VerifySticky checks every one).
func TestStickyDecisionsFeedTheKeptWorkflowOnlyWhatIsNew(t *testing.T) {
	env := natstest.RunJetStream(t)
	m, _ := runSticky(t, env, orchestrator.Config{VerifySticky: true})
	const rounds = 12
	if _, err := orchestrator.Start(context.Background(), env.JS, "tally", "t-1", struct{ Rounds, Helpers int }{rounds, 1}, "test"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= rounds; i++ {
		if _, err := env.JS.Publish(context.Background(), streams.SignalSubject("add", "t-1"), []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, 20*time.Second, func() bool { return markers(t, env, "t-1") == i }, "signal %d never decided", i)
	}
	d := waitFinished(t, env, "t-1")
	var total int
	if err := schema.DecodeRaw(d.Output, &total); err != nil || total != rounds*(rounds+1) {
		t.Fatalf("output %d (%v), want %d", total, err, rounds*(rounds+1))
	}
	hits, misses := metric(t, m, "jetflow_sticky_hits_total"), metric(t, m, "jetflow_sticky_misses_total")
	if hits != rounds || misses != 1 {
		t.Fatalf("%v sticky hits and %v misses; want %d hits (one per signal) and 1 miss (the start)", hits, misses, rounds)
	}
	if n := metric(t, m, "jetflow_sticky_mismatches_total"); n != 0 {
		t.Fatalf("%v sticky decisions differ from a full replay", n)
	}
}

// waitFinished waits for workflow id's end and returns it.
func waitFinished(t *testing.T, env *natstest.Env, id string) *schema.WorkflowFinished {
	t.Helper()
	var end *schema.WorkflowFinished
	natstest.Eventually(t, 20*time.Second, func() bool {
		evs, err := streams.NewHistory(env.NC, env.JS).Read(context.Background(), id, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if f, ok := ev.Value.(*schema.WorkflowFinished); ok {
				end = f
			}
		}
		return end != nil
	}, "%s never finished", id)
	if end.Status != schema.StatusCompleted {
		t.Fatalf("%s ended %s: %s", id, end.Status, end.Error)
	}
	return end
}

// Live workflows beyond StickyWorkflows are released, their goroutines
// with them, and the ones released decide again by a full replay; an
// orchestrator that stops releases every one it kept.
func TestStickyWorkflowsAreBoundedAndReleased(t *testing.T) {
	env := natstest.RunJetStream(t)
	const workflows, helpers, kept = 8, 50, 2
	m, stop := runSticky(t, env, orchestrator.Config{StickyWorkflows: kept})
	for i := range workflows {
		id := "b-" + strconv.Itoa(i)
		if _, err := orchestrator.Start(context.Background(), env.JS, "tally", id, struct{ Rounds, Helpers int }{2, helpers}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS.Publish(context.Background(), streams.SignalSubject("add", id), []byte("1")); err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, 20*time.Second, func() bool { return markers(t, env, id) == 1 }, "%s never decided", id)
	}
	// The last decision's marker is stored before its workflow is kept
	// (the cache takes a workflow once its append is acknowledged), so
	// the count is polled, never read once.
	natstest.Eventually(t, 10*time.Second, func() bool { return metric(t, m, "jetflow_sticky_workflows") == kept },
		"%v workflows kept live, want %d", metric(t, m, "jetflow_sticky_workflows"), kept)
	// Every workflow parks 1+helpers coroutines: the kept ones hold
	// theirs, the released ones none.
	natstest.Eventually(t, 10*time.Second, func() bool { return coroutines() == kept*(helpers+1) },
		"%d workflow coroutines with %d workflows waiting, %d kept live: want %d", coroutines(), workflows, kept, kept*(helpers+1))
	for i := range workflows {
		id := "b-" + strconv.Itoa(i)
		if _, err := env.JS.Publish(context.Background(), streams.SignalSubject("add", id), []byte("2")); err != nil {
			t.Fatal(err)
		}
		waitFinished(t, env, id)
	}
	if hits, misses := metric(t, m, "jetflow_sticky_hits_total"), metric(t, m, "jetflow_sticky_misses_total"); misses < workflows+(workflows-kept) {
		t.Fatalf("%v hits, %v misses: want a replay for each start and for each workflow released", hits, misses)
	}
	// A finished workflow leaves nothing live.
	natstest.Eventually(t, 10*time.Second, func() bool { return metric(t, m, "jetflow_sticky_workflows") == 0 && coroutines() == 0 },
		"%v workflows kept live, %d coroutines after every workflow finished", metric(t, m, "jetflow_sticky_workflows"), coroutines())
	for i := range workflows {
		id := "c-" + strconv.Itoa(i)
		if _, err := orchestrator.Start(context.Background(), env.JS, "tally", id, struct{ Rounds, Helpers int }{1, helpers}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 20*time.Second, func() bool { return coroutines() == kept*(helpers+1) }, "the new workflows never decided")
	stop()
	if n := coroutines(); n != 0 {
		t.Fatalf("%d workflow coroutines left after the orchestrator stopped", n)
	}
}

// coroutines counts the goroutines that run workflow code.
func coroutines() int {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "orchestrator/workflow.(*scheduler).spawn.func")
		}
		buf = make([]byte, 2*len(buf))
	}
}
