package orchestrator_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// slowCounter's update handler waits for signal "go" before it adds, so a
// test can stop the orchestrator between the update's acceptance and its
// completion.
func slowCounter(ctx workflow.Context, _ struct{}) (int, error) {
	counter := 0
	err := workflow.SetUpdateHandler(ctx, "add", func(ctx workflow.Context, n int) (int, error) {
		workflow.ReceiveSignal(ctx, "go")
		counter += n
		return counter, nil
	}, nil)
	if err != nil {
		return 0, err
	}
	if err := workflow.SetQueryHandler(ctx, "counter", func(struct{}) (int, error) { return counter, nil }); err != nil {
		return 0, err
	}
	workflow.ReceiveSignal(ctx, "done")
	return counter, nil
}

// runOrchestrator runs an orchestrator on a connection of its own: a fresh
// process state against the same streams. stop ends it and waits; crash
// first closes its connection, so nothing it was doing is answered.
func runOrchestrator(t *testing.T, env *natstest.Env) (stop, crash func()) {
	t.Helper()
	nc, js := natstest.Connect(t, env.Server)
	reg := workflow.NewRegistry()
	workflow.Register(reg, "slow-counter", slowCounter)
	o, err := orchestrator.New(orchestrator.Config{NC: nc, JS: js, Registry: reg, AckWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	var once sync.Once
	end := func(crashed bool) {
		once.Do(func() {
			if crashed {
				nc.Close()
			}
			cancel()
			if err := <-done; err != nil && !crashed {
				t.Errorf("orchestrator: %v", err)
			}
			nc.Close()
		})
	}
	t.Cleanup(func() { end(false) })
	return func() { end(false) }, func() { end(true) }
}

func historyKinds(t *testing.T, env *natstest.Env, id string) map[schema.Kind]int {
	t.Helper()
	evs, err := streams.NewHistory(env.NC, env.JS).Read(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := map[schema.Kind]int{}
	for _, ev := range evs {
		if ev.Value != nil {
			n[ev.Value.Kind()]++
		}
	}
	return n
}

// An orchestrator stopped (or crashed: its connection gone, its caller
// unanswered) after it recorded an update and before the update's handler
// returned: the caller keeps asking, another orchestrator replays the
// history (the handler runs again from the recorded acceptance), and the
// caller gets the result of the one update, applied once.
func TestUpdateSurvivesOrchestratorRestartBetweenAcceptAndCompletion(t *testing.T) {
	defer orchestrator.SetUpdateWait(time.Second, time.Second)()
	for _, crashed := range []bool{false, true} {
		name := map[bool]string{false: "stopped", true: "crashed"}[crashed]
		t.Run(name, func(t *testing.T) { updateAcrossRestart(t, crashed) })
	}
}

func updateAcrossRestart(t *testing.T, crashed bool) {
	env := natstest.RunJetStream(t)
	stopFirst, crashFirst := runOrchestrator(t, env)
	if _, err := orchestrator.Start(context.Background(), env.JS, "slow-counter", "u-1", struct{}{}, "test"); err != nil {
		t.Fatal(err)
	}

	caller, _ := natstest.Connect(t, env.Server)
	type answer struct {
		out json.RawMessage
		err error
	}
	answered := make(chan answer, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		out, err := orchestrator.Update(ctx, caller, "u-1", "add", []byte("5"))
		answered <- answer{out, err}
	}()
	natstest.Eventually(t, 20*time.Second, func() bool {
		return historyKinds(t, env, "u-1")[schema.KindUpdateAccepted] == 1
	}, "update never recorded")
	if crashed {
		crashFirst()
	} else {
		stopFirst()
	}
	if k := historyKinds(t, env, "u-1"); k[schema.KindUpdateCompleted] != 0 {
		t.Fatalf("update completed before the restart: %v", k)
	}

	runOrchestrator(t, env)
	if _, err := env.JS.Publish(context.Background(), streams.SignalSubject("go", "u-1"), nil); err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-answered:
	case <-ctx.Done():
		t.Fatal("the caller got no answer after the restart")
	}
	if a.err != nil || string(a.out) != "5" {
		t.Fatalf("update answered %s, %v; want 5", a.out, a.err)
	}
	k := historyKinds(t, env, "u-1")
	if k[schema.KindUpdateAccepted] != 1 || k[schema.KindUpdateCompleted] != 1 {
		t.Fatalf("history: %v; want one update accepted and one completed", k)
	}
	qctx, qcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer qcancel()
	out, err := orchestrator.Query(qctx, caller, "u-1", "counter", nil)
	if err != nil || string(out) != "5" {
		t.Fatalf("counter %s, %v; want 5: the update applied once", out, err)
	}
}
