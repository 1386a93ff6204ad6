package workflowtest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

var (
	smallStep = workflow.Activity{Service: "limits", Action: "small"}
	largeStep = workflow.Activity{Service: "limits", Action: "large"}
)

// largeSecond issues a small command, then one whose input is size bytes.
func largeSecond(ctx workflow.Context, size int) (string, error) {
	if _, err := workflow.Execute[string](ctx, smallStep, "first"); err != nil {
		return "", err
	}
	return workflow.Execute[string](ctx, largeStep, strings.Repeat("x", size))
}

// smallFirst issues one small command whatever its input.
func smallFirst(ctx workflow.Context, _ string) (string, error) {
	return workflow.Execute[string](ctx, smallStep, "first")
}

// calls counts the commands a stub received, per workflow.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) handler(ctx context.Context, cmd *participants.Command) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[cmd.WorkflowID]++
	return "done", nil
}

func (c *calls) of(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

func limitsEnv(t *testing.T) (*workflowtest.Env, *calls, *calls) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "large-second", largeSecond)
	workflow.Register(env.Registry(), "small-first", smallFirst)
	small, large := &calls{}, &calls{}
	env.Stub(smallStep, small.handler)
	env.Stub(largeStep, large.handler)
	env.Run()
	return env, small, large
}

// settled waits until the orchestrator's consumer holds no event, neither
// waiting nor unacknowledged: no decision is being retried.
func settled(t *testing.T, env *workflowtest.Env) {
	t.Helper()
	var info *jetstream.ConsumerInfo
	natstest.Eventually(t, 30*time.Second, func() bool {
		c, err := env.JS().Consumer(context.Background(), streams.HistoryStream, streams.OrchestratorConsumer)
		if err != nil {
			return false
		}
		info, err = c.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, "orchestrator consumer still busy: %+v", info)
}

// TestOversizedDecisionParks: a command larger than the server's max
// payload cannot be written; the workflow is parked with the reason at
// once, instead of the decision being retried for ever.
func TestOversizedDecisionParks(t *testing.T) {
	env, small, large := limitsEnv(t)
	env.Start("large-second", "ls-1", 1_100_000)
	d := env.Wait("ls-1")
	if d.Status != schema.StatusBlocked || !strings.Contains(d.Reason, "decision cannot be recorded") ||
		!strings.Contains(d.Reason, "wf.ls-1.cmd.2.limits.large") || !strings.Contains(d.Reason, "max payload") {
		t.Fatalf("status %s, reason %q; want blocked on the size of command 2", d.Status, d.Reason)
	}
	if small.of("ls-1") != 1 || large.of("ls-1") != 0 {
		t.Errorf("small step ran %d times, large %d; want 1 and 0", small.of("ls-1"), large.of("ls-1"))
	}
	settled(t, env)
	blocked := 0
	for _, h := range env.WaitFor("ls-1", func(*orchestrator.Description) bool { return true }).History {
		if h.Type == string(schema.KindWorkflowBlocked) {
			blocked++
		}
	}
	if blocked != 1 {
		t.Errorf("%d blocked events, want 1", blocked)
	}

	// Under the limit the same workflow completes.
	env.Start("large-second", "ls-2", 100_000)
	if d := env.Wait("ls-2"); d.Status != schema.StatusCompleted {
		t.Fatalf("workflow with a 100 KB command: %s %s", d.Status, d.Reason)
	}
}

// TestOversizedInputParksBeforeAnyCommand: a workflow whose input is larger
// than MaxInputSize (max payload / 4) is parked at its first decision, so
// no command of it ever runs (no charge that then sticks); a start event
// that cannot be stored at all is refused by Start with ErrTooLarge.
func TestOversizedInputParksBeforeAnyCommand(t *testing.T) {
	env, small, _ := limitsEnv(t)
	env.Start("small-first", "in-1", strings.Repeat("i", 300<<10))
	d := env.Wait("in-1")
	if d.Status != schema.StatusBlocked || !strings.Contains(d.Reason, "MaxInputSize") || !strings.Contains(d.Reason, "before any command") {
		t.Fatalf("status %s, reason %q; want blocked on MaxInputSize", d.Status, d.Reason)
	}
	if n := small.of("in-1"); n != 0 {
		t.Errorf("a command of the oversized workflow ran %d times", n)
	}
	settled(t, env)

	_, err := orchestrator.Start(context.Background(), env.JS(), "small-first", "in-2", strings.Repeat("i", 1_100_000), "test")
	if !errors.Is(err, orchestrator.ErrTooLarge) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("start of a 1.1 MB input: %v, want ErrTooLarge with the figures", err)
	}
	if d, err := env.Describe("in-2"); err == nil && len(d.History) > 0 {
		t.Errorf("refused start left a history: %+v", d.History)
	}

	env.Start("small-first", "in-3", "small")
	if d := env.Wait("in-3"); d.Status != schema.StatusCompleted {
		t.Fatalf("small workflow: %s %s", d.Status, d.Reason)
	}
}

// waitGo waits for the signal "go" and returns its payload.
func waitGo(ctx workflow.Context, _ string) (string, error) {
	return workflow.WaitSignal[string](ctx, "go")
}

// TestOversizedSignalDeadLettered: a signal too large to be recorded in a
// history is dead-lettered (cut to fit) instead of retried for ever, and
// the workflow takes the next signal.
func TestOversizedSignalDeadLettered(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "wait-go", waitGo)
	env.Run()
	env.Start("wait-go", "sig-1", "")
	ctx := context.Background()
	body := []byte(`"` + strings.Repeat("x", 1_040_000) + `"`)
	if _, err := env.JS().Publish(ctx, streams.SignalSubject("go", "sig-1"), body); err != nil {
		t.Fatal(err)
	}
	cons, err := env.JS().OrderedConsumer(ctx, streams.DeadLetterStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{streams.SignalDeadLetterFilter}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatalf("no dead letter for a 1 MB signal: %v", err)
	}
	if r := m.Headers().Get(schema.HeaderReason); !strings.Contains(r, "signal is 1040002 bytes, the limit is 262144") {
		t.Errorf("reason %q", r)
	}
	env.Signal("sig-1", "go", "small")
	if d := env.Wait("sig-1"); d.Status != schema.StatusCompleted {
		t.Fatalf("workflow after the oversized signal: %s %s", d.Status, d.Reason)
	}
	var out string
	if err := env.Output("sig-1", &out); err != nil || out != "small" {
		t.Fatalf("output %q %v", out, err)
	}
}

// TestParkedEndStartsNoLateRoute: a workflow whose end is too large to
// record is parked, not finished, so the signals it never received are not
// late ones and start none of their routes (a refund, in the reference
// app). Before, the routes started as if it had ended, and it could later
// still receive those signals: two effects for one signal.
func TestParkedEndStartsNoLateRoute(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "big-end", func(ctx workflow.Context, size int) (string, error) {
		if _, err := workflow.Execute[string](ctx, smallStep, "first"); err != nil {
			return "", err
		}
		return strings.Repeat("o", size), nil
	})
	workflow.Register(env.Registry(), "noted", func(ctx workflow.Context, in orchestrator.LateSignal) (string, error) {
		return "noted", nil
	})
	env.RouteLateSignals(orchestrator.LateSignalRoute{WorkflowType: "big-end", Signal: "note", Start: "noted"})
	release := make(chan struct{})
	env.Stub(smallStep, func(ctx context.Context, cmd *participants.Command) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return "done", nil
	})
	env.Run()

	env.Start("big-end", "be-1", 1_100_000)
	env.WaitFor("be-1", func(d *orchestrator.Description) bool { return len(d.History) >= 2 }) // the command is out
	env.Signal("be-1", "note", nil)
	env.WaitFor("be-1", func(d *orchestrator.Description) bool {
		for _, h := range d.History {
			if h.Type == string(schema.KindSignal) {
				return true
			}
		}
		return false
	})
	close(release)
	d := env.WaitFor("be-1", func(d *orchestrator.Description) bool { return d.Status == schema.StatusBlocked })
	if !strings.Contains(d.Reason, "decision cannot be recorded") {
		t.Fatalf("reason %q, want the end's size", d.Reason)
	}
	settled(t, env)
	starts, err := env.JS().Stream(context.Background(), streams.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := starts.Info(context.Background(), jetstream.WithSubjectFilter(streams.StartFilter))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(info.State.Subjects); n != 1 {
		t.Fatalf("%d workflows started, want 1: the parked workflow's unreceived signal started its late route (%v)", n, info.State.Subjects)
	}
}

// TestOversizedOutputFailsOnce: a step whose output is too large for a
// result fails at once with invalid_output, naming the size; it is not
// retried (the handler would give the same output) nor left to run into
// the consumer's last delivery.
func TestOversizedOutputFailsOnce(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "big-output", func(ctx workflow.Context, _ string) (string, error) {
		return workflow.Execute[string](ctx, largeStep.WithOptions(workflow.StepOptions{
			StartToClose: 10 * time.Second,
			Retry:        workflow.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxAttempts: 5},
		}), "x")
	})
	var runs calls
	env.Stub(largeStep, func(ctx context.Context, cmd *participants.Command) (any, error) {
		_, _ = runs.handler(ctx, cmd)
		return strings.Repeat("r", 1_100_000), nil
	})
	env.Run()
	env.Start("big-output", "bo-1", "x")
	d := env.Wait("bo-1")
	if d.Status == schema.StatusCompleted || !strings.Contains(d.Error, "invalid_output") || !strings.Contains(d.Error, "a result holds at most") {
		t.Fatalf("status %s, error %q; want the step failed for its output's size", d.Status, d.Error)
	}
	if n := runs.of("bo-1"); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}
