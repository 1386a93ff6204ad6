package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/internal/natstest"
)

// runCLI runs the binary with stdin not a terminal and returns its combined
// output and whether it exited 0.
func runCLI(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("jetflow %v: %v", args, err)
	}
	return string(out), err == nil
}

// TestVerbsCLI: start records who started a workflow; the batch form of a
// verb lists what it will touch and refuses without --yes when stdin is
// not a terminal, prints a line per workflow and a summary, and exits
// non-zero when any was refused; show lists the operator's requests with
// who and why. No orchestrator runs: the verbs only record requests.
func TestVerbsCLI(t *testing.T) {
	env := natstest.RunJetStream(t)
	url := env.Server.URL()
	for _, id := range []string{"cli-1", "cli-2"} {
		out, ok := runCLI(t, "start", "verbs.cli", id, `{"n":1}`, "--nats", url, "--identity", "alice@ops", "--reason", "backfill")
		if !ok || !strings.Contains(out, "started "+id) {
			t.Fatalf("start %s: %s", id, out)
		}
	}
	if out, ok := runCLI(t, "start", "verbs.cli", "cli-1", `{"n":1}`, "--nats", url); !ok || !strings.Contains(out, "was started before") {
		t.Fatalf("second start: %s", out)
	}
	if out, ok := runCLI(t, "start", "order.fulfillment", "o-9", `{"order_id":"o-9"}`, "--nats", url); ok || !strings.Contains(out, "customer_id is missing") {
		t.Fatalf("an invalid order was started by hand: %s", out)
	}
	if out, ok := runCLI(t, "resolve", "cli-1", "--nats", url); ok || !strings.Contains(out, "--reason is required") {
		t.Fatalf("resolve without --reason: %s", out)
	}

	batch := []string{"cancel", "--status", "running", "--type", "verbs.cli", "--nats", url, "--identity", "alice@ops", "--reason", "wrong batch"}
	out, ok := runCLI(t, batch...)
	if ok || !strings.Contains(out, "cli-1") || !strings.Contains(out, "cli-2") || !strings.Contains(out, "add --yes") {
		t.Fatalf("batch without --yes on a pipe: ok=%v\n%s", ok, out)
	}
	out, ok = runCLI(t, append(batch, "--yes")...)
	if !ok || strings.Count(out, "recorded at history seq") != 2 || !strings.Contains(out, "cancel: 2 recorded, 0 refused or failed, of 2 workflows") {
		t.Fatalf("batch cancel: ok=%v\n%s", ok, out)
	}
	// Again: each is refused (a cancel is requested already), exit 1.
	out, ok = runCLI(t, append(batch, "--yes", "--output", "json")...)
	if ok {
		t.Fatalf("a batch whose every workflow was refused exited 0:\n%s", out)
	}
	var outs []verbOutcome
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "]")+1]), &outs); err != nil || len(outs) != 2 {
		t.Fatalf("json output %v:\n%s", err, out)
	}
	for _, o := range outs {
		if !strings.Contains(o.Error, "has a cancel requested at history seq") {
			t.Errorf("%s: %q", o.WorkflowID, o.Error)
		}
	}

	out, ok = runCLI(t, "show", "cli-1", "--nats", url)
	if !ok || !strings.Contains(out, "operator.cancel") || !strings.Contains(out, "by alice@ops: wrong batch") {
		t.Fatalf("show does not list the cancel with who and why:\n%s", out)
	}
	out, ok = runCLI(t, "show", "cli-1", "--nats", url, "--output", "json")
	if !ok || !strings.Contains(out, `"operator": "alice@ops"`) || !strings.Contains(out, `"source": "operator:alice@ops: backfill"`) {
		t.Fatalf("show --output json:\n%s", out)
	}
}
