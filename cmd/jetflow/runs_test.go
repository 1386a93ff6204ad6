package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestShowRuns: show of a workflow that continued as new shows its current
// run and lists every run; --run 1 shows the closed first run. The
// histories are written as the orchestrator writes them (no orchestrator
// runs).
func TestShowRuns(t *testing.T) {
	env := natstest.RunJetStream(t)
	url := env.Server.URL()
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
	} {
		m, err := streams.NewMsg(ev.subject, ev.v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	out, ok := runCLI(t, "show", "loop-7", "--nats", url)
	if !ok || !containsAll(out, "status    running", "run       2 of 2 (history wf.loop-7=2.>)",
		"#1 loop-7 continued-as-new (show loop-7 --run 1)", "*#2 loop-7=2 running") {
		t.Fatalf("show of the current run:\n%s", out)
	}
	out, ok = runCLI(t, "show", "loop-7", "--run", "1", "--nats", url)
	if !ok || !containsAll(out, "status    continued-as-new", "run       1 of 2", "*#1 loop-7 continued-as-new", "done.continued-as-new") {
		t.Fatalf("show --run 1:\n%s", out)
	}
	if out, ok := runCLI(t, "show", "loop-7", "--run", "-1", "--nats", url); ok || !strings.Contains(out, "--run -1") {
		t.Fatalf("show --run -1: %s", out)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
