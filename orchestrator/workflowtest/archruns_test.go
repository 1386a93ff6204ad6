package workflowtest_test

import (
	"context"
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

// rolling waits for a "next" signal in each run, continues as new twice
// and ends in its third run with the number of runs before it.
func rolling(ctx workflow.Context, n int) (int, error) {
	if _, err := workflow.WaitSignal[struct{}](ctx, "next"); err != nil {
		return n, err
	}
	if n < 2 {
		return 0, workflow.ContinueAsNew(ctx, n+1)
	}
	return n, nil
}

// historySubjects returns the subjects the history stream holds for
// workflow id, its runs' trees and run pointers included.
func historySubjects(t *testing.T, env *workflowtest.Env, id string) []string {
	t.Helper()
	st, err := env.JS().Stream(context.Background(), streams.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("wf.>"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for subj := range info.State.Subjects {
		if strings.HasPrefix(subj, "wf."+id+".") || strings.HasPrefix(subj, "wf."+id+streams.RunSeparator) {
			out = append(out, subj)
		}
	}
	return out
}

// deadLetters returns how many messages the dead-letter stream holds on
// dlq.<origin>.
func deadLetters(t *testing.T, env *workflowtest.Env, origin string) uint64 {
	t.Helper()
	st, err := env.JS().Stream(context.Background(), streams.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(streams.DeadLetterSubject(origin)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// rollTo signals workflow id to continue and waits for its run run.
func rollTo(env *workflowtest.Env, id string, run int) {
	env.Signal(id, "next", struct{}{})
	env.WaitFor(id, func(d *orchestrator.Description) bool { return d.Run == run })
}

// TestArchiveContinuedWorkflowWhole: a workflow that continued as new
// twice and ended is archived whole once its last run is past retention:
// every run's tree and the run pointers leave the history, show finds the
// workflow archived, its last run and its first (--run 1), and nothing is
// dead-lettered.
func TestArchiveContinuedWorkflowWhole(t *testing.T) {
	env := workflowtest.New(t)
	env.SetRetention(time.Hour)
	workflow.Register(env.Registry(), "rolling", rolling)
	env.Run()
	env.Start("rolling", "roll-1", 0)
	env.WaitFor("roll-1", func(d *orchestrator.Description) bool { return d.Status == schema.StatusRunning })
	rollTo(env, "roll-1", 2)
	rollTo(env, "roll-1", 3)
	env.Signal("roll-1", "next", struct{}{})
	if d := env.Wait("roll-1"); d.Status != schema.StatusCompleted || d.Run != 3 {
		t.Fatalf("roll-1: %s in run %d; want completed in run 3", d.Status, d.Run)
	}
	env.Advance(2 * time.Hour)
	natstest.Eventually(t, time.Minute, func() bool {
		d, err := env.Describe("roll-1")
		return err == nil && d.Archived && len(historySubjects(t, env, "roll-1")) == 0
	}, "roll-1 was not archived whole")
	d, err := env.Describe("roll-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "roll-1" || d.Run != 3 || d.Status != schema.StatusCompleted || len(d.Runs) != 3 {
		t.Fatalf("show roll-1: %s run %d, %s, %d runs; want roll-1 run 3, completed, 3 runs", d.ID, d.Run, d.Status, len(d.Runs))
	}
	for i, r := range d.Runs {
		want := schema.StatusContinuedAsNew
		if i == 2 {
			want = schema.StatusCompleted
		}
		if r.Run != i+1 || r.Status != want {
			t.Errorf("run %d listed as run %d, %s; want %s", i+1, r.Run, r.Status, want)
		}
	}
	for run, want := range map[int]schema.Status{1: schema.StatusContinuedAsNew, 2: schema.StatusContinuedAsNew, 3: schema.StatusCompleted} {
		rd, err := env.DescribeRun("roll-1", run)
		if err != nil {
			t.Fatalf("show roll-1 --run %d: %v", run, err)
		}
		if !rd.Archived || rd.Status != want || rd.StartedAt.IsZero() || len(rd.History) == 0 {
			t.Errorf("show roll-1 --run %d: archived %v, %s, %d events; want archived, %s", run, rd.Archived, rd.Status, len(rd.History), want)
		}
		for _, e := range rd.History {
			if tree, _, _ := streams.ParseSubject(e.Subject); tree != streams.RunID("roll-1", run) {
				t.Errorf("show roll-1 --run %d lists %s, of another run", run, e.Subject)
			}
		}
	}
	if n := deadLetters(t, env, "archive"); n != 0 {
		t.Fatalf("%d end events dead-lettered to dlq.archive; want none", n)
	}
}

// TestArchiveKeepsALiveContinuedWorkflow: a workflow in run 2 whose first
// run ended past retention is not archived (run 1 stays in the history),
// and a signal-with-start to it reaches its running run instead of
// starting it again.
func TestArchiveKeepsALiveContinuedWorkflow(t *testing.T) {
	env := workflowtest.New(t)
	env.SetRetention(time.Hour)
	workflow.Register(env.Registry(), "rolling", rolling)
	env.Run()
	env.Start("rolling", "roll-2", 0)
	env.WaitFor("roll-2", func(d *orchestrator.Description) bool { return d.Status == schema.StatusRunning })
	rollTo(env, "roll-2", 2)
	env.Advance(2 * time.Hour)
	// The archiver has taken run 1's end: nothing of the index is left
	// for it.
	ctx := context.Background()
	natstest.Eventually(t, time.Minute, func() bool {
		c, err := env.JS().Consumer(ctx, streams.IndexStream, streams.ArchiverConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.Delivered.Consumer >= 1 && info.NumPending == 0 && info.NumAckPending == 0
	}, "the archiver did not take run 1's end")
	kept := false
	for _, subj := range historySubjects(t, env, "roll-2") {
		kept = kept || subj == streams.StartSubject("roll-2")
	}
	if !kept {
		t.Fatal("run 1 of roll-2 left the history while run 2 runs")
	}
	started, _, err := orchestrator.SignalWithStart(ctx, env.JS(), "roll-2", "rolling", 0, "next", struct{}{})
	if err != nil || started {
		t.Fatalf("signal-with-start to roll-2 in run 2: started %v, %v; want the signal delivered", started, err)
	}
	d := env.WaitFor("roll-2", func(d *orchestrator.Description) bool { return d.Run == 3 })
	if d.Status != schema.StatusRunning {
		t.Fatalf("roll-2 run 3: %s; want running", d.Status)
	}
	if n := deadLetters(t, env, "archive") + deadLetters(t, env, "wf"); n != 0 {
		t.Fatalf("%d dead letters (dlq.archive, dlq.wf); want none", n)
	}
}
