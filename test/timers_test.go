package test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// timerStack is a stack whose orchestrators run on a clock the test moves.
func timerStack(t *testing.T) (*stack, *orchestrator.ManualClock) {
	s := newStack(t)
	clock := &orchestrator.ManualClock{}
	s.clock = clock
	return s, clock
}

// order is a completing order whose simulate map is extended with extra.
func order(prefix string, i int, extra map[string]string) fulfillment.Order {
	o, _ := fulfillment.MixedOrder(prefix, 40+i%60) // indices 40..99 of the mix all complete
	o.OrderID = fmt.Sprintf("%s%05d", prefix, i)
	o.Simulate = extra
	return o
}

// waitingForPickup reports whether the workflow waits on its pickup timer.
func (s *stack) waitingForPickup(id string) bool {
	d, err := orchestrator.Describe(context.Background(), streams.NewHistory(s.env.NC, s.env.JS), id)
	return err == nil && len(d.Timers) == 1 && len(d.Waiting) == 0
}

func (s *stack) history(id string) []streams.Event {
	s.t.Helper()
	evs, err := streams.NewHistory(s.env.NC, s.env.JS).Read(context.Background(), id, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	return evs
}

func countKind[T schema.Kinded](evs []streams.Event) int {
	n := 0
	for _, ev := range evs {
		if _, ok := ev.Value.(T); ok {
			n++
		}
	}
	return n
}

// TestPickupDeadlinesSurviveAFullRestart: 1,000 orders wait for the carrier.
// Pickups for 300 of them are signalled while no orchestrator runs; then
// everything stops, nats-server included. After the restart the clock moves
// 3 days: the 300 complete, the 700 hit their deadline once and are
// compensated, and the cancelled timers never fire.
func TestPickupDeadlinesSurviveAFullRestart(t *testing.T) {
	t.Parallel() // a server of its own
	const n, picked = 1000, 300
	s, clock := timerStack(t)
	orch := s.orchestrator()
	s.participants()
	var ids []string
	for i := 0; i < n; i++ {
		o := order("pk-", i, map[string]string{"pickup": "never"})
		s.publishOrder(o)
		ids = append(ids, o.OrderID)
	}
	began := time.Now()
	defer func() { t.Logf("total %s", time.Since(began)) }()
	// Every order waits for its pickup; the bucket holds every timer.
	kv, err := s.env.JS.KeyValue(context.Background(), streams.TimersBucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 4*time.Minute, func() bool {
		keys, err := kv.ListKeys(context.Background())
		if err != nil {
			return false
		}
		count := 0
		for range keys.Keys() {
			count++
		}
		return count == n
	}, "the timers bucket does not hold %d pickup deadlines", n)
	d := s.describe(ids[0])
	if len(d.Timers) != 1 || d.Timers[0].Duration != 72*time.Hour || time.Until(d.Timers[0].Due) < 71*time.Hour {
		t.Fatalf("show lists timers %+v, want one 72h deadline", d.Timers)
	}
	if e, err := kv.Get(context.Background(), d.Timers[0].Key); err != nil || !strings.Contains(string(e.Value()), ids[0]) {
		t.Fatalf("timer %s not in the bucket: %v", d.Timers[0].Key, err)
	}

	t.Logf("%d orders waiting for pickup after %s", n, time.Since(began))
	// The carrier picks up 300 parcels while no orchestrator runs.
	orch.stop(t)
	for _, id := range ids[:picked] {
		s.publish(streams.SignalSubject("carrier.picked_up", id), []byte(`{"carrier":"DHL"}`), nil)
	}
	s.restart()
	s.orchestrator()
	s.participants()
	st := s.waitSettled(ids[:picked], 2*time.Minute)
	for _, id := range ids[:picked] {
		if st[id] != schema.StatusCompleted {
			t.Fatalf("%s picked up before the outage is %s", id, st[id])
		}
	}

	t.Logf("restarted, %d pickups honoured after %s", picked, time.Since(began))
	clock.Advance(72*time.Hour + time.Minute)
	st = s.waitSettled(ids, 4*time.Minute)
	t.Logf("deadlines fired and compensated after %s", time.Since(began))
	for i, id := range ids {
		want := schema.StatusCompensated
		if i < picked {
			want = schema.StatusCompleted
		}
		if st[id] != want {
			t.Errorf("%s: %s, want %s", id, st[id], want)
		}
	}
	// Each deadline fired exactly once as the workflow sees it, and the
	// cancelled ones never fired into the history.
	for i, id := range ids {
		evs := s.history(id)
		fired := countKind[*schema.TimerFired](evs)
		if i < picked && fired != 0 {
			t.Errorf("%s: cancelled timer fired %d times", id, fired)
		}
		if i >= picked && fired != 1 {
			t.Errorf("%s: deadline fired %d times", id, fired)
		}
	}
	orders := map[string]fulfillment.Order{}
	for i, id := range ids {
		orders[id] = order("pk-", i, nil)
	}
	s.checkInvariants(orders, st)
	kv, err = s.env.JS.KeyValue(context.Background(), streams.TimersBucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, func() bool {
		keys, err := kv.ListKeys(context.Background())
		if err != nil {
			return false
		}
		for range keys.Keys() {
			return false
		}
		return true
	}, "timers left in the bucket after every workflow finished")
}

// TestSignalAndDeadlineAtTheSameInstant races the pickup signal against the
// deadline: each workflow takes exactly one branch, its ledgers agree with
// it, and replaying its history takes the same branch.
func TestSignalAndDeadlineAtTheSameInstant(t *testing.T) {
	const n = 40
	s, clock := timerStack(t)
	s.orchestrator()
	s.participants()
	var ids []string
	for i := 0; i < n; i++ {
		o := order("race-", i, map[string]string{"pickup": "never"})
		s.publishOrder(o)
		ids = append(ids, o.OrderID)
	}
	natstest.Eventually(t, time.Minute, func() bool {
		for _, id := range ids {
			if !s.waitingForPickup(id) {
				return false
			}
		}
		return true
	}, "orders not waiting for pickup")
	// Half the pickups are sent just before the deadline passes, half just
	// after: around the instant, both orders are possible.
	for _, id := range ids[:n/2] {
		s.publish(streams.SignalSubject("carrier.picked_up", id), nil, nil)
	}
	clock.Advance(72 * time.Hour)
	for _, id := range ids[n/2:] {
		s.publish(streams.SignalSubject("carrier.picked_up", id), nil, nil)
	}
	st := s.waitSettled(ids, 2*time.Minute)

	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{Steps: fastSteps, Compensation: fastCompensation})
	fn, _ := reg.Lookup(fulfillment.WorkflowType)
	led := s.ledgers()
	branches := map[schema.Status]int{}
	for _, id := range ids {
		branches[st[id]]++
		k := kinds(led[id])
		switch st[id] {
		case schema.StatusCompleted:
			if k["cancel"] != 0 || k["refund"] != 0 {
				t.Errorf("%s completed but was also undone: %v", id, k)
			}
		case schema.StatusCompensated:
			if k["cancel"] != 1 || k["refund"] != 1 {
				t.Errorf("%s compensated but ledgers say %v", id, k)
			}
		default:
			t.Errorf("%s: %s", id, st[id])
		}
		// Replay the history without its end: the code must decide the same end.
		var evs []workflow.Event
		var recorded *schema.WorkflowFinished
		for _, ev := range s.history(id) {
			if f, ok := ev.Value.(*schema.WorkflowFinished); ok {
				recorded = f
				continue
			}
			evs = append(evs, workflow.Event{Seq: ev.Seq, Time: ev.Time, Value: ev.Value})
		}
		out := workflow.Replay(fn, id, evs, nil)
		if out.Blocked != nil || out.Finished == nil || out.Finished.Status != recorded.Status || len(out.Decisions) != 0 {
			t.Errorf("%s: replay decided %+v %v, history says %s", id, out.Finished, out.Blocked, recorded.Status)
		}
	}
	t.Logf("branches taken: %v", branches)
}

// TestLateSettlementIsRefunded: a payment that answers "pending" and settles
// after the 48h deadline is voided, the order compensated, and the late
// settlement refunded; one that settles in time completes.
func TestLateSettlementIsRefunded(t *testing.T) {
	s, clock := timerStack(t)
	s.faults = sim.Faults{}
	s.orchestrator()
	s.participants()
	late := order("pay-", 1, map[string]string{"payment": "pending_then_settle:3s", "pickup": ""})
	inTime := order("pay-", 2, map[string]string{"payment": "pending_then_settle:50ms"})
	s.publishOrder(late)
	s.publishOrder(inTime)
	natstest.Eventually(t, time.Minute, func() bool {
		d, err := orchestrator.Describe(context.Background(), streams.NewHistory(s.env.NC, s.env.JS), late.OrderID)
		return err == nil && len(d.Timers) == 1
	}, "late order not waiting for its settlement")
	if st := s.waitSettled([]string{inTime.OrderID}, time.Minute); st[inTime.OrderID] != schema.StatusCompleted {
		t.Fatalf("order settled in time is %s", st[inTime.OrderID])
	}
	clock.Advance(48*time.Hour + time.Minute)
	st := s.waitSettled([]string{late.OrderID, inTime.OrderID}, time.Minute)
	if st[late.OrderID] != schema.StatusCompensated || st[inTime.OrderID] != schema.StatusCompleted {
		t.Fatalf("late %s, in time %s", st[late.OrderID], st[inTime.OrderID])
	}
	balance := func(id string) (int64, map[string]int) { return paymentBalance(t, s.env.JS, id) }
	natstest.Eventually(t, time.Minute, func() bool {
		b, _ := balance(late.OrderID)
		return b == 0
	}, "the late settlement was kept")
	_, k := balance(late.OrderID)
	if k["void"] != 1 || k["settle"] != 1 || k["refund"] != 1 {
		t.Fatalf("late order payment ledger %v, want void, settle and one refund", k)
	}
	if b, _ := balance(inTime.OrderID); b != inTime.AmountCents {
		t.Fatalf("in-time order balance %d, want %d", b, inTime.AmountCents)
	}
	// The late signal is also a dead letter, with its reason.
	natstest.Eventually(t, 30*time.Second, func() bool {
		for _, r := range s.deadLetters(streams.DeadLetterSubject("signal")) {
			if strings.Contains(r, "finished workflow "+late.OrderID) {
				return true
			}
		}
		return false
	}, "late settlement not dead-lettered")
}

// TestSignalsForUnknownAndFinishedWorkflows go to dead-letter; a signal sent
// before the workflow waits for it is kept.
func TestSignalsForUnknownAndFinishedWorkflows(t *testing.T) {
	s, _ := timerStack(t)
	s.orchestrator()
	s.participants()
	s.publish(streams.SignalSubject("carrier.picked_up", "nobody"), []byte(`{}`), nil)
	s.publish(streams.SignalSubject("carrier.picked_up", "bad-json"), []byte(`{"x":`), nil)

	// The pickup is signalled before the order even exists as a workflow
	// that waits: it is kept until the workflow waits.
	early := order("early-", 1, map[string]string{"pickup": "never"})
	s.publishOrder(early)
	natstest.Eventually(t, 30*time.Second, func() bool { return len(s.history(early.OrderID)) > 0 }, "not started")
	s.publish(streams.SignalSubject("carrier.picked_up", early.OrderID), []byte(`{"carrier":"UPS"}`), nil)
	if st := s.waitSettled([]string{early.OrderID}, time.Minute); st[early.OrderID] != schema.StatusCompleted {
		t.Fatalf("early-signalled order %s", st[early.OrderID])
	}
	s.publish(streams.SignalSubject("carrier.picked_up", early.OrderID), []byte(`{"again":true}`), nil)

	var reasons []string
	natstest.Eventually(t, 30*time.Second, func() bool {
		reasons = s.deadLetters(streams.DeadLetterSubject("signal"))
		return len(reasons) == 3
	}, "dead letters %v", reasons)
	for _, want := range []string{"unknown workflow nobody", "invalid JSON payload", "finished workflow " + early.OrderID} {
		if !strings.Contains(strings.Join(reasons, "\n"), want) {
			t.Errorf("no dead letter with %q in %v", want, reasons)
		}
	}
	d := s.describe(early.OrderID)
	raw, _ := json.Marshal(d.History)
	if !strings.Contains(string(raw), `"carrier":"UPS"`) {
		t.Errorf("signal payload not in the history")
	}
}

// TestPickupAtCreationNeedsNoWait: a carrier that takes the parcel as the
// shipment is created sends no signal, and the order completes without a
// pickup timer: four commands, their results, nothing else.
func TestPickupAtCreationNeedsNoWait(t *testing.T) {
	s := newStack(t)
	s.faults = sim.Faults{}
	s.orchestrator()
	s.participants()
	o := order("atc-", 1, map[string]string{"pickup": "at_creation"})
	s.publishOrder(o)
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("order is %s, want completed", st[o.OrderID])
	}
	var kinds []string
	for _, e := range s.describe(o.OrderID).History {
		kinds = append(kinds, e.Type)
	}
	want := "workflow.started" + strings.Repeat(",command,result", 4) + ",workflow.finished"
	if got := strings.Join(kinds, ","); got != want {
		t.Fatalf("history %s, want %s", got, want)
	}
}
