package fulfillment_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/schema"
)

// Every saved order, decided after each of its events with the workflow
// kept live between decisions, decides exactly as a full replay of the
// history so far, and the live workflow takes most of those decisions.
func TestGoldenHistoriesDecideTheSameKeptLive(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(historiesDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no histories in %s (%v)", historiesDir, err)
	}
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	fn, _ := reg.Lookup(fulfillment.WorkflowType)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			file, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			id, evs, err := workflow.ReadHistoryJSON(file)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := workflowtest.CheckSticky(fn, id, evs, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Only the first decision and the cuts inside a decision's own
			// messages need a full replay; a cancel request adds two (its
			// step.cancelled and what the code decides after it are cut
			// apart).
			misses := 3
			for _, ev := range evs {
				if ev.Value != nil && ev.Value.Kind() == schema.KindCancelRequested {
					misses += 2
				}
			}
			if rep.Hits < rep.Decisions-misses {
				t.Fatalf("%+v: want most decisions taken by the live workflow", rep)
			}
			t.Logf("%+v", rep)
		})
	}
}
