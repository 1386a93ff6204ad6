package orchestrator

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/streams"
)

// gate holds the replays of a workflow while it is shut.
type gate struct {
	shut    atomic.Bool
	holding atomic.Bool // a replay is waiting at the gate
	open    chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

// pass is called by the workflow function on every replay.
func (g *gate) pass() {
	if g.shut.Load() {
		g.holding.Store(true)
		<-g.open
	}
}

func (g *gate) release() {
	g.shut.Store(false)
	g.once.Do(func() { close(g.open) })
}

// runOrchestrator runs an orchestrator with reg and the given number of
// decision loops until the test ends; gates are released before it stops.
func runOrchestrator(t *testing.T, env *natstest.Env, reg *workflow.Registry, workers int, gates ...*gate) *Orchestrator {
	t.Helper()
	return runOrchestratorWith(t, Config{NC: env.NC, JS: env.JS, Registry: reg, Workers: workers}, gates...)
}

// runOrchestratorWith is runOrchestrator with a whole configuration.
func runOrchestratorWith(t *testing.T, cfg Config, gates ...*gate) *Orchestrator {
	t.Helper()
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { // runs first: a held replay would keep Run from returning
		for _, g := range gates {
			g.release()
		}
	})
	return o
}

func finished(t *testing.T, o *Orchestrator, id string) bool {
	t.Helper()
	ev, err := o.hist.Last(context.Background(), streams.DoneFilterOf(id))
	return err == nil && ev != nil
}

// sameLoopOnMain reports whether the fixed shards this scheduler replaced
// (hash of the ID modulo the loops) put a and b on the same loop.
func sameLoopOnMain(a, b string, loops int) bool {
	h := func(s string) uint32 { f := fnv.New32a(); f.Write([]byte(s)); return f.Sum32() % uint32(loops) }
	return h(a) == h(b)
}

// A workflow whose decision does not end holds up no other workflow, not
// even those the former fixed shards put on its loop (before, they waited
// behind it for as long as it took; with 10,000 signals to one workflow,
// minutes).
func TestBusyWorkflowDoesNotHoldUpOthers(t *testing.T) {
	env := natstest.RunJetStream(t)
	slow := newGate()
	slow.shut.Store(true)
	reg := workflow.NewRegistry()
	workflow.Register(reg, "slow", func(ctx workflow.Context, in string) (string, error) { slow.pass(); return in, nil })
	workflow.Register(reg, "quick", func(ctx workflow.Context, in string) (string, error) { return in, nil })
	const loops = 2
	o := runOrchestrator(t, env, reg, loops, slow)
	ctx := context.Background()

	if _, err := Start(ctx, env.JS, "slow", "slow-1", "x", "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, slow.holding.Load, "the slow workflow's decision did not start")

	var quick []string
	for i := 0; len(quick) < 3; i++ {
		id := "quick-" + strconv.Itoa(i)
		if sameLoopOnMain(id, "slow-1", loops) {
			quick = append(quick, id)
		}
	}
	for _, id := range quick {
		if _, err := Start(ctx, env.JS, "quick", id, "x", "test"); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range quick {
		natstest.Eventually(t, 30*time.Second, func() bool { return finished(t, o, id) },
			"%s did not finish while slow-1's decision was held", id)
	}
	if finished(t, o, "slow-1") {
		t.Fatal("slow-1 finished while its decision was held")
	}
	slow.release()
	natstest.Eventually(t, 30*time.Second, func() bool { return finished(t, o, "slow-1") }, "slow-1 did not finish once released")
}

// Events that wait for a workflow while it is being decided are decided
// together, in one replay, not one replay each; batches whose events the
// last replay already read are acked without one.
func TestWaitingEventsOfOneWorkflowDecideInOneReplay(t *testing.T) {
	env := natstest.RunJetStream(t)
	g := newGate()
	var replays atomic.Int64
	reg := workflow.NewRegistry()
	workflow.Register(reg, "waiter", func(ctx workflow.Context, in string) (string, error) {
		replays.Add(1)
		g.pass()
		workflow.ReceiveSignal(ctx, "stop")
		return in, nil
	})
	// The gate holds a decision while a hundred signals are routed and
	// recorded: on a loaded machine that may take longer than the default
	// AckWait, and redelivered events would blur what is counted.
	// Replays are counted by calls of the workflow function: sticky
	// execution is off, so every decision replays.
	o := runOrchestratorWith(t, Config{NC: env.NC, JS: env.JS, Registry: reg, Workers: 4, AckWait: 5 * time.Minute, StickyWorkflows: -1}, g)
	ctx := context.Background()
	var cons jetstream.Consumer
	natstest.Eventually(t, 30*time.Second, func() bool {
		c, err := env.JS.Consumer(ctx, streams.HistoryStream, streams.OrchestratorConsumer)
		cons = c
		return err == nil
	}, "the orchestrator did not create its consumer")
	var last string // the consumer's state at the last look, for a failure
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("orchestrator consumer at the last look: " + last)
		}
	})
	// settled reports whether every event is delivered and pending of them
	// are not acked yet.
	settled := func(pending int) func() bool {
		return func() bool {
			info, err := cons.Info(ctx)
			if err != nil {
				last = err.Error()
				return false
			}
			last = fmt.Sprintf("%d undelivered, %d unacked, %d redelivered", info.NumPending, info.NumAckPending, info.NumRedelivered)
			return info.NumPending == 0 && info.NumAckPending == pending
		}
	}

	if _, err := Start(ctx, env.JS, "waiter", "w-1", "x", "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, settled(0), "the start was not decided")

	// The first signal's decision waits at the gate while the others come in.
	const signals = 100
	g.shut.Store(true)
	publish := func(name string) {
		t.Helper()
		if _, err := env.JS.Publish(ctx, streams.SignalSubject(name, "w-1"), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	publish("noise")
	natstest.Eventually(t, 30*time.Second, g.holding.Load, "the first signal's decision did not start")
	before := replays.Load()
	for range signals - 1 {
		publish("noise")
	}
	natstest.Eventually(t, time.Minute, settled(signals), "the signals were not all recorded and delivered")
	g.release()
	natstest.Eventually(t, 30*time.Second, settled(0), "the signals were not all decided")
	n := replays.Load() - before
	t.Logf("%d signals, %d replays", signals, n)
	if n > 5 {
		t.Errorf("%d signals waiting for one workflow took %d replays; want a handful", signals, n)
	}

	publish("stop")
	natstest.Eventually(t, 30*time.Second, func() bool { return finished(t, o, "w-1") }, "w-1 did not finish on its stop signal")
}
