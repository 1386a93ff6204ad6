package chaos

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
)

// TestParticipantKilledAfterEffect kills participants right after their
// handler did the external effect (the simulated gateway charged the card,
// the warehouse reserved, the carrier shipped) and before the result is
// recorded and published. The command is redelivered after the ack wait to
// the restarted process, which runs the handler again: the external system
// recognizes the idempotency key and nothing happens twice.
func TestParticipantKilledAfterEffect(t *testing.T) {
	h := newHarness(t, seedFor(t, 7), serverOptions{})
	orders := mix("pae-", 60, false)
	h.orchestrator("o1", nil)
	kills := map[string][]int{
		"payment":   {1 + h.rng.Intn(15), 1 + h.rng.Intn(15), 1 + h.rng.Intn(15)},
		"inventory": {1 + h.rng.Intn(20)},
		"shipping":  {1 + h.rng.Intn(20)},
	}
	h.logf("exit after the effect at hits %v", kills)
	parts := map[string]*role{}
	for _, svc := range []string{"payment", "inventory", "shipping", "notification"} {
		var specs []string
		for _, k := range kills[svc] {
			specs = append(specs, fmt.Sprintf("participant.after-effect=exit@%d", k))
		}
		parts[svc] = h.participant(svc, svc, firstStarts(specs...))
	}
	orders = h.publishAll(orders)
	for svc, ks := range kills {
		h.eventually(90*time.Second, svc+" did not die after its effects", func() bool { return failpointExits(parts[svc]) >= len(ks) })
		for range ks {
			h.fault("participant exit after effect", svc)
		}
	}
	rep := h.settleAndCheck(orders, settleBound)
	if c := h.crashes(); len(c) > 0 {
		t.Errorf("processes crashed: %v", c)
	}
	// The charges whose first attempt died were answered by a later one.
	ctx := context.Background()
	effects, err := sim.List(ctx, h.js, "payment", "")
	if err != nil {
		t.Fatal(err)
	}
	retried := 0
	for _, e := range effects {
		if e.Kind != "charge" {
			continue
		}
		for _, ev := range h.history(e.OrderID) {
			if r, ok := ev.Value.(*schema.Result); ok && r.Action == "charge" && r.Attempts > 1 {
				retried++
			}
		}
	}
	h.logf("%d charges were answered by a redelivery after their participant died; %s", retried, rep)
	if retried == 0 {
		t.Errorf("no charge was answered by a redelivered command: the fault did not hit a charge")
	}
}

// TestKillRandomly kills engine processes with SIGKILL at random moments
// under load: two orchestrators and the four participants, one victim every
// few hundred milliseconds, restarted after a random pause.
func TestKillRandomly(t *testing.T) {
	h := newHarness(t, seedFor(t, 11), serverOptions{})
	orders := mix("rnd-", 150, false)
	victims := []*role{h.orchestrator("o1", nil), h.orchestrator("o2", nil)}
	for _, p := range h.participants() {
		victims = append(victims, p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := h.drive(ctx, orders, 40*time.Millisecond)
	stop := time.Now().Add(7 * time.Second)
	for time.Now().Before(stop) {
		time.Sleep(time.Duration(200+h.rng.Intn(600)) * time.Millisecond)
		v := victims[h.rng.Intn(len(victims))]
		pause := time.Duration(h.rng.Intn(600)) * time.Millisecond
		if !v.alive() {
			continue
		}
		v.kill()
		h.fault("kill -9 "+v.kind, v.name)
		time.AfterFunc(pause, v.ensure)
	}
	orders = l.wait(orders)
	h.settleAndCheck(orders, settleBound)
	if c := h.crashes(); len(c) > 0 {
		t.Errorf("processes crashed: %v", c)
	}
}

// TestZombieOrchestrator freezes an orchestrator (and a payment
// participant) with SIGSTOP past the ack wait under load, so their
// deliveries go to the others, then thaws them: everything the zombies
// decided before they froze is stale, their late appends lose the fence,
// and nothing happens twice.
func TestZombieOrchestrator(t *testing.T) {
	t.Run("sigstop", func(t *testing.T) {
		h := newHarness(t, seedFor(t, 13), serverOptions{})
		orders := mix("zmb-", 150, false)
		o1 := h.orchestrator("o1", nil)
		h.orchestrator("o2", nil)
		parts := h.participants()
		p2 := h.participant("payment-2", "payment", nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		l := h.drive(ctx, orders, 30*time.Millisecond)
		for round := 0; round < 2; round++ {
			time.Sleep(time.Duration(300+h.rng.Intn(700)) * time.Millisecond)
			frozen := time.Duration(3*ackWait) + time.Duration(h.rng.Intn(1000))*time.Millisecond
			pay := []*role{parts["payment"], p2}[round%2]
			o1.signal(syscall.SIGSTOP)
			pay.signal(syscall.SIGSTOP)
			h.fault("zombie orchestrator (SIGSTOP past the ack wait)", o1.name+" for "+frozen.Round(time.Millisecond).String())
			h.fault("zombie participant (SIGSTOP past the ack wait)", pay.name+" for "+frozen.Round(time.Millisecond).String())
			time.Sleep(frozen)
			o1.signal(syscall.SIGCONT)
			pay.signal(syscall.SIGCONT)
		}
		orders = l.wait(orders)
		h.settleAndCheck(orders, settleBound)
		if c := h.crashes(); len(c) > 0 {
			t.Errorf("processes crashed: %v", c)
		}
	})

	// A deterministic stale write: each orchestrator pauses right before
	// one of its appends for longer than the ack wait, holding a decision
	// made on the history as it was. Meanwhile the event is redelivered and
	// the other one decides. When the paused one goes on, its append names a
	// last sequence that is no longer the last: the server refuses it.
	t.Run("paused-before-append", func(t *testing.T) {
		h := newHarness(t, seedFor(t, 17), serverOptions{})
		orders := mix("stale-", 60, false)
		n1, n2 := 5+h.rng.Intn(40), 5+h.rng.Intn(40)
		pause := 3 * ackWait
		o1 := h.orchestrator("o1", firstStarts(fmt.Sprintf("orchestrator.before-append=sleep(%s)@%d", pause, n1)))
		o2 := h.orchestrator("o2", firstStarts(fmt.Sprintf("orchestrator.before-append=sleep(%s)@%d", pause, n2)))
		h.participants()
		orders = h.publishAll(orders)
		for _, o := range []*role{o1, o2} {
			h.eventually(30*time.Second, o.name+" did not pause before an append", func() bool {
				return h.logContains(o.name, "failpoint orchestrator.before-append: sleep")
			})
			h.fault("orchestrator paused before an append past the ack wait", o.name)
		}
		h.settleAndCheck(orders, settleBound)
		if c := h.crashes(); len(c) > 0 {
			t.Errorf("processes crashed: %v", c)
		}
	})
}

// TestCompensationFailsForGood: compensations that fail on every attempt
// end the order in manual with a reason naming the failed step, after the
// compensation retry policy ran out; never a silent success. The
// orchestrator is also killed once while the retries run.
func TestCompensationFailsForGood(t *testing.T) {
	t.Parallel()
	h := newHarness(t, seedFor(t, 19), serverOptions{})
	base := mix("man-", 40, false)
	var orders []Expected
	add := func(i int, sim map[string]string, want schema.Status) {
		e := base[i]
		e.Order.Simulate, e.Want = sim, want
		orders = append(orders, e)
	}
	for i := 0; i < 3; i++ {
		add(i, map[string]string{"shipping": "fail", "refund": "fail_always"}, schema.StatusManual)
		add(3+i, map[string]string{"shipping": "fail", "release": "fail_always"}, schema.StatusManual)
		add(6+i, map[string]string{"inventory": "out_of_stock", "refund": "fail_n:3"}, schema.StatusCompensated)
	}
	o := h.orchestrator("o1", nil)
	h.participants()
	orders = h.publishAll(orders)
	time.Sleep(time.Duration(2000+h.rng.Intn(3000)) * time.Millisecond) // into the compensation retries
	o.kill()
	h.fault("kill -9 orchestrator", o.name)
	o.start()
	h.settleAndCheck(orders, manualBound)
	for _, e := range orders {
		if e.Want != schema.StatusManual {
			continue
		}
		refund := e.Order.Simulate["refund"] == "fail_always"
		step, system, kind := "inventory.release", "inventory", "release"
		if refund {
			step, system, kind = "payment.refund", "payment", "refund"
		}
		var reason string
		attempts := 0
		for _, ev := range h.history(e.Order.OrderID) {
			switch v := ev.Value.(type) {
			case *schema.WorkflowFinished:
				reason = v.Reason
			case *schema.Result:
				if v.Service+"."+v.Action == step && v.Error != nil {
					attempts = v.Attempts
				}
			}
		}
		if !containsAll(reason, "compensation failed", step, "gateway_error") {
			t.Errorf("%s: manual reason %q does not name the failed %s", e.Order.OrderID, reason, step)
		}
		if attempts != 8 {
			t.Errorf("%s: %s gave up after %d attempts, the policy allows 8", e.Order.OrderID, step, attempts)
		}
		effects, err := sim.List(context.Background(), h.js, system, e.Order.OrderID)
		if err != nil {
			t.Fatal(err)
		}
		for _, ef := range effects {
			if ef.Kind == kind {
				t.Errorf("%s: the %s ledger shows a %s that the workflow reports as failed", e.Order.OrderID, system, kind)
			}
		}
	}
}
