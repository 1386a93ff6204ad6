package fulfillment_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// historiesDir holds histories of the reference workflow as `jetflow show
// ID --output json` prints them, one per outcome. Write the ones not saved
// yet with
//
//	JETFLOW_WRITE_HISTORIES=1 go test -run TestWriteGoldenHistories ./orchestrator/fulfillment/
//
// and rewrite them all (JETFLOW_WRITE_HISTORIES=all) only when a change to
// the workflow is meant to be incompatible with the orders in flight (and
// is shipped behind workflow.GetVersion otherwise). A saved history is
// kept as the code of its day wrote it: charge-timed-out-before-settling
// was written before fulfillment.SettleTimedOutSteps, so it holds no
// marker and guards the old path.
const historiesDir = "testdata/histories"

// Every saved history replays against the current code: a change that
// would block the orders in flight fails here first.
func TestGoldenHistoriesReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(historiesDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no histories in %s (%v)", historiesDir, err)
	}
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	rp := workflow.NewReplayer(reg)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			file, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			if err := rp.ReplayHistoryJSON(file); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A changed workflow fails the replay of the saved histories, naming the
// first divergence.
func TestGoldenHistoriesCatchAnIncompatibleChange(t *testing.T) {
	reg := workflow.NewRegistry()
	// Reserves before charging: every saved order diverges at decision 1.
	workflow.Register(reg, fulfillment.WorkflowType, func(ctx workflow.Context, o fulfillment.Order) (fulfillment.Receipt, error) {
		_, err := workflow.Execute[inventory.Reservation](ctx, inventory.Reserve, inventory.ReserveRequest{OrderID: o.OrderID, Items: o.Items})
		return fulfillment.Receipt{}, err
	})
	file, err := os.Open(filepath.Join(historiesDir, "completed.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	err = workflow.NewReplayer(reg).ReplayHistoryJSON(file)
	var div *workflow.DivergenceError
	if !errors.As(err, &div) || div.Decision != 1 || !strings.Contains(div.Recorded, "payment.charge") || !strings.Contains(div.Issued, "inventory.reserve") {
		t.Fatalf("replay error %v (%+v), want a divergence at decision 1: charge recorded, reserve issued", err, div)
	}
}

// TestWriteGoldenHistories runs one order per outcome through the
// reference participants and saves each history. It runs only when asked
// (see historiesDir).
func TestWriteGoldenHistories(t *testing.T) {
	if os.Getenv("JETFLOW_WRITE_HISTORIES") == "" {
		t.Skip("set JETFLOW_WRITE_HISTORIES=1 to rewrite " + historiesDir)
	}
	env := workflowtest.New(t)
	fast := workflow.StepOptions{StartToClose: 500 * time.Millisecond, Retry: workflow.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond}}
	fulfillment.Register(env.Registry(), fulfillment.Config{Steps: fast, Compensation: fast})
	for _, name := range []string{"payment", "inventory", "shipping", "notification"} {
		svc, err := reference.Service(context.Background(), env.JS(), streams.Topology{}, name, sim.Faults{}, reference.CallbacksVia(env.JS()))
		if err != nil {
			t.Fatal(err)
		}
		for action, h := range svc.Handlers {
			env.Stub(workflow.Activity{Service: svc.Name, Action: action}, h.Handle)
		}
	}
	env.Run()
	orders := map[string]map[string]string{
		"completed":            {"pickup": "at_creation"},
		"completed-pickup":     {"pickup": "1ms"},
		"declined":             {"payment": "decline"},
		"out-of-stock":         {"inventory": "out_of_stock", "refund": "fail_n:2"},
		"shipping-rejected":    {"shipping": "fail"},
		"pickup-deadline":      {"pickup": "never"},
		"refund-fails-always":  {"shipping": "fail", "refund": "fail_always"},
		"charge-retried-twice": {"payment": "fail_n:2", "pickup": "at_creation"},
		// Written before SettleTimedOutSteps: a timed-out charge was not
		// compensated.
		"charge-timed-out-before-settling": {"payment": "timeout"},
		// Since: the charge made and timed out is refunded by its key.
		"charge-timed-out": {"payment": "timeout_after_effect"},
		// Cancelled while its charge is out (made, not yet answered):
		// written before a cancelled step was settled, and since.
		"cancelled-while-charging-before-settling": {"payment": "timeout_after_effect"},
		"cancelled-while-charging":                 {"payment": "timeout_after_effect"},
	}
	for name, sim := range orders {
		env.Start(fulfillment.WorkflowType, name, fulfillment.Order{
			OrderID: name, CustomerID: "c-1", AmountCents: 4200, Currency: "EUR",
			Items: []inventory.Item{{SKU: "sku-1", Qty: 1}}, Simulate: sim,
		})
	}
	for name := range orders {
		if strings.HasPrefix(name, "cancelled-while-charging") {
			env.WaitFor(name, func(d *orchestrator.Description) bool { return len(d.Waiting) == 1 })
			if _, err := orchestrator.Cancel(context.Background(), env.JS(), name, orchestrator.Request{Identity: "golden", Reason: "customer asked"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every other order ends before the clock jumps past the deadline.
	for name := range orders {
		if name != "pickup-deadline" {
			env.Wait(name)
		}
	}
	env.WaitFor("pickup-deadline", func(d *orchestrator.Description) bool { return len(d.Timers) == 1 })
	env.Advance(73 * time.Hour)
	for name := range orders {
		d := env.Wait(name)
		if d.Status == schema.StatusBlocked {
			t.Fatalf("%s blocked: %s", name, d.Reason)
		}
		path := filepath.Join(historiesDir, name+".json")
		if _, err := os.Stat(path); err == nil && os.Getenv("JETFLOW_WRITE_HISTORIES") != "all" {
			continue
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ") // as `jetflow show --output json`
		if err := enc.Encode(d); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", name, d.Status)
	}
}
