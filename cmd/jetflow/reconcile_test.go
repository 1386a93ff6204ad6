package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/streams"
)

// TestReconcileCLI: `jetflow reconcile` prints a table of what does not
// add up and exits 3 when a finding is critical; --output json carries the
// same findings; bad durations are refused naming the flag; `jetflow
// schedule` lists no schedule on a fresh server. No orchestrator runs:
// without --fix the command only reads.
func TestReconcileCLI(t *testing.T) {
	env := natstest.RunJetStream(t)
	url := env.Server.URL()
	ctx := context.Background()
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	sys, err := sim.Open(ctx, env.JS, "payment", streams.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	hourAgo := time.Now().Add(-time.Hour).UTC()
	for _, key := range []string{"first", "second"} {
		if _, _, err := sys.Apply(ctx, sim.Effect{IdempotencyKey: key, OrderID: "o-twice", Kind: "charge", AmountCents: 1999, Currency: "EUR", Ref: sim.Ref("ch", key), Time: hourAgo}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := sys.Apply(ctx, sim.Effect{IdempotencyKey: "orphan", OrderID: "o-orphan", Kind: "charge", AmountCents: 500, Currency: "EUR", Ref: "ch_orphan", Time: hourAgo}); err != nil {
		t.Fatal(err)
	}

	out, stderr, code := runStatus(t, nil, "reconcile", "--nats", url)
	if code != exitCritical || !strings.Contains(stderr, "1 critical finding") {
		t.Fatalf("reconcile: exit %d, want %d\n%s%s", code, exitCritical, out, stderr)
	}
	for _, want := range []string{
		"CRITICAL  double_charge         o-twice   absent    39.98 EUR (2)",
		"fix       charged_not_refunded  o-orphan  absent    5.00 EUR",
		"refund ch_orphan",
		"(2 findings, 1 critical)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reconcile table lacks %q:\n%s", want, out)
		}
	}

	out, _, code = runStatus(t, nil, "reconcile", "--nats", url, "--output", "json")
	var rep struct {
		Orders   int `json:"orders"`
		Findings []struct {
			Class    string `json:"class"`
			OrderID  string `json:"order_id"`
			Critical bool   `json:"critical"`
			ChargeID string `json:"charge_id"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitCritical {
		t.Fatalf("reconcile --output json: exit %d, %v\n%s", code, err, out)
	}
	if rep.Orders != 2 || len(rep.Findings) != 2 || !rep.Findings[0].Critical || rep.Findings[1].ChargeID != "ch_orphan" {
		t.Errorf("reconcile --output json: %+v", rep)
	}

	// A grace longer than the charges' age leaves the orphan alone.
	if out, _, _ := runStatus(t, nil, "reconcile", "--nats", url, "--grace", "2h"); strings.Contains(out, "o-orphan") {
		t.Errorf("--grace 2h judged a charge an hour old:\n%s", out)
	}
	if _, stderr, code := runStatus(t, nil, "reconcile", "--nats", url, "--since", "-1h"); code == 0 || !strings.Contains(stderr, "--since -1h0m0s: must be positive") {
		t.Errorf("--since -1h: exit %d\n%s", code, stderr)
	}
	if out, stderr, code := runStatus(t, nil, "schedule", "--nats", url); code != 0 || !strings.Contains(out, "(0 schedules)") {
		t.Errorf("schedule: exit %d\n%s%s", code, out, stderr)
	}
}
