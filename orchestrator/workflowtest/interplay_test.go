package workflowtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Child workflows and continue-as-new together, as a Temporal user
// expects them: a child's runs are one child to its parent, a parent's
// continue-as-new closes its run for its children, a signal between
// workflows reaches the current run.

// adderChild adds its run number to total and continues as new until its
// third run, which returns the sum.
func adderChild(ctx workflow.Context, total int) (int, error) {
	total += workflow.RunNumber(ctx)
	if workflow.RunNumber(ctx) < 3 {
		return 0, workflow.ContinueAsNew(ctx, total)
	}
	return total, nil
}

// A child that continues as new: the parent's future resolves with the
// last run's result, once; every run of the child names the parent.
func TestChildContinuedAsNewResolvesWithTheLastRun(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "adder", adderChild)
	workflow.Register(env.Registry(), "parent", func(ctx workflow.Context, _ struct{}) (int, error) {
		return workflow.ExecuteChild[int](ctx, workflow.ChildOptions{Type: "adder", ID: "kid"}, 0)
	})
	env.Run()
	env.Start("parent", "p-1", struct{}{})
	p := env.Wait("p-1")
	if p.Status != schema.StatusCompleted {
		t.Fatalf("parent %s (%s): want completed with the child's last run's result", p.Status, p.Error)
	}
	var sum int
	if err := env.Output("p-1", &sum); err != nil || sum != 6 {
		t.Fatalf("parent returned %d, %v: want 6 (1+2+3, the child's third run)", sum, err)
	}
	if n := countEntries(p, string(schema.KindChildEnded)); n != 1 {
		t.Fatalf("%d child ends in the parent: want 1", n)
	}
	if len(p.Children) != 1 || p.Children[0].Status != schema.StatusCompleted {
		t.Fatalf("parent's children %+v: want kid completed", p.Children)
	}
	c := env.Wait("kid")
	if c.Status != schema.StatusCompleted || c.Run != 3 {
		t.Fatalf("child %s on run %d: want completed on run 3", c.Status, c.Run)
	}
	for run := 1; run <= 3; run++ {
		d, err := env.DescribeRun("kid", run)
		if err != nil {
			t.Fatal(err)
		}
		if d.Parent == nil || d.Parent.WorkflowID != "p-1" {
			t.Errorf("child run %d names parent %+v: want p-1", run, d.Parent)
		}
	}
}

// A parent's close policy reaches the run of its child that is current
// when the parent ends.
func TestParentCloseReachesTheChildsCurrentRun(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "waiter", func(ctx workflow.Context, _ struct{}) (string, error) {
		if workflow.RunNumber(ctx) < 2 {
			return "", workflow.ContinueAsNew(ctx, struct{}{})
		}
		return workflow.WaitSignal[string](ctx, "go")
	})
	workflow.Register(env.Registry(), "parent", func(ctx workflow.Context, _ struct{}) (string, error) {
		workflow.ExecuteChildAsync[string](ctx, workflow.ChildOptions{Type: "waiter", ID: "kid"}, struct{}{})
		return workflow.WaitSignal[string](ctx, "end")
	})
	env.Run()
	env.Start("parent", "p-1", struct{}{})
	env.WaitFor("kid", func(d *orchestrator.Description) bool { return d.Run == 2 && d.Status == schema.StatusRunning })
	env.Signal("p-1", "end", "left")
	if p := env.Wait("p-1"); p.Status != schema.StatusCompleted {
		t.Fatalf("parent %s (%s)", p.Status, p.Error)
	}
	if c := env.Wait("kid"); c.Status != schema.StatusTerminated || c.Run != 2 {
		t.Fatalf("child %s on run %d: want run 2 terminated by the parent's close", c.Status, c.Run)
	}
	env.WaitFor("p-1", func(d *orchestrator.Description) bool {
		return len(d.Children) == 1 && d.Children[0].Status == schema.StatusTerminated
	})
}

// A parent that continues as new closes its run: as in Temporal, each
// child of that run gets its parent-close policy (terminate by default);
// an abandoned child runs on, and its end, recorded in the closed run,
// changes nothing for the parent's next run.
func TestParentContinuedAsNewClosesItsChildren(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "waiter", func(ctx workflow.Context, _ struct{}) (string, error) {
		return workflow.WaitSignal[string](ctx, "go")
	})
	workflow.Register(env.Registry(), "parent", func(ctx workflow.Context, _ struct{}) (string, error) {
		if workflow.RunNumber(ctx) == 1 {
			workflow.ExecuteChildAsync[string](ctx, workflow.ChildOptions{Type: "waiter", ID: "kept"}, struct{}{})
			workflow.ExecuteChildAsync[string](ctx, workflow.ChildOptions{Type: "waiter", ID: "free",
				ParentClosePolicy: workflow.ParentCloseAbandon}, struct{}{})
			if _, err := workflow.WaitSignal[string](ctx, "next"); err != nil {
				return "", err
			}
			return "", workflow.ContinueAsNew(ctx, struct{}{})
		}
		return workflow.WaitSignal[string](ctx, "end")
	})
	env.Run()
	env.Start("parent", "p-1", struct{}{})
	for _, id := range []string{"kept", "free"} {
		env.WaitFor(id, func(d *orchestrator.Description) bool { return d.Status == schema.StatusRunning })
	}
	env.Signal("p-1", "next", "")
	env.WaitFor("p-1", func(d *orchestrator.Description) bool { return d.Run == 2 && d.Status == schema.StatusRunning })
	if c := env.Wait("kept"); c.Status != schema.StatusTerminated {
		t.Fatalf("child kept %s: want terminated when its parent's run continued as new", c.Status)
	}
	env.Signal("free", "go", "done")
	if c := env.Wait("free"); c.Status != schema.StatusCompleted {
		t.Fatalf("abandoned child %s (%s)", c.Status, c.Error)
	}
	// Both ends are recorded in run 1, which stays continued-as-new.
	env.WaitFor("p-1", func(d *orchestrator.Description) bool { return d.Run == 2 }) // current run still 2
	first, err := env.DescribeRun("p-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if first.Status != schema.StatusContinuedAsNew || countEntries(first, string(schema.KindChildEnded)) != 2 {
		t.Fatalf("run 1 %s with %d child ends: want continued-as-new with both ends", first.Status, countEntries(first, string(schema.KindChildEnded)))
	}
	env.Signal("p-1", "end", "over")
	p := env.Wait("p-1")
	var out string
	if err := env.Output("p-1", &out); err != nil || p.Status != schema.StatusCompleted || out != "over" || p.Run != 2 {
		t.Fatalf("parent %s on run %d returned %q, %v: want run 2 completed with \"over\"", p.Status, p.Run, out, err)
	}
}

// SignalExternal to a workflow that continued as new reaches its current
// run (the first run's end says continued-as-new, not ended).
func TestSignalExternalReachesTheCurrentRun(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "receiver", func(ctx workflow.Context, _ struct{}) (string, error) {
		if workflow.RunNumber(ctx) < 2 {
			return "", workflow.ContinueAsNew(ctx, struct{}{})
		}
		return workflow.WaitSignal[string](ctx, "ping")
	})
	workflow.Register(env.Registry(), "sender", func(ctx workflow.Context, target string) (string, error) {
		_, err := workflow.SignalExternal(ctx, target, "ping", "hello").Get(ctx)
		if errors.Is(err, workflow.ErrExternalWorkflowNotFound) {
			return "not found", nil
		}
		if err != nil {
			return "", err
		}
		return "sent", nil
	})
	env.Run()
	env.Start("receiver", "r-1", struct{}{})
	env.WaitFor("r-1", func(d *orchestrator.Description) bool { return d.Run == 2 && d.Status == schema.StatusRunning })
	env.Start("sender", "s-1", "r-1")
	for id, want := range map[string]string{"s-1": "sent", "r-1": "hello"} {
		d := env.Wait(id)
		var out string
		if err := env.Output(id, &out); err != nil || d.Status != schema.StatusCompleted || out != want {
			t.Fatalf("%s %s (%s) returned %q, %v: want completed with %q", id, d.Status, d.Error, out, err, want)
		}
	}
}

// A SignalExternal the signals stream refuses because it is full (its
// bound) fails the sender's future with ErrExternalSignalRefused and the
// server's reason, at once: the sender goes on, and the target gets
// nothing. Sent again once there is room, the signal arrives.
func TestSignalExternalRefusedByAFullSignalsStream(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "receiver", func(ctx workflow.Context, _ struct{}) (string, error) {
		return workflow.WaitSignal[string](ctx, "ping")
	})
	workflow.Register(env.Registry(), "sender", func(ctx workflow.Context, target string) (string, error) {
		_, err := workflow.SignalExternal(ctx, target, "ping", "hello").Get(ctx)
		if errors.Is(err, workflow.ErrExternalSignalRefused) {
			return err.Error(), nil
		}
		if err != nil {
			return "", err
		}
		return "sent", nil
	})
	env.Run()
	env.Start("receiver", "r-1", struct{}{})
	env.WaitFor("r-1", func(d *orchestrator.Description) bool { return d.Status == schema.StatusRunning })

	natstest.FillSignals(t, env.JS(), 64<<10, 4<<10, true)
	env.Start("sender", "s-1", "r-1")
	d := env.Wait("s-1")
	var out string
	if err := env.Output("s-1", &out); err != nil || d.Status != schema.StatusCompleted || !strings.HasSuffix(out, ": "+streams.SignalsStream+": maximum bytes exceeded") {
		t.Fatalf("sender %s (%s) returned %q, %v: want completed with the refusal and the server's reason", d.Status, d.Error, out, err)
	}
	if d, err := env.Describe("r-1"); err != nil || d.Status != schema.StatusRunning {
		t.Fatalf("receiver after a refused signal: %+v, %v; want it still waiting", d, err)
	}

	// Room again: the same signal from another sender arrives.
	ctx := context.Background()
	sigs, err := env.JS().Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigs.Purge(ctx, jetstream.WithPurgeSubject(streams.SignalSubject("flood", "*"))); err != nil {
		t.Fatal(err)
	}
	env.Start("sender", "s-2", "r-1")
	for id, want := range map[string]string{"s-2": "sent", "r-1": "hello"} {
		d := env.Wait(id)
		if err := env.Output(id, &out); err != nil || d.Status != schema.StatusCompleted || out != want {
			t.Fatalf("%s %s (%s) returned %q, %v: want completed with %q", id, d.Status, d.Error, out, err, want)
		}
	}
}

// A parent past its first run starts children as any workflow does: a
// child without an ID gets one derived from the workflow ID and the run,
// and names its parent's workflow ID (and run) in show.
func TestChildOfALaterRun(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "child", SampleChildWorkflow)
	workflow.Register(env.Registry(), "parent", func(ctx workflow.Context, _ struct{}) (string, error) {
		out, err := workflow.ExecuteChild[string](ctx, workflow.ChildOptions{Type: "child"}, "run "+strconv.Itoa(workflow.RunNumber(ctx)))
		if err != nil || workflow.RunNumber(ctx) == 2 {
			return out, err
		}
		return "", workflow.ContinueAsNew(ctx, struct{}{})
	})
	env.Run()
	env.Start("parent", "p-1", struct{}{})
	p := env.Wait("p-1")
	var out string
	if err := env.Output("p-1", &out); err != nil || p.Status != schema.StatusCompleted || out != "Hello run 2!" {
		t.Fatalf("parent %s (%s) returned %q, %v: want \"Hello run 2!\"", p.Status, p.Error, out, err)
	}
	if len(p.Children) != 1 {
		t.Fatalf("run 2 lists children %+v: want its one child", p.Children)
	}
	c := env.Wait(p.Children[0].WorkflowID)
	if c.Status != schema.StatusCompleted || c.Parent == nil || c.Parent.WorkflowID != "p-1" || c.Parent.Run != 2 {
		t.Fatalf("child %s %s names parent %+v: want completed, parent p-1 run 2", c.ID, c.Status, c.Parent)
	}
}

// Signal-with-start to a workflow that continued as new starts nothing
// and signals its current run; a query by the child's ID reaches the
// child's current run.
func TestSignalWithStartAndQueryReachTheCurrentRun(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "receiver", func(ctx workflow.Context, _ struct{}) (string, error) {
		if workflow.RunNumber(ctx) < 2 {
			return "", workflow.ContinueAsNew(ctx, struct{}{})
		}
		if err := workflow.SetQueryHandler(ctx, "run", func(struct{}) (int, error) { return workflow.RunNumber(ctx), nil }); err != nil {
			return "", err
		}
		return workflow.WaitSignal[string](ctx, "ping")
	})
	workflow.Register(env.Registry(), "parent", func(ctx workflow.Context, _ struct{}) (string, error) {
		return workflow.ExecuteChild[string](ctx, workflow.ChildOptions{Type: "receiver", ID: "kid"}, struct{}{})
	})
	env.Run()
	env.Start("parent", "p-1", struct{}{})
	env.WaitFor("kid", func(d *orchestrator.Description) bool { return d.Run == 2 && d.Status == schema.StatusRunning })
	ctx := context.Background()
	var out json.RawMessage
	var qerr error
	natstest.Eventually(t, 10*time.Second, func() bool {
		out, qerr = orchestrator.Query(ctx, env.JS().Conn(), "kid", "run", nil)
		return qerr == nil
	}, "the child never answered the query")
	if string(out) != "2" {
		t.Fatalf("query of the child answered %s, %v: want 2, from its current run", out, qerr)
	}
	started, _, err := orchestrator.SignalWithStart(ctx, env.JS(), "kid", "receiver", struct{}{}, "ping", "hello")
	if err != nil || started {
		t.Fatalf("signal-with-start: started %v, %v: want the existing workflow signalled", started, err)
	}
	p := env.Wait("p-1")
	var got string
	if err := env.Output("p-1", &got); err != nil || p.Status != schema.StatusCompleted || got != "hello" {
		t.Fatalf("parent %s (%s) returned %q, %v: want the child's second run's \"hello\"", p.Status, p.Error, got, err)
	}
}
