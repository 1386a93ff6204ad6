package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
)

// TestKillWhileCancelledOrdersCompensate: orders wait for a carrier that
// never comes; an operator cancels them all while the orchestrator is armed
// to die (exit 137) right after its k-th append, part way through the
// compensations the cancels start. The supervisor restarts it; every order
// ends cancelled with everything undone once, and each history replays to
// the same end.
func TestKillWhileCancelledOrdersCompensate(t *testing.T) {
	h := newHarness(t, seedFor(t, 9), serverOptions{})
	orders := neverPickedUp("cxl-", 10)
	for i := range orders {
		orders[i].Want = schema.StatusCancelled
	}
	o := h.orchestrator("o1", nil)
	h.participants()
	orders = h.publishAll(orders)
	h.eventually(90*time.Second, "orders did not all wait for their pickup", func() bool {
		for _, e := range orders {
			waiting := false
			for _, ev := range h.history(e.Order.OrderID) {
				if _, ok := ev.Value.(*schema.TimerStarted); ok {
					waiting = true
				}
			}
			if !waiting {
				return false
			}
		}
		return true
	})
	k := 1 + h.rng.Intn(15)
	h.logf("orchestrator.after-append: exit at hit %d after the cancels", k)
	o.kill()
	o.arm(fmt.Sprintf("orchestrator.after-append=exit@%d", k))
	o.start()
	for _, e := range orders {
		if _, err := orchestrator.Cancel(context.Background(), h.js, e.Order.OrderID, orchestrator.Request{Identity: "chaos", Reason: "cancel under faults"}); err != nil {
			t.Fatalf("cancel %s: %v", e.Order.OrderID, err)
		}
	}
	h.eventually(60*time.Second, "the orchestrator did not die while the cancelled orders compensate", func() bool { return failpointExits(o) >= 1 })
	h.fault("orchestrator exit while cancelled orders compensate", "o1")
	h.settleAndCheck(orders, settleBound)
}
