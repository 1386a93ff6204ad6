package test

import (
	"context"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestAuthContinueAsNew runs a workflow that continues as new 20 times on
// an orchestrator that connects as its role: each run's start and run
// pointer (wf.<id>=runs.<N>) are written, the workflow completes in its
// last run, and the orchestrator meets no permission violation.
func TestAuthContinueAsNew(t *testing.T) {
	const runs = 21
	s := newAuthStack(t)
	s.workflows = func(r *workflow.Registry) {
		workflow.Register(r, "auth-loop", func(ctx workflow.Context, n int) (int, error) {
			n = workflow.SideEffect(ctx, func() int { return n + 1 })
			if n < runs {
				return 0, workflow.ContinueAsNew(ctx, n)
			}
			return n, nil
		})
	}
	nc, js, v := s.env.ConnectAs(t, natsauth.Orchestrator)
	reg := workflow.NewRegistry()
	s.workflows(reg)
	o, err := orchestrator.New(orchestrator.Config{NC: nc, JS: js, Registry: reg, Logger: testLogger(), AckWait: s.ackWait})
	if err != nil {
		t.Fatal(err)
	}
	s.run(o.Run)

	_, ojs, _ := s.env.ConnectAs(t, natsauth.Operator)
	if _, err := orchestrator.Start(context.Background(), ojs, "auth-loop", "loop-1", 0, "test"); err != nil {
		t.Fatalf("start as operator: %v", err)
	}
	h := streams.NewHistory(s.env.NC, s.env.JS)
	var d *orchestrator.Description
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last description %+v (%v); orchestrator's permission violations %v", d, err, v.All())
		}
	})
	natstest.Eventually(t, 2*time.Minute, func() bool {
		d, err = orchestrator.Describe(context.Background(), h, "loop-1")
		return len(v.All()) > 0 || err == nil && d.Status.Terminal() && d.Status != schema.StatusContinuedAsNew
	}, "loop-1 did not end")
	if d.Status != schema.StatusCompleted || d.Run != runs {
		t.Errorf("loop-1 ended %s in run %d (%s), want completed in run %d", d.Status, d.Run, d.Error, runs)
	}
	if len(d.Runs) != runs {
		t.Errorf("loop-1 lists %d runs, want %d", len(d.Runs), runs)
	}
	if vs := v.All(); len(vs) > 0 {
		t.Errorf("permission violations of the orchestrator: %v", vs)
	}
}
