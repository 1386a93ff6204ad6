package orchestrator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestExportArchivedGivesEveryRun: a workflow that continued as new is
// archived in one record; the export describes each of its runs, in run
// order, each as show --run N does, handed over together; a record without
// its workflow's events stops the export with the cursor of what was
// handed over and the one that skips it, which goes on with the next.
func TestExportArchivedGivesEveryRun(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	h := streams.NewHistory(env.NC, env.JS)
	in, _ := schema.EncodeRaw(3)
	run2 := &schema.WorkflowStarted{WorkflowID: "loop-7", Type: "loop", Input: in, Source: "continue-as-new of loop-7", Run: 2}
	for _, ev := range []struct {
		subject string
		v       schema.Kinded
	}{
		{streams.StartSubject("loop-7"), &schema.WorkflowStarted{WorkflowID: "loop-7", Type: "loop", Input: in}},
		{streams.DoneSubject("loop-7", string(schema.StatusContinuedAsNew)), &schema.WorkflowFinished{Status: schema.StatusContinuedAsNew, NextRun: 2, NextInput: in}},
		{streams.StartSubject(streams.RunID("loop-7", 2)), run2},
		{streams.RunPointerSubject("loop-7", 2), run2},
		{streams.DoneSubject(streams.RunID("loop-7", 2), string(schema.StatusCompleted)), &schema.WorkflowFinished{Status: schema.StatusCompleted}},
		{streams.StartSubject("lone-1"), &schema.WorkflowStarted{WorkflowID: "lone-1", Type: "loop", Input: in}},
		{streams.DoneSubject("lone-1", string(schema.StatusCompleted)), &schema.WorkflowFinished{Status: schema.StatusCompleted}},
	} {
		m, err := streams.NewMsg(ev.subject, ev.v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	archive := func(id string, trees ...string) {
		t.Helper()
		var chain []streams.Event
		for _, tree := range trees {
			evs, err := h.Read(ctx, tree, 0)
			if err != nil {
				t.Fatal(err)
			}
			chain = append(chain, evs...)
		}
		ptrs, err := h.LastOfEach(ctx, []string{streams.RunPointerFilter(id)})
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, ptrs...)
		rec := &schema.ArchivedHistory{WorkflowID: id, Type: "loop", Status: schema.StatusCompleted, Ended: time.Now(), ArchivedAt: time.Now(),
			StartSeq: chain[0].Seq, LastSeq: chain[len(chain)-1].Seq, Events: streams.ArchivedEventsOf(chain)}
		if _, _, err := h.WriteArchive(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	archive("loop-7", "loop-7", streams.RunID("loop-7", 2))
	// A record that holds none of its workflow's events.
	if _, _, err := h.WriteArchive(ctx, &schema.ArchivedHistory{WorkflowID: "empty-1", Type: "loop", Status: schema.StatusCompleted}); err != nil {
		t.Fatal(err)
	}
	archive("lone-1", "lone-1")

	var got []*Description
	calls := 0
	emit := func(ds []*Description) error { calls++; got = append(got, ds...); return nil }
	next, err := ExportArchived(ctx, env.JS, ArchivedQuery{}, emit)
	var bad *streams.BadRecordError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), "workflow empty-1") || next == 0 || bad.Seq <= next {
		t.Fatalf("export over a record without events: next %d, %v; want a bad record error naming it, after the cursor", next, err)
	}
	if len(got) != 2 || calls != 1 {
		t.Fatalf("%d descriptions in %d calls before the bad record, want loop-7's two runs together", len(got), calls)
	}
	for i, d := range got {
		run := i + 1
		if d.ID != "loop-7" || d.Run != run || d.RunID != streams.RunID("loop-7", run) || !d.Archived || len(d.Runs) != 2 {
			t.Fatalf("run %d: %+v", run, d)
		}
	}
	if got[0].Status != schema.StatusContinuedAsNew || got[1].Status != schema.StatusCompleted {
		t.Fatalf("statuses %s, %s; want continued-as-new, completed", got[0].Status, got[1].Status)
	}
	// The cursor before it writes it again; its own sequence skips it.
	if _, err := ExportArchived(ctx, env.JS, ArchivedQuery{Cursor: next}, func([]*Description) error { return nil }); !errors.As(err, &bad) {
		t.Fatalf("export from the cursor before the bad record: %v, want the bad record again", err)
	}
	got = nil
	if next, err := ExportArchived(ctx, env.JS, ArchivedQuery{Cursor: bad.Seq}, emit); err != nil || next != 0 || len(got) != 1 || got[0].ID != "lone-1" || got[0].Run != 0 {
		t.Fatalf("export after the bad record: next %d, %v, %d descriptions; want lone-1 alone and the end", next, err, len(got))
	}
}
