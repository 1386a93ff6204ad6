package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// The parent and child workflows of the family orchestrator: the parent
// runs one child and returns what it returned.
const (
	familyParent = "chaos.parent"
	familyChild  = "chaos.child"
)

func familyRegistry() *workflow.Registry {
	reg := workflow.NewRegistry()
	workflow.Register(reg, familyChild, func(ctx workflow.Context, parent string) (string, error) {
		return "child of " + parent, nil
	})
	workflow.Register(reg, familyParent, func(ctx workflow.Context, _ struct{}) (string, error) {
		return workflow.ExecuteChild[string](ctx, workflow.ChildOptions{Type: familyChild}, workflow.WorkflowID(ctx))
	})
	return reg
}

func runFamilyOrchestrator() error {
	if err := failpoint.Enable(os.Getenv("JETFLOW_FAILPOINTS")); err != nil {
		return err
	}
	ctx, nc, js, done, err := chaosConnect("chaos family orchestrator")
	if err != nil {
		return err
	}
	defer done()
	o, err := orchestrator.New(orchestrator.Config{
		NC: nc, JS: js, Registry: familyRegistry(),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		AckWait: ackWait,
	})
	if err != nil {
		return err
	}
	return o.Run(ctx)
}

// familyOrchestrator starts the family orchestrator helper.
func (h *harness) familyOrchestrator(name string, fp func(n int) string) *role {
	base := []string{roleEnv + "=" + roleFamilyOrchestrator, "JETFLOW_CHAOS_NATS=" + h.url()}
	return h.selfOrchestrator(name, base, fp)
}

// TestKillWhileChildrenStartAndEnd kills the orchestrator (exit 137, as
// kill -9) between a parent's child-start decision and the child's start,
// and between a child's end and its record in the parent, twice each,
// while parents run one child each. Every child starts once, its end
// reaches its parent once, every parent completes with its child's result.
func TestKillWhileChildrenStartAndEnd(t *testing.T) {
	seed := seedFor(t, 9)
	for i, point := range []string{"orchestrator.before-child-start", "orchestrator.before-child-end"} {
		t.Run(point, func(t *testing.T) {
			h := newHarness(t, seed+int64(i), serverOptions{})
			const parents = 30
			k1, k2 := 3+h.rng.Intn(10), 1+h.rng.Intn(5)
			h.logf("%s: exit at hit %d, then at hit %d of the restarted process", point, k1, k2)
			o := h.familyOrchestrator("o1", firstStarts(fmt.Sprintf("%s=exit@%d", point, k1), fmt.Sprintf("%s=exit@%d", point, k2)))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ids := make([]string, parents)
			for n := range ids {
				ids[n] = "fam-" + strconv.Itoa(i) + "-" + strconv.Itoa(n)
				if _, err := orchestrator.Start(ctx, h.js, familyParent, ids[n], struct{}{}, "chaos"); err != nil {
					t.Fatal(err)
				}
			}
			h.eventually(60*time.Second, "the orchestrator did not die twice at "+point, func() bool { return failpointExits(o) >= 2 })
			h.fault("orchestrator exit at "+point, "o1")
			h.fault("orchestrator exit at "+point, "o1")
			hist := streams.NewHistory(h.nc, h.js)
			h.eventually(settleBound, "the parents did not all complete", func() bool {
				for _, id := range ids {
					d, err := orchestrator.Describe(ctx, hist, id)
					if err != nil || d.Status != schema.StatusCompleted {
						return false
					}
				}
				return true
			})
			for _, id := range ids {
				child := streams.ChildID(id, 1)
				count := map[schema.Kind]int{}
				var out schema.Raw
				for _, ev := range h.history(id) {
					count[ev.Kind]++
					if f, ok := ev.Value.(*schema.WorkflowFinished); ok {
						out = f.Output
					}
				}
				var got string
				_ = schema.DecodeRaw(out, &got)
				if count[schema.KindChildStarted] != 1 || count[schema.KindChildEnded] != 1 || got != "child of "+id {
					t.Errorf("%s: %d child decisions, %d child ends, output %q: want one, one, %q",
						id, count[schema.KindChildStarted], count[schema.KindChildEnded], got, "child of "+id)
				}
				childCount := map[schema.Kind]int{}
				for _, ev := range h.history(child) {
					childCount[ev.Kind]++
				}
				if childCount[schema.KindWorkflowStarted] != 1 || childCount[schema.KindWorkflowFinished] != 1 {
					t.Errorf("%s: %d starts and %d ends: want one each", child, childCount[schema.KindWorkflowStarted], childCount[schema.KindWorkflowFinished])
				}
			}
			if c := h.crashes(); len(c) > 0 {
				t.Errorf("processes crashed: %v", c)
			}
		})
	}
}
