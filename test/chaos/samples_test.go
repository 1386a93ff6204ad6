package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// The fault suite's SDK workflows: continue-as-new, updates and queries,
// run by an orchestrator process of their own (the test binary as
// roleSamplesOrchestrator: the jetflow binary registers the reference
// order workflow only) and killed at the fault points of those features.

// roleSamplesOrchestrator is an orchestrator that registers the reference
// workflow and the workflows below.
const roleSamplesOrchestrator = "samples-orchestrator"

// chaosLoop is loop's input: count to Target, continuing as new every
// Every iterations.
type chaosLoop struct {
	Done   int `msgpack:"done"`
	Target int `msgpack:"target"`
	Every  int `msgpack:"every"`
}

// loop counts one recorded iteration (a side effect) at a time and
// continues as new after Every iterations of a run.
func loop(ctx workflow.Context, s chaosLoop) (int, error) {
	for i := 0; i < s.Every && s.Done < s.Target; i++ {
		s.Done = workflow.SideEffect(ctx, func() int { return s.Done + 1 })
	}
	if s.Done < s.Target {
		return 0, workflow.ContinueAsNew(ctx, s)
	}
	return s.Done, nil
}

// account keeps a balance: "deposit" updates add to it, "balance" queries
// read it, a "close" signal ends it.
func account(ctx workflow.Context, balance int) (int, error) {
	if err := workflow.SetUpdateHandler(ctx, "deposit", func(_ workflow.Context, n int) (int, error) {
		balance += n
		return balance, nil
	}, func(n int) error {
		if n <= 0 {
			return fmt.Errorf("deposit %d: want a positive amount", n)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	if err := workflow.SetQueryHandler(ctx, "balance", func(struct{}) (int, error) { return balance, nil }); err != nil {
		return 0, err
	}
	if _, err := workflow.WaitSignal[struct{}](ctx, "close"); err != nil {
		return 0, err
	}
	return balance, nil
}

func runSamplesOrchestrator() error {
	if err := failpoint.Enable(os.Getenv("JETFLOW_FAILPOINTS")); err != nil {
		return err
	}
	ctx, nc, js, done, err := chaosConnect("chaos samples orchestrator")
	if err != nil {
		return err
	}
	defer done()
	replicas, _ := strconv.Atoi(os.Getenv("JETFLOW_CHAOS_REPLICAS"))
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = streams.Ensure(ectx, js, streams.Topology{Replicas: replicas})
	cancel()
	if err != nil {
		return err
	}
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	workflow.Register(reg, "chaos.loop", loop)
	workflow.Register(reg, "chaos.account", account)
	o, err := orchestrator.New(orchestrator.Config{
		NC: nc, JS: js, Registry: reg, Intake: fulfillment.Intake(),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		AckWait: ackWait,
	})
	if err != nil {
		return err
	}
	return o.Run(ctx)
}

// samplesOrchestrator starts the samples orchestrator helper; fp, if set,
// returns the JETFLOW_FAILPOINTS of its n-th start.
func (h *harness) samplesOrchestrator(name string, fp func(n int) string) *role {
	base := []string{
		roleEnv + "=" + roleSamplesOrchestrator,
		"JETFLOW_CHAOS_NATS=" + h.url(),
		"JETFLOW_CHAOS_REPLICAS=" + strconv.Itoa(h.replicas),
	}
	return h.selfOrchestrator(name, base, fp)
}

// TestKillMidContinueAsNew kills the orchestrator (exit 137) between a
// run's continued-as-new end and the next run's start, twice, while
// loops continue from run to run. Every loop must end with the right
// count in its last run, every run before it ended continued-as-new
// naming the next, and no run is started twice or skipped.
func TestKillMidContinueAsNew(t *testing.T) {
	seed := seedFor(t, 11)
	h := newHarness(t, seed, serverOptions{})
	const loops, target, every = 20, 40, 5
	const runs = target / every
	k1, k2 := 5+h.rng.Intn(40), 1+h.rng.Intn(20)
	h.logf("exit at hit %d, then at hit %d of the restarted process", k1, k2)
	o := h.samplesOrchestrator("o1", firstStarts(fmt.Sprintf("orchestrator.continue-as-new=exit@%d", k1), fmt.Sprintf("orchestrator.continue-as-new=exit@%d", k2)))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := range loops {
		if _, err := orchestrator.Start(ctx, h.js, "chaos.loop", "loop-"+strconv.Itoa(i), chaosLoop{Target: target, Every: every}, "chaos"); err != nil {
			t.Fatal(err)
		}
	}
	h.eventually(90*time.Second, "the orchestrator did not die twice mid continue-as-new", func() bool { return failpointExits(o) >= 2 })
	h.fault("orchestrator exit between a run's end and the next run's start", "o1")
	h.fault("orchestrator exit between a run's end and the next run's start", "o1")
	hist := streams.NewHistory(h.nc, h.js)
	for i := range loops {
		id := "loop-" + strconv.Itoa(i)
		var d *orchestrator.Description
		h.eventually(settleBound, id+" did not complete", func() bool {
			var err error
			d, err = orchestrator.Describe(ctx, hist, id)
			return err == nil && d.Status == schema.StatusCompleted
		})
		// A process killed between a run's start and its pointer (in
		// another workflow's goroutine) leaves the pointer to the
		// redelivery of the wake that ended the run before, after its
		// AckWait: the listing may catch up after the last run ended.
		h.eventually(settleBound, id+": runs listed never reached the last run", func() bool {
			var err error
			d, err = orchestrator.Describe(ctx, hist, id)
			return err == nil && len(d.Runs) >= runs
		})
		if d.Run != runs || len(d.Runs) != runs {
			t.Errorf("%s: completed in run %d with %d runs listed; want run %d of %d", id, d.Run, len(d.Runs), runs, runs)
		}
		for run := 1; run <= runs; run++ {
			evs, err := hist.Read(ctx, streams.RunID(id, run), 0)
			if err != nil {
				t.Fatal(err)
			}
			var starts, ends int
			var end *schema.WorkflowFinished
			for _, ev := range evs {
				switch v := ev.Value.(type) {
				case *schema.WorkflowStarted:
					starts++
				case *schema.WorkflowFinished:
					ends, end = ends+1, v
				}
			}
			if starts != 1 || ends != 1 || len(evs) != every+2 {
				t.Errorf("%s run %d: %d starts, %d ends, %d events; want 1, 1, %d", id, run, starts, ends, len(evs), every+2)
				continue
			}
			if run < runs && (end.Status != schema.StatusContinuedAsNew || end.NextRun != run+1) {
				t.Errorf("%s run %d: ended %s naming run %d; want %s naming run %d", id, run, end.Status, end.NextRun, schema.StatusContinuedAsNew, run+1)
			}
			if run == runs {
				var n int
				if err := schema.DecodeRaw(end.Output, &n); err != nil || n != target {
					t.Errorf("%s: count %d (%v), want %d", id, n, err, target)
				}
			}
		}
		if evs, err := hist.Read(ctx, streams.RunID(id, runs+1), 0); err != nil || len(evs) != 0 {
			t.Errorf("%s: a run after the last: %d events (%v)", id, len(evs), err)
		}
	}
	if c := h.crashes(); len(c) > 0 {
		t.Errorf("processes crashed: %v", c)
	}
}

// TestKillMidUpdate kills the orchestrator right after it recorded an
// update's acceptance, before the handler's completion is recorded. The
// caller's Update asks again and gets one answer, the handler's result;
// the history holds the update once, and the balance the query reads
// shows the deposit once.
func TestKillMidUpdate(t *testing.T) {
	seed := seedFor(t, 12)
	h := newHarness(t, seed, serverOptions{})
	o1 := h.samplesOrchestrator("o1", firstStarts("orchestrator.update-accepted=exit"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := orchestrator.Start(ctx, h.js, "chaos.account", "acct-1", 10, "chaos"); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		out []byte
		err error
	}
	got := make(chan answer, 1)
	go func() {
		out, err := orchestrator.UpdateWithID(ctx, h.nc, "acct-1", "dep-1", "deposit", []byte("5"))
		got <- answer{out, err}
	}()
	h.eventually(60*time.Second, "the orchestrator did not die after accepting the update", func() bool { return failpointExits(o1) >= 1 })
	h.fault("orchestrator exit after an update's acceptance", "o1")
	h.samplesOrchestrator("o2", nil)
	var a answer
	select {
	case a = <-got:
	case <-ctx.Done():
		t.Fatal("the update was never answered")
	}
	if a.err != nil || string(a.out) != "15" {
		t.Fatalf("update answered %s, %v; want 15", a.out, a.err)
	}
	// The same update sent again is the same update: answered from the
	// history, not applied again.
	again, err := orchestrator.UpdateWithID(ctx, h.nc, "acct-1", "dep-1", "deposit", []byte("5"))
	if err != nil || string(again) != "15" {
		t.Fatalf("update sent again: %s, %v; want 15", again, err)
	}
	bal, err := orchestrator.Query(ctx, h.nc, "acct-1", "balance", nil)
	if err != nil || string(bal) != "15" {
		t.Fatalf("balance %s, %v; want 15 (the deposit applied once)", bal, err)
	}
	evs, err := streams.NewHistory(h.nc, h.js).Read(ctx, "acct-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var accepted, completed int
	for _, ev := range evs {
		switch ev.Value.(type) {
		case *schema.UpdateAccepted:
			accepted++
		case *schema.UpdateCompleted:
			completed++
		}
	}
	if accepted != 1 || completed != 1 {
		t.Fatalf("history holds %d acceptances and %d completions of the update; want 1 and 1", accepted, completed)
	}
}

// TestKillWhileQuerying kills the only orchestrator (exit 137) while it
// answers a query, after the replay and before the reply. The caller's
// Query gets the right answer from the orchestrator that answers next;
// with none left to answer, it gets a clear error, never a wrong answer.
func TestKillWhileQuerying(t *testing.T) {
	seed := seedFor(t, 13)
	h := newHarness(t, seed, serverOptions{})
	o1 := h.samplesOrchestrator("o1", firstStarts("", "orchestrator.query-answered=exit"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := orchestrator.Start(ctx, h.js, "chaos.account", "acct-2", 0, "chaos"); err != nil {
		t.Fatal(err)
	}
	if out, err := orchestrator.Update(ctx, h.nc, "acct-2", "deposit", []byte("7")); err != nil || string(out) != "7" {
		t.Fatalf("deposit: %s, %v", out, err)
	}
	// The second start of o1 dies at its first query.
	o1.kill()
	o1.start()
	bal, err := orchestrator.Query(ctx, h.nc, "acct-2", "balance", nil)
	if failpointExits(o1) != 1 {
		t.Fatalf("the orchestrator did not die answering the query (exits %v)", o1.exitCodes())
	}
	h.fault("orchestrator exit while answering a query", "o1")
	if err != nil || string(bal) != "7" {
		t.Fatalf("query answered %s, %v; want 7", bal, err)
	}
	// No orchestrator at all: a deadline, said as such.
	o1.close()
	short, scancel := context.WithTimeout(ctx, 3*time.Second)
	defer scancel()
	if out, err := orchestrator.Query(short, h.nc, "acct-2", "balance", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("query with no orchestrator: %s, %v; want a deadline error", out, err)
	}
}
