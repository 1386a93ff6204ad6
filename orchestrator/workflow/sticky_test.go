package workflow_test

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/schema"
)

var (
	stepAct = workflow.Activity{Service: "calc", Action: "step"}
	tickAct = workflow.Activity{Service: "calc", Action: "tick"}
	undoAct = workflow.Activity{Service: "calc", Action: "undo"}
)

// loopFlow exercises what a live workflow keeps between decisions: a
// background coroutine with timers, recorded values fed to steps,
// selectors over steps, signals and timers, timers and steps cancelled
// with their scope, a version marker and a saga's compensation.
func loopFlow(ctx workflow.Context, rounds int) (int, error) {
	v := workflow.GetVersion(ctx, "loop", workflow.DefaultVersion, 1)
	total := v
	workflow.Go(ctx, func(ctx workflow.Context) {
		for i := 0; i < 3; i++ {
			if workflow.Sleep(ctx, time.Minute) != nil {
				return
			}
			n, err := workflow.Execute[int](ctx, tickAct, i)
			if err == nil {
				total += n
			}
		}
	})
	saga := workflow.NewSaga(ctx)
	for i := 0; i < rounds; i++ {
		seed := workflow.SideEffect(ctx, func() int { return (i*37 + total) % 1000 })
		sc, cancel := workflow.WithCancel(ctx)
		f := workflow.ExecuteAsync[int](sc, stepAct, seed)
		timer := workflow.NewTimer(sc, 30*time.Second)
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(f, func() {
			if n, err := f.Get(ctx); err == nil {
				total += n
				saga.AddCompensation(undoAct, n)
			}
		})
		sel.AddSignal(ctx, "add", func(p workflow.Payload) {
			var n int
			_ = p.Decode(&n)
			total += n
		})
		sel.AddFuture(timer, func() { total++ })
		if err := sel.Select(ctx); err != nil {
			cancel()
			return total, saga.Compensate(err)
		}
		cancel()
		if p, ok := workflow.TryReceiveSignal(ctx, "stop"); ok && !p.Empty() {
			return total, saga.Compensate(errors.New("stopped"))
		}
	}
	return total, nil
}

func loopFn(t testing.TB) workflow.Func {
	reg := workflow.NewRegistry()
	workflow.Register(reg, "loop", loopFlow)
	fn, _ := reg.Lookup("loop")
	return fn
}

// simulate writes a history of loopFlow as an orchestrator would, deciding
// with full replays: after each decision, one to three events that wake
// the next (results in any order, duplicates, fires, signals, operator
// requests), and now and then an event that lands between a decision's
// read and its append. It returns the history and the points decided at.
func simulate(t testing.TB, fn workflow.Func, rng *rand.Rand, maxEvents int) ([]workflow.Event, []int) {
	raw := func(v any) schema.Raw {
		r, err := schema.EncodeRaw(v)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	id := "w-" + strconv.Itoa(rng.IntN(1e6))
	t0 := time.Unix(1_700_000_000, 0)
	seq := uint64(1)
	hist := []workflow.Event{{Seq: seq, Time: t0, Value: &schema.WorkflowStarted{WorkflowID: id, Type: "loop", Input: raw(2 + rng.IntN(6))}}}
	add := func(v schema.Kinded) {
		seq += 1 + uint64(rng.IntN(3)) // other workflows share the stream
		hist = append(hist, workflow.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * 7 * time.Second), Value: v})
	}
	pending := map[int]*schema.Command{}
	timers := map[int]*schema.TimerStarted{}
	var results []*schema.Result
	var cuts []int
	for len(hist) < maxEvents {
		out := workflow.Replay(fn, id, hist, nil)
		cuts = append(cuts, len(hist))
		if out.Blocked != nil {
			t.Fatalf("simulated history blocked: %s", out.Blocked.Reason)
		}
		if len(out.Decisions) > 0 && rng.IntN(5) == 0 {
			add(&schema.Signal{Name: "add", Payload: raw(rng.IntN(10))})
		}
		for _, d := range out.Decisions {
			switch v := d.(type) {
			case *schema.Command:
				v.IdempotencyKey = id + "." + strconv.Itoa(v.ID)
				v.ReplyTo = "wf." + id + ".res." + strconv.Itoa(v.ID)
				pending[v.ID] = v
			case *schema.TimerStarted:
				timers[v.ID] = v
			case *schema.TimerCancelled:
				delete(timers, v.TimerID)
			}
			add(d)
		}
		if out.Finished != nil {
			add(out.Finished)
			break
		}
		for n := 1 + rng.IntN(3); n > 0; n-- {
			switch k := rng.IntN(10); {
			case k < 4 && len(pending) > 0:
				c := pickCommand(rng, pending)
				delete(pending, c.ID)
				res := &schema.Result{CommandID: c.ID, Service: c.Service, Action: c.Action, Attempts: 1, Output: raw(rng.IntN(100))}
				if rng.IntN(6) == 0 {
					res.Output, res.Error = nil, &schema.Error{Kind: "declined", Message: "no"}
				}
				results = append(results, res)
				add(res)
			case k < 6 && len(timers) > 0:
				for tid, ts := range timers {
					delete(timers, tid)
					add(&schema.TimerFired{TimerID: tid, Due: ts.Due})
					break
				}
			case k == 6 && len(results) > 0:
				add(results[rng.IntN(len(results))]) // a duplicate delivery
			case k == 7 && rng.IntN(8) == 0:
				add(&schema.Signal{Name: "stop", Payload: raw(true)})
			case k == 8 && rng.IntN(10) == 0:
				add(&schema.OperatorRequest{Verb: schema.VerbCancel, Reason: "test"})
			default:
				add(&schema.Signal{Name: "add", Payload: raw(rng.IntN(10))})
			}
		}
	}
	return hist, cuts
}

func pickCommand(rng *rand.Rand, m map[int]*schema.Command) *schema.Command {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return m[ids[rng.IntN(len(ids))]]
}

// Randomized histories — results out of order, duplicates, timers, signals
// before and between decisions, cancellations — decide the same kept live
// as replayed in full, at the points an orchestrator decides and after
// every single event.
func TestKeptLiveDecidesAsAFullReplay(t *testing.T) {
	fn := loopFn(t)
	var hits, decisions int
	for s := uint64(1); s <= 150; s++ {
		rng := rand.New(rand.NewPCG(s, 42))
		hist, cuts := simulate(t, fn, rng, 80)
		id := hist[0].Value.(*schema.WorkflowStarted).WorkflowID
		rep, err := workflowtest.CheckSticky(fn, id, hist, cuts)
		if err != nil {
			t.Fatalf("seed %d, at the decision points: %v", s, err)
		}
		hits += rep.Hits
		decisions += rep.Decisions
		// After every event, a cut falls among a decision's own messages
		// too: the live workflow refuses there, and a replay decides.
		if _, err := workflowtest.CheckSticky(fn, id, hist, nil); err != nil {
			t.Fatalf("seed %d, after every event: %v", s, err)
		}
	}
	// At the decision points, only the first decision of each history
	// needs a full replay.
	if hits != decisions-150 {
		t.Fatalf("%d of %d decisions taken live: want all but the 150 first", hits, decisions)
	}
}

// A live workflow refuses what a full replay would decide differently
// from its own state: a recorded value other than the one it drew, its
// decision missing from the events, an event it has already seen.
func TestLiveRefusesWhatItCannotConfirm(t *testing.T) {
	fn := loopFn(t)
	rng := rand.New(rand.NewPCG(7, 7))
	hist, cuts := simulate(t, fn, rng, 40)
	// The first decision: the version marker, a side effect, a step, a
	// timer, the background timer.
	out, live := workflow.Start(fn, "w", hist[:1], nil)
	if live == nil || len(out.Decisions) < 3 {
		t.Fatalf("start: %+v, live %v", out, live)
	}
	defer live.Close()
	// The history's side effect holds another value than this run drew
	// (another orchestrator's decision won the same position).
	other := slices.Clone(hist)
	for i, ev := range other {
		if m, ok := ev.Value.(*schema.Marker); ok && m.Name == "side_effect" {
			changed := *m
			changed.Value, _ = schema.EncodeRaw(-1)
			other[i].Value = &changed
			break
		}
	}
	if _, ok := live.Advance(other[1:cuts[1]]); ok {
		t.Fatal("advanced over a recorded side effect that differs from the live value")
	}
	if !live.Closed() {
		t.Fatal("a refused live workflow was not released")
	}

	_, live2 := workflow.Start(fn, "w", hist[:1], nil)
	defer live2.Close()
	if _, ok := live2.Advance(nil); ok {
		t.Fatal("advanced without its own decisions recorded")
	}
	_, live3 := workflow.Start(fn, "w", hist[:1], nil)
	defer live3.Close()
	if _, ok := live3.Advance(hist[:2]); ok {
		t.Fatal("advanced over an event it had already seen")
	}
}

// Closing live workflows releases their goroutines: none is left once
// every live workflow is closed.
func TestClosedLiveWorkflowsLeaveNoGoroutine(t *testing.T) {
	fn := loopFn(t)
	raw, _ := schema.EncodeRaw(5)
	start := []workflow.Event{{Seq: 1, Time: time.Unix(1_700_000_000, 0), Value: &schema.WorkflowStarted{WorkflowID: "w", Type: "loop", Input: raw}}}
	before := runtime.NumGoroutine()
	var lives []*workflow.Live
	for i := 0; i < 200; i++ {
		_, l := workflow.Start(fn, "w", start, nil)
		if l == nil {
			t.Fatal("no live workflow")
		}
		lives = append(lives, l)
	}
	if n := runtime.NumGoroutine(); n < before+390 {
		t.Fatalf("%d goroutines with 200 live workflows of 2 coroutines, %d before", n, before)
	}
	for _, l := range lives {
		l.Close()
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "goroutines left after closing every live workflow")
}

// sideValue loses its unexported field in its encoding.
type sideValue struct {
	A int
	b int
}

// The first run of a side effect goes on with the value as recorded, as
// every replay does: a value that does not survive its encoding is not
// what the first run saw and a replay (or a kept live workflow) did not.
func TestSideEffectFirstRunSeesTheRecordedValue(t *testing.T) {
	reg := workflow.NewRegistry()
	workflow.Register(reg, "side", func(ctx workflow.Context, _ struct{}) (int, error) {
		v := workflow.SideEffect(ctx, func() sideValue { return sideValue{A: 1, b: 2} })
		return v.A*10 + v.b, nil
	})
	fn, _ := reg.Lookup("side")
	raw, _ := schema.EncodeRaw(struct{}{})
	hist := []workflow.Event{{Seq: 1, Time: time.Unix(1_700_000_000, 0), Value: &schema.WorkflowStarted{WorkflowID: "s", Type: "side", Input: raw}}}
	first := workflow.Replay(fn, "s", hist, nil)
	if first.Finished == nil || len(first.Decisions) != 1 {
		t.Fatalf("first run: %+v", first)
	}
	hist = append(hist, workflow.Event{Seq: 2, Time: hist[0].Time, Value: first.Decisions[0]})
	again := workflow.Replay(fn, "s", hist, nil)
	first.Decisions = nil
	if err := workflow.CompareOutcomes(first, again); err != nil {
		t.Fatalf("first run against its replay: %v", err)
	}
}
