package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/streams"
)

// TestKillDuringReconcileFix: after a mix of orders settled, the payment
// gateway holds charges the engine never saw (their results never came
// back, their orders have no workflow). `jetflow reconcile --fix` refunds
// them through a reconciliation workflow while the orchestrator (which
// runs the scan) is killed right after an append of the fix and the
// payment participant right after a refund's effect, before its result:
// both restart, the fix completes, every lost charge is refunded exactly
// once, and no order of the mix is touched (the usual invariants hold
// again). A second `--fix` finds nothing and writes nothing.
func TestKillDuringReconcileFix(t *testing.T) {
	h := newHarness(t, seedFor(t, 11), serverOptions{})
	orders := mix("rcf-", 40, false)
	o := h.newRole("orchestrator", "o1", bin.jetflow, h.engineArgs("orchestrator", "--reconcile-schedule", "0 0 1 1 *"), true)
	o.start()
	parts := h.participants()
	orders = h.publishAll(orders)
	h.settleAndCheck(orders, settleBound)

	ctx := context.Background()
	sys, err := sim.Open(ctx, h.js, "payment", streams.Topology{Replicas: h.replicas})
	if err != nil {
		t.Fatal(err)
	}
	lost := map[string]string{} // order -> charge
	at := time.Now().Add(-time.Hour).UTC()
	for i := range 12 {
		key := fmt.Sprintf("rcf-lost-%02d.charge", i)
		e, _, err := sys.Apply(ctx, sim.Effect{IdempotencyKey: key, OrderID: fmt.Sprintf("rcf-lost-%02d", i), Kind: "charge", AmountCents: int64(1000 + i), Currency: "EUR", Ref: sim.Ref("ch", key), Time: at})
		if err != nil {
			t.Fatal(err)
		}
		lost[e.OrderID] = e.Ref
	}

	// The next starts die in the middle of the fix.
	k, r := 2+h.rng.Intn(4), 1+h.rng.Intn(6)
	h.logf("orchestrator exits after its append %d, payment after its refund %d", k, r)
	o.kill()
	o.arm(fmt.Sprintf("orchestrator.after-append=exit@%d", k))
	o.start()
	parts["payment"].kill()
	parts["payment"].arm(fmt.Sprintf("participant.after-effect=exit@%d", r))
	parts["payment"].start()

	before := failpointExits(o) + failpointExits(parts["payment"])
	rep := h.reconcileFix()
	if got := failpointExits(o) + failpointExits(parts["payment"]) - before; got < 2 {
		t.Errorf("%d processes died at their fault point during the fix, want 2", got)
	} else {
		h.fault("orchestrator exit after an append of the fix", "o1")
		h.fault("payment exit after a refund's effect", "payment")
	}
	fixed := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Class == "charged_not_refunded" && strings.HasPrefix(f.Action, "refunded ") {
			fixed[f.OrderID] = true
		} else {
			t.Errorf("unexpected finding: %+v", f)
		}
	}
	if len(fixed) != len(lost) {
		t.Errorf("the fix refunded %d orders, want the %d lost charges", len(fixed), len(lost))
	}
	ledger := refundKeys(t, h)
	for order, charge := range lost {
		if got := ledger[order]; len(got) != 1 || got[0] != "refund."+charge {
			t.Errorf("order %s: refunds %v, want one keyed on %s", order, got, charge)
		}
	}
	h.settleAndCheck(orders, settleBound)

	// Again: nothing to do, nothing written.
	rep = h.reconcileFix()
	if len(rep.Findings) != 0 {
		t.Errorf("second run: %+v", rep.Findings)
	}
	if again := refundKeys(t, h); fmt.Sprint(again) != fmt.Sprint(ledger) {
		t.Errorf("second run changed the refunds:\n%v\nwas\n%v", again, ledger)
	}
	if c := h.crashes(); len(c) > 0 {
		t.Errorf("processes crashed: %v", c)
	}
}

// fixReport is what `jetflow reconcile --fix --output json` prints.
type fixReport struct {
	WorkflowID string `json:"workflow_id"`
	Status     string `json:"status"`
	Findings   []struct {
		Class   string `json:"class"`
		OrderID string `json:"order_id"`
		Action  string `json:"action"`
	} `json:"findings"`
}

// reconcileFix runs `jetflow reconcile --fix` as an operator would and
// returns its report; it must complete with nothing critical.
func (h *harness) reconcileFix() fixReport {
	h.t.Helper()
	cmd := exec.Command(bin.jetflow, "reconcile", "--fix", "--grace", "1s", "--wait", "3m", "--output", "json", "--nats", h.url())
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	var rep fixReport
	if jerr := json.Unmarshal(out, &rep); err != nil || jerr != nil || rep.Status != "completed" {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		h.t.Fatalf("jetflow reconcile --fix: %v %v %s\n%s%s", err, jerr, rep.Status, out, msg)
	}
	h.logf("reconciliation %s: %d findings", rep.WorkflowID, len(rep.Findings))
	return rep
}

// refundKeys maps each order to the idempotency keys of its refunds, sorted.
func refundKeys(t *testing.T, h *harness) map[string][]string {
	t.Helper()
	effects, err := sim.List(context.Background(), h.js, "payment", "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range effects {
		if e.Kind == "refund" {
			out[e.OrderID] = append(out[e.OrderID], e.IdempotencyKey)
		}
	}
	for _, keys := range out {
		sort.Strings(keys)
	}
	return out
}
