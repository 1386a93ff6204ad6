package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/streams"
)

// TestReconcileUnderAuth runs the reconciliation of deploy/README.md under
// the permissions: `jetflow orchestrator --reconcile-schedule ...
// --reconcile-nkey reconcile.nk` runs the scan and the schedule as the
// reconcile role (`jetflow schedule` shows a completed run), and
// `jetflow reconcile --fix` with the operator's key refunds a lost charge
// once, with no permission violation anywhere.
func TestReconcileUnderAuth(t *testing.T) {
	env := natstest.RunAuth(t)
	url := env.Server.ClientURL()
	key := func(role string) string { return natsauth.SeedFile(env.KeyDir, role) }
	operator := key(natsauth.Operator)
	orch := start(t, "orchestrator", "--nats", url, "--nkey", key(natsauth.Orchestrator), "--log-level", "warn",
		"--reconcile-schedule", "@every 2s", "--reconcile-nkey", key(natsauth.Reconcile))
	pay := start(t, "participant", "payment", "--nats", url, "--nkey", key(natsauth.Participant("payment")), "--log-level", "warn")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("orchestrator:\n%s\npayment:\n%s", orch, pay)
		}
	})

	var last string
	natstest.Eventually(t, 90*time.Second, func() bool {
		out, stderr, ok := run(t, nil, "schedule", "--nats", url, "--nkey", operator, "--output", "json")
		last = out + stderr
		var list []struct {
			Name       string `json:"name"`
			LastStatus string `json:"last_status"`
		}
		return ok && json.Unmarshal([]byte(out), &list) == nil && len(list) == 1 && list[0].LastStatus == "completed"
	}, "no completed scheduled reconciliation; jetflow schedule:\n%s", last)

	// A charge the engine never saw, younger than the schedule's grace:
	// the scheduled runs leave it alone, the operator's --fix refunds it.
	sys, err := sim.Open(natstest.Context(t), env.JS, payment.Name, streams.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	charge, _, err := sys.Apply(natstest.Context(t), sim.Effect{IdempotencyKey: "ru-charge", OrderID: "ru-orphan", Kind: "charge", Ref: sim.Ref("ch", "ru-charge"),
		AmountCents: 900, Currency: "EUR", Time: time.Now().Add(-5 * time.Minute).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, ok := run(t, nil, "reconcile", "--fix", "--grace", "1m", "--wait", "60s", "--nats", url, "--nkey", operator, "--output", "json")
	var rep struct {
		Status   string `json:"status"`
		Findings []struct {
			OrderID  string `json:"order_id"`
			ChargeID string `json:"charge_id"`
			Action   string `json:"action"`
		} `json:"findings"`
	}
	if !ok || json.Unmarshal([]byte(out), &rep) != nil || rep.Status != "completed" {
		t.Fatalf("reconcile --fix as operator: ok=%v\n%s\n%s", ok, out, stderr)
	}
	found := false
	for _, f := range rep.Findings {
		found = found || (f.OrderID == "ru-orphan" && f.ChargeID == charge.Ref && strings.HasPrefix(f.Action, "refunded "))
	}
	if !found {
		t.Errorf("reconcile --fix did not refund ru-orphan:\n%s", out)
	}
	effects, err := sim.List(natstest.Context(t), env.JS, payment.Name, "ru-orphan")
	if err != nil {
		t.Fatal(err)
	}
	refunds := 0
	for _, e := range effects {
		if e.Kind == "refund" {
			refunds++
		}
	}
	if refunds != 1 {
		t.Errorf("ru-orphan refunded %d times, want 1: %+v", refunds, effects)
	}
	for name, b := range map[string]*syncBuffer{"orchestrator": orch, "payment": pay} {
		if s := b.String(); strings.Contains(s, "iolation") || strings.Contains(s, "schedule: start the next run") {
			t.Errorf("%s:\n%s", name, s)
		}
	}
	if strings.Contains(stderr, "iolation") {
		t.Errorf("reconcile --fix:\n%s", stderr)
	}
}

// TestDevAuthSchedulesReconcile: `jetflow dev --auth` runs the scheduled
// reconciliation with the reconcile role's key: `jetflow schedule`, with
// the operator's key, shows a completed run.
func TestDevAuthSchedulesReconcile(t *testing.T) {
	addr := freeAddr(t)
	data := t.TempDir()
	dev := start(t, "dev", "--auth", "--listen", addr, "--data", data, "--ui", "", "--log-level", "warn", "--reconcile-schedule", "@every 2s")
	operator := natsauth.SeedFile(filepath.Join(data, "auth"), natsauth.Operator)
	var last string
	natstest.Eventually(t, 90*time.Second, func() bool {
		out, stderr, ok := run(t, nil, "schedule", "--nats", "nats://"+addr, "--nkey", operator, "--output", "json")
		last = out + stderr
		var list []struct {
			LastStatus string `json:"last_status"`
		}
		return ok && json.Unmarshal([]byte(out), &list) == nil && len(list) == 1 && list[0].LastStatus == "completed"
	}, "no completed scheduled reconciliation under dev --auth; jetflow schedule:\n%s\ndev:\n%s", last, dev)
	if s := dev.String(); strings.Contains(s, "does not run") || strings.Contains(s, "iolation") {
		t.Errorf("dev --auth:\n%s", s)
	}
}
