package console_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/internal/console"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestWorkflowPageLinksItsRuns: the page of a workflow that continued as
// new shows its current run and links every run; a run's link shows that
// run.
func TestWorkflowPageLinksItsRuns(t *testing.T) {
	s := newSite(t, console.Config{ReadOnly: true})
	in, _ := schema.EncodeRaw(1)
	run2 := &schema.WorkflowStarted{WorkflowID: "loop-3", Type: "loop", Input: in, Run: 2}
	for _, ev := range []struct {
		subject string
		v       schema.Kinded
	}{
		{streams.StartSubject("loop-3"), &schema.WorkflowStarted{WorkflowID: "loop-3", Type: "loop", Input: in}},
		{streams.DoneSubject("loop-3", string(schema.StatusContinuedAsNew)), &schema.WorkflowFinished{Status: schema.StatusContinuedAsNew, NextRun: 2, NextInput: in}},
		{streams.StartSubject(streams.RunID("loop-3", 2)), run2},
		{streams.RunPointerSubject("loop-3", 2), run2},
	} {
		m, err := streams.NewMsg(ev.subject, ev.v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	c := client(t)
	code, body := get(t, c, s.url+"/workflows/loop-3")
	if code != 200 || !strings.Contains(body, `id="run">2 of 2`) || !strings.Contains(body, `href="/workflows/loop-3?run=1"`) || !strings.Contains(body, `href="/workflows/loop-3?run=2"`) {
		t.Fatalf("workflow page (%d) does not show run 2 of 2 with links to both runs:\n%s", code, body)
	}
	code, body = get(t, c, s.url+"/workflows/loop-3?run=1")
	if code != 200 || !strings.Contains(body, `id="status">continued-as-new`) || !strings.Contains(body, `id="run">1 of 2`) {
		t.Fatalf("run 1's page (%d):\n%s", code, body)
	}
	if code, _ := get(t, c, s.url+"/workflows/loop-3?run=0"); code != 400 {
		t.Fatalf("run=0: %d, want 400", code)
	}
}
