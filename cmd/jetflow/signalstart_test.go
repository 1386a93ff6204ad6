package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestSignalWithStartCLI: `jetflow signal --start TYPE --input JSON`
// starts a workflow that does not exist with the signal in its start
// event, and only signals one that does. No orchestrator runs.
func TestSignalWithStartCLI(t *testing.T) {
	env := natstest.RunJetStream(t)
	url := env.Server.URL()
	out, ok := runCLI(t, "signal", "--start", "sws.cli", "--input", `{"n":1}`, "w-1", "hello", `{"to":"Ada"}`, "--nats", url)
	if !ok || !strings.Contains(out, "w-1 (sws.cli) started with signal hello") {
		t.Fatalf("first signal --start: %s", out)
	}
	ev, err := streams.NewHistory(env.NC, env.JS).Last(context.Background(), streams.StartSubject("w-1"))
	if err != nil || ev == nil {
		t.Fatalf("start event: %v, %v", ev, err)
	}
	st := ev.Value.(*schema.WorkflowStarted)
	var in, payload map[string]any
	_ = schema.DecodeRaw(st.Input, &in)
	if st.Signal == nil || st.Signal.Name != "hello" || schema.DecodeRaw(st.Signal.Payload, &payload) != nil || payload["to"] != "Ada" || in["n"] != int8(1) {
		t.Fatalf("start event %+v, input %v, signal payload %v", st, in, payload)
	}
	out, ok = runCLI(t, "signal", "--start", "sws.cli", "--input", `{"n":2}`, "w-1", "hello", `{"to":"Bob"}`, "--no-wait", "--nats", url)
	if !ok || !strings.Contains(out, "signal hello sent to w-1") {
		t.Fatalf("second signal --start: %s", out)
	}
	if out, ok := runCLI(t, "signal", "--input", `{}`, "w-1", "hello", "--nats", url); ok || !strings.Contains(out, "only with --start") {
		t.Fatalf("--input without --start: %s", out)
	}
}

// TestSignalWithStartUnderAuth: under the permissions, `jetflow signal
// --start` with the operator's key starts the workflow with the signal in
// its start event, and meets no permission violation.
func TestSignalWithStartUnderAuth(t *testing.T) {
	env := natstest.RunAuth(t)
	operator := natsauth.SeedFile(env.KeyDir, natsauth.Operator)
	out, stderr, ok := run(t, nil, "signal", "--start", "sws.auth", "--input", `{}`, "w-a", "hello", `{"to":"Ada"}`,
		"--nats", env.Server.ClientURL(), "--nkey", operator)
	if !ok || !strings.Contains(out, "w-a (sws.auth) started with signal hello") || strings.Contains(stderr, "iolation") {
		t.Fatalf("signal --start as operator: ok=%v\n%s\n%s", ok, out, stderr)
	}
	ev, err := streams.NewHistory(env.NC, env.JS).Last(context.Background(), streams.StartSubject("w-a"))
	if err != nil || ev == nil {
		t.Fatalf("start event: %v, %v", ev, err)
	}
	if st := ev.Value.(*schema.WorkflowStarted); st.Signal == nil || st.Signal.Name != "hello" {
		t.Fatalf("start event %+v: want the signal in it", st)
	}
}
