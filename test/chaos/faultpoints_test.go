package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestKillAtFaultPoints kills an orchestrator with exit 137 (as kill -9
// would: nothing flushed, nothing deferred) exactly at each of its fault
// points, under load, restarts it, and checks every invariant.
func TestKillAtFaultPoints(t *testing.T) {
	seed := seedFor(t, 4)
	for i, point := range []string{"orchestrator.before-append", "orchestrator.after-append"} {
		t.Run(point, func(t *testing.T) {
			h := newHarness(t, seed+int64(i), serverOptions{})
			orders := mix(fmt.Sprintf("fp%d-", i), 60, false)
			// Killed twice at the point: the n-th hit of the first start, then
			// of the second; the third start runs clean.
			k1, k2 := 10+h.rng.Intn(100), 5+h.rng.Intn(60)
			h.logf("%s: exit at hit %d, then at hit %d of the restarted process", point, k1, k2)
			o := h.orchestrator("o1", firstStarts(fmt.Sprintf("%s=exit@%d", point, k1), fmt.Sprintf("%s=exit@%d", point, k2)))
			h.participants()
			orders = h.publishAll(orders)
			h.eventually(60*time.Second, "the orchestrator did not die twice at "+point, func() bool { return failpointExits(o) >= 2 })
			h.fault("orchestrator exit at "+point, "o1")
			h.fault("orchestrator exit at "+point, "o1")
			h.settleAndCheck(orders, settleBound)
			if c := h.crashes(); len(c) > 0 {
				t.Errorf("processes crashed: %v", c)
			}
		})
	}

	// Part way through a decision of several messages: the reference
	// order's decision after the carrier's signal is the timer's
	// cancellation and the notify command. The orchestrator dies after the
	// first is stored; the next replay finds it recorded and issues the
	// notification alone.
	t.Run("history.mid-append", func(t *testing.T) {
		h := newHarness(t, seed+5, serverOptions{})
		orders := mix("mid-", 40, false)
		k1, k2 := 1+h.rng.Intn(10), 1+h.rng.Intn(5)
		h.logf("exit at hit %d, then at hit %d of the restarted process", k1, k2)
		o := h.orchestrator("o1", firstStarts(fmt.Sprintf("history.mid-append=exit@%d", k1), fmt.Sprintf("history.mid-append=exit@%d", k2)))
		h.participants()
		orders = h.publishAll(orders)
		h.eventually(60*time.Second, "the orchestrator did not die twice mid-append", func() bool { return failpointExits(o) >= 2 })
		h.fault("orchestrator exit part way through a decision", "o1")
		h.fault("orchestrator exit part way through a decision", "o1")
		h.settleAndCheck(orders, settleBound)
		for _, e := range orders {
			if e.Want != schema.StatusCompleted {
				continue
			}
			var tail []string
			for _, ev := range h.history(e.Order.OrderID) {
				tail = append(tail, string(ev.Kind))
			}
			if n := len(tail); n < 4 || strings.Join(tail[n-4:], ",") != "timer.cancelled,command,result,workflow.finished" {
				t.Errorf("%s: history ends %v, want the cancellation, the notification and its result, the end", e.Order.OrderID, tail)
			}
		}
	})

	// After a timer's start is appended and before it is put in the timers
	// bucket, the orchestrator dies; the event that led to it is
	// redelivered to another orchestrator that has the workflow cached and
	// reads the timer from the history. It must put the timer in the bucket
	// itself, or the deadline never fires and the order waits forever.
	t.Run("after-append-timer-to-a-warm-peer", func(t *testing.T) {
		h := newHarness(t, seed+30, serverOptions{})
		orders := neverPickedUp("warm-", 20)
		// o2 alone takes every order to its shipment, so it has them all
		// cached; its clock runs 73 h ahead, so it fires 72 h deadlines at
		// once.
		h.clockOrchestrator("o2-clock", 73*time.Hour, nil)
		for _, svc := range []string{"payment", "inventory", "notification"} {
			h.participant(svc, svc, nil)
		}
		orders = h.publishAll(orders)
		h.eventually(60*time.Second, "orders did not all reach their shipment", func() bool {
			for _, e := range orders {
				cmds := 0
				for _, ev := range h.history(e.Order.OrderID) {
					if c, ok := ev.Value.(*schema.Command); ok && c.Service == "shipping" {
						cmds++
					}
				}
				if cmds == 0 {
					return false
				}
			}
			return true
		})
		// o1 (not restarted) dies after its first append: the pickup timer's
		// start of whichever order's shipment result it takes first.
		o1 := h.newRole("orchestrator", "o1", bin.jetflow, h.engineArgs("orchestrator"), false)
		o1.env = failpoints(firstStarts("orchestrator.after-append=exit@1"))
		o1.start()
		h.eventually(30*time.Second, "o1 is not pulling", func() bool {
			c, err := h.js.Consumer(context.Background(), streams.HistoryStream, streams.OrchestratorConsumer)
			if err != nil {
				return false
			}
			info, err := c.Info(context.Background())
			return err == nil && info.NumWaiting >= 2
		})
		h.participant("shipping", "shipping", nil)
		h.eventually(60*time.Second, "o1 did not die after its first append", func() bool { return failpointExits(o1) >= 1 })
		h.fault("orchestrator exit after appending a timer, before putting it in the bucket", "o1")
		h.settleAndCheck(orders, settleBound)
	})

	// Between two compensations: a rejected shipment is undone by a
	// release, then a refund. The orchestrator dies right after appending
	// the release (its 4th decision: charge, reserve, ship, release) and
	// before acking the event that led to it.
	t.Run("between-compensations", func(t *testing.T) {
		h := newHarness(t, seed+10, serverOptions{})
		orders := mix("comp-", 1, false)
		orders[0].Order.Simulate = map[string]string{"shipping": "fail"}
		orders[0].Want = schema.StatusCompensated
		o := h.orchestrator("o1", firstStarts("orchestrator.after-append=exit@4"))
		h.participants()
		orders = h.publishAll(orders)
		h.eventually(30*time.Second, "the orchestrator did not die at its 4th append", func() bool { return failpointExits(o) >= 1 })
		h.fault("orchestrator exit between compensations", "o1")
		h.settleAndCheck(orders, settleBound)
		var steps []string
		for _, ev := range h.history(orders[0].Order.OrderID) {
			if c, ok := ev.Value.(*schema.Command); ok {
				steps = append(steps, c.Service+"."+c.Action)
			}
		}
		if got, want := strings.Join(steps, ","), "payment.charge,inventory.reserve,shipping.create,inventory.release,payment.refund,notification.notify"; got != want {
			t.Errorf("commands %s, want %s", got, want)
		}
	})

	// While a timer fires: orders wait for a carrier that never comes; an
	// orchestrator whose clock runs 73 h ahead fires their 72 h pickup
	// deadlines at once and dies after a fire is appended and before the
	// timer's bucket entry is deleted. The restarted one fires the leftover
	// entries again: the server refuses the second fire, and each deadline
	// counts once.
	t.Run("timers.after-fire", func(t *testing.T) {
		h := newHarness(t, seed+20, serverOptions{})
		orders := neverPickedUp("tmr-", 20)
		k1, k2 := 1+h.rng.Intn(8), 1+h.rng.Intn(5)
		h.logf("timers.after-fire: exit at fire %d, then at fire %d of the restarted process", k1, k2)
		o := h.clockOrchestrator("o1-clock", 73*time.Hour, firstStarts(fmt.Sprintf("timers.after-fire=exit@%d", k1), fmt.Sprintf("timers.after-fire=exit@%d", k2)))
		h.participants()
		orders = h.publishAll(orders)
		h.eventually(90*time.Second, "the orchestrator did not die twice while firing timers", func() bool { return failpointExits(o) >= 2 })
		h.fault("orchestrator exit while a timer fires", "o1-clock")
		h.fault("orchestrator exit while a timer fires", "o1-clock")
		h.settleAndCheck(orders, settleBound)
		for _, e := range orders {
			fired := 0
			for _, ev := range h.history(e.Order.OrderID) {
				if _, ok := ev.Value.(*schema.TimerFired); ok {
					fired++
				}
			}
			if fired != 1 {
				t.Errorf("%s: deadline fired %d times in the history", e.Order.OrderID, fired)
			}
		}
		// Every fired timer's entry is gone from the bucket in the end.
		kv, err := h.js.KeyValue(context.Background(), "jetflow_timers")
		if err != nil {
			t.Fatal(err)
		}
		h.eventually(30*time.Second, "timer entries left in the bucket", func() bool {
			keys, err := kv.ListKeys(context.Background())
			if err != nil {
				return false
			}
			for range keys.Keys() {
				return false
			}
			return true
		})
	})
}

// neverPickedUp returns n completing orders of the mix whose carrier never
// comes: each ends compensated when its 72 h pickup deadline fires.
func neverPickedUp(prefix string, n int) []Expected {
	var orders []Expected
	for _, e := range mix(prefix, 3*n, false) {
		if e.Want == schema.StatusCompleted && len(orders) < n {
			e.Order.Simulate = map[string]string{"pickup": "never"}
			e.Want = schema.StatusCompensated
			orders = append(orders, e)
		}
	}
	return orders
}
