package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// recordedCharge is the result of the order's payment.charge in its history.
func (s *stack) recordedCharge(id string) payment.ChargeResult {
	s.t.Helper()
	for _, ev := range s.history(id) {
		if r, ok := ev.Value.(*schema.Result); ok && r.Service == payment.Name && r.Action == payment.Charge.Action {
			var c payment.ChargeResult
			if err := schema.DecodeRaw(r.Output, &c); err != nil {
				s.t.Fatal(err)
			}
			return c
		}
	}
	s.t.Fatalf("%s has no recorded charge", id)
	return payment.ChargeResult{}
}

// settle sends payment.settled to order id with body s, as anyone on the
// bus may, and returns its sequence in the signals stream.
func (s *stack) settle(id string, body payment.Settlement) uint64 {
	s.t.Helper()
	b, _ := json.Marshal(body)
	ack, err := s.env.JS.Publish(context.Background(), streams.SignalSubject(payment.SettledSignal, id), b)
	if err != nil {
		s.t.Fatal(err)
	}
	return ack.Sequence
}

// waitDeadLetter waits for a dead letter on subject whose reason has every
// one of parts, and returns it.
func (s *stack) waitDeadLetter(subject string, parts ...string) string {
	s.t.Helper()
	var found string
	natstest.Eventually(s.t, 30*time.Second, func() bool {
		for _, r := range s.deadLetters(subject) {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(r, p)
			}
			if ok {
				found = r
				return true
			}
		}
		return false
	}, "no dead letter on %s with %q", subject, parts)
	return found
}

// payments is the order's payment ledger by kind, and its refunds.
func (s *stack) payments(id string) (map[string]int, []sim.Effect) {
	s.t.Helper()
	effects, err := sim.List(context.Background(), s.env.JS, "payment", id)
	if err != nil {
		s.t.Fatal(err)
	}
	var refunds []sim.Effect
	for _, e := range effects {
		if e.Kind == "refund" {
			refunds = append(refunds, e)
		}
	}
	return kinds(effects), refunds
}

// completes publishes a plain order and waits until it completed: the
// system goes on after what was refused.
func (s *stack) completes(prefix string) { s.completesWithin(prefix, time.Minute, nil) }

func (s *stack) completesWithin(prefix string, d time.Duration, simulate map[string]string) {
	s.t.Helper()
	o := order(prefix, 1, simulate)
	s.publishOrder(o)
	if st := s.waitSettled([]string{o.OrderID}, d); st[o.OrderID] != schema.StatusCompleted {
		s.t.Fatalf("a plain order after the refusals is %s", st[o.OrderID])
	}
}

// TestForgedSettlementOfAPendingPaymentIsRefused: a payment.settled naming a
// bogus charge for 1 cent is not the settlement of the order's pending
// payment: it is dead-lettered with the field that differs, the order keeps
// waiting and ships nothing. The gateway's real settlement then completes
// the order, and a second one after the end is refused (already recorded)
// and refunds nothing.
func TestForgedSettlementOfAPendingPaymentIsRefused(t *testing.T) {
	s, _ := timerStack(t)
	s.faults = sim.Faults{}
	s.orchestrator()
	s.participants()
	o := order("fsp-", 1, map[string]string{"payment": "pending_then_settle:700h"})
	s.publishOrder(o)
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(o.OrderID) }, "order not waiting for its settlement")
	charge := s.recordedCharge(o.OrderID)

	s.settle(o.OrderID, payment.Settlement{OrderID: o.OrderID, ChargeID: "ch-bogus", AmountCents: 1, Currency: charge.Currency})
	s.waitDeadLetter(streams.DeadLetterSubject("signal"), `charge_id "ch-bogus" differs from the recorded pending charge "`+charge.ChargeID+`"`)
	// Refused before it was recorded: the order still waits, nothing shipped.
	if n := countKind[*schema.Signal](s.history(o.OrderID)); n != 0 {
		t.Fatalf("forged settlement recorded (%d signals in the history)", n)
	}
	if k := kinds(s.ledgers()[o.OrderID]); k["reserve"] != 0 || k["shipment"] != 0 {
		t.Fatalf("order went on after a forged settlement: %v", k)
	}
	s.settle(o.OrderID, payment.Settlement{OrderID: o.OrderID, ChargeID: charge.ChargeID, AmountCents: charge.AmountCents + 1, Currency: charge.Currency})
	s.waitDeadLetter(streams.DeadLetterSubject("signal"), fmt.Sprintf("amount_cents %d differs", charge.AmountCents+1))

	genuine := payment.Settlement{OrderID: o.OrderID, ChargeID: charge.ChargeID, AmountCents: charge.AmountCents, Currency: charge.Currency}
	s.settle(o.OrderID, genuine)
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("order settled by its gateway is %s", st[o.OrderID])
	}
	s.settle(o.OrderID, genuine)
	s.waitDeadLetter(streams.DeadLetterSubject("signal"), "finished workflow "+o.OrderID, "payment.settled for "+o.OrderID+" already recorded at history seq")
	if k, _ := s.payments(o.OrderID); k["refund"] != 0 {
		t.Fatalf("completed order refunded: %v", k)
	}
	s.completes("fsp-after-")
}

// TestLateSettlementRefundsExactlyTheRecordedChargeOnce: an order whose
// pending payment was voided at its deadline is compensated. Settlements
// that arrive afterwards naming another, completed order's charge, or an
// invented 99,999.99 USD charge, are dead-lettered and refund nothing; a
// user order squatting the ID the engine used to give the late workflow
// changes nothing; two genuine settlements refund the recorded charge
// once, by one late workflow in the engine's namespace.
func TestLateSettlementRefundsExactlyTheRecordedChargeOnce(t *testing.T) {
	s, clock := timerStack(t)
	s.faults = sim.Faults{}
	s.orchestrator()
	s.participants()
	done := order("lsr-", 1, nil)
	late := order("lsr-", 2, map[string]string{"payment": "pending_then_settle:700h", "pickup": ""})
	s.publishOrder(done)
	s.publishOrder(late)
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(late.OrderID) }, "order not waiting for its settlement")
	if st := s.waitSettled([]string{done.OrderID}, time.Minute); st[done.OrderID] != schema.StatusCompleted {
		t.Fatalf("plain order is %s", st[done.OrderID])
	}
	clock.Advance(48*time.Hour + time.Minute)
	if st := s.waitSettled([]string{late.OrderID}, time.Minute); st[late.OrderID] != schema.StatusCompensated {
		t.Fatalf("unsettled order is %s", st[late.OrderID])
	}
	other, own := s.recordedCharge(done.OrderID), s.recordedCharge(late.OrderID)

	// Another order's charge, and an invented one.
	s.settle(late.OrderID, payment.Settlement{OrderID: done.OrderID, ChargeID: other.ChargeID, AmountCents: other.AmountCents, Currency: other.Currency})
	s.waitDeadLetter(streams.DeadLetterSubject("signal"), "finished workflow "+late.OrderID, `order_id "`+done.OrderID+`" differs`)
	s.settle(late.OrderID, payment.Settlement{ChargeID: "ch-invented", AmountCents: 9999999, Currency: "USD"})
	s.waitDeadLetter(streams.DeadLetterSubject("signal"), "finished workflow "+late.OrderID, `charge_id "ch-invented" differs from the recorded pending charge "`+own.ChargeID+`"`)

	// A user order takes the ID the late workflow of the next signal had
	// before IDs were reserved: <order>-late-<signal's stream sequence>.
	info, err := s.env.JS.Stream(context.Background(), streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	next := info.CachedInfo().State.LastSeq + 1
	squat := order("x", 1, map[string]string{"payment": "decline"})
	squat.OrderID = late.OrderID + "-late-" + strconv.FormatUint(next, 10)
	s.publishOrder(squat)
	s.waitSettled([]string{squat.OrderID}, time.Minute)

	genuine := payment.Settlement{OrderID: late.OrderID, ChargeID: own.ChargeID, AmountCents: own.AmountCents, Currency: own.Currency}
	if seq := s.settle(late.OrderID, genuine); seq != next {
		t.Fatalf("settlement has sequence %d, the squatted ID says %d", seq, next)
	}
	s.settle(late.OrderID, genuine)
	s.waitDeadLetter(streams.DeadLetterSubject("signal"), "finished workflow "+late.OrderID, "already routed late to "+streams.ReservedIDPrefix+"late-"+late.OrderID)

	natstest.Eventually(t, time.Minute, func() bool {
		_, refunds := s.payments(late.OrderID)
		return len(refunds) > 0
	}, "genuine late settlement not refunded")
	var lateWorkflows []string
	for id, st := range s.statuses() {
		if strings.HasPrefix(id, streams.ReservedIDPrefix) {
			lateWorkflows = append(lateWorkflows, id+" "+string(st))
		}
	}
	if len(lateWorkflows) != 1 || !strings.HasPrefix(lateWorkflows[0], streams.ReservedIDPrefix+"late-"+late.OrderID+"-") {
		t.Fatalf("late workflows %v, want one for %s", lateWorkflows, late.OrderID)
	}
	s.completes("lsr-after-")

	// The ledgers: the late order's recorded charge refunded exactly once,
	// the completed order's never, nothing in USD.
	k, refunds := s.payments(late.OrderID)
	if len(refunds) != 1 || refunds[0].AmountCents != own.AmountCents || refunds[0].Currency != own.Currency || k["settle"] != 1 {
		t.Fatalf("late order payments %v, refunds %+v: want one refund of %d %s", k, refunds, own.AmountCents, own.Currency)
	}
	if k, _ := s.payments(done.OrderID); k["refund"] != 0 || k["charge"] != 1 {
		t.Fatalf("completed order refunded by another order's settlement: %v", k)
	}
	for id, effects := range s.ledgers() {
		for _, e := range effects {
			if e.Kind == "refund" && (e.Currency == "USD" || id != late.OrderID && id != squat.OrderID) {
				t.Errorf("unexpected refund %+v of %s", e, id)
			}
		}
	}
}

// TestSecondPickupIsDeadLettered: of 300 carrier.picked_up signals sent to
// one waiting order, one is recorded; the others are dead-lettered with
// the sequence of the recorded one, and the order completes once.
func TestSecondPickupIsDeadLettered(t *testing.T) {
	t.Parallel() // a server of its own
	const n = 300
	s, _ := timerStack(t)
	s.faults = sim.Faults{}
	s.orchestrator()
	s.participants()
	o := order("dup-", 1, map[string]string{"pickup": "never"})
	s.publishOrder(o)
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(o.OrderID) }, "order not waiting for pickup")
	for i := 0; i < n; i++ {
		if _, err := s.env.JS.PublishAsync(streams.SignalSubject("carrier.picked_up", o.OrderID), []byte(`{"carrier":"DHL"}`)); err != nil {
			t.Fatal(err)
		}
	}
	<-s.env.JS.PublishAsyncComplete()
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("order is %s", st[o.OrderID])
	}
	natstest.Eventually(t, time.Minute, func() bool { return len(s.deadLetters(streams.DeadLetterSubject("signal"))) == n-1 }, "not %d dead letters", n-1)
	var recorded []streams.Event
	for _, ev := range s.history(o.OrderID) {
		if _, ok := ev.Value.(*schema.Signal); ok {
			recorded = append(recorded, ev)
		}
	}
	if len(recorded) != 1 {
		t.Fatalf("%d pickups recorded, want 1", len(recorded))
	}
	for _, r := range s.deadLetters(streams.DeadLetterSubject("signal")) {
		if !strings.Contains(r, fmt.Sprintf("carrier.picked_up for %s already recorded at history seq %d", o.OrderID, recorded[0].Seq)) {
			t.Fatalf("dead letter reason %q", r)
		}
	}
	s.completes("dup-after-")
}

// TestRollupSignalIsRefusedAndSaid: on a signals stream made by an earlier
// version, with message schedules (which the server cannot turn off, and
// which make it allow roll-ups), a signal published with Nats-Rollup
// removes what was stored before it on its subject; the router does not
// record it, dead-letters it naming the rollup, and the order waiting for
// it is not completed by it. (Today's signals stream refuses the publish:
// streams.TestSignalsStreamRefusesRollups.)
func TestRollupSignalIsRefusedAndSaid(t *testing.T) {
	s, _ := timerStack(t)
	ctx := context.Background()
	if err := s.env.JS.DeleteStream(ctx, streams.SignalsStream); err != nil {
		t.Fatal(err)
	}
	var old jetstream.StreamConfig
	for _, c := range (streams.Topology{}).StreamConfigs() {
		if c.Name == streams.SignalsStream {
			old = c
		}
	}
	old.Subjects = append(old.Subjects, "schedule.>")
	old.AllowMsgSchedules = true
	old.Discard, old.MaxBytes = jetstream.DiscardOld, -1 // as an earlier version made it
	if _, err := s.env.JS.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	s.orchestrator()
	s.participants()
	o := order("rollup-", 1, map[string]string{"pickup": "never"})
	s.publishOrder(o)
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(o.OrderID) }, "order not waiting for pickup")
	m := nats.NewMsg(streams.SignalSubject("carrier.picked_up", o.OrderID))
	m.Data = []byte(`{"carrier":"DHL"}`)
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	ack, err := s.env.JS.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	var dl *nats.Msg
	natstest.Eventually(t, 30*time.Second, func() bool {
		dl, err = streams.SignalDeadLetter(context.Background(), s.env.NC, ack.Sequence)
		return err == nil && dl != nil
	}, "the rollup signal was not dead-lettered")
	if r := dl.Header.Get(schema.HeaderReason); !strings.Contains(r, "signal carries Nats-Rollup sub") {
		t.Fatalf("dead letter reason %q", r)
	}
	for _, ev := range s.history(o.OrderID) {
		if _, ok := ev.Value.(*schema.Signal); ok {
			t.Fatalf("the rollup signal was recorded at history seq %d", ev.Seq)
		}
	}
	if !s.waitingForPickup(o.OrderID) {
		t.Fatal("the order no longer waits for its pickup")
	}
}

// TestWaitingSignalsAreCapped: 1,200 signals the workflow never takes are
// sent at once; 1,000 (the default cap) are recorded and the 200 others
// dead-lettered with the limit's name. The capped workflow still meets its
// deadline, and other orders go on.
func TestWaitingSignalsAreCapped(t *testing.T) {
	t.Parallel() // a server of its own
	const sent, limit = 1200, orchestrator.DefaultMaxPendingSignals
	s, clock := timerStack(t)
	s.faults = sim.Faults{}
	// Each recorded signal wakes the orchestrator for one replay of the
	// growing history. Wakes that queue past AckWait are redelivered and
	// replayed again; with an AckWait long enough for the queue, each wake
	// is taken once (the cap is what this test is about).
	s.ackWait = 5 * time.Minute
	s.orchestrator()
	s.participants()
	o := order("cap-", 1, map[string]string{"pickup": "never"})
	s.publishOrder(o)
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(o.OrderID) }, "order not waiting for pickup")
	for i := 0; i < sent; i++ {
		if _, err := s.env.JS.PublishAsync(streams.SignalSubject("note", o.OrderID), []byte(`{"n":`+strconv.Itoa(i)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	<-s.env.JS.PublishAsyncComplete()
	want := fmt.Sprintf("workflow %s has %d signals waiting, the limit (--max-pending-signals)", o.OrderID, limit)
	var reasons []string
	natstest.Eventually(t, 3*time.Minute, func() bool {
		reasons = s.deadLetters(streams.DeadLetterSubject("signal"))
		return len(reasons) >= sent-limit
	}, "fewer than %d dead letters", sent-limit)
	for _, r := range reasons {
		if r != want {
			t.Fatalf("dead letter reason %q, want %q", r, want)
		}
	}
	if n := countKind[*schema.Signal](s.history(o.OrderID)); n != limit || len(reasons) != sent-limit {
		t.Fatalf("%d signals recorded and %d dead-lettered, want %d and %d", n, len(reasons), limit, sent-limit)
	}
	clock.Advance(72*time.Hour + time.Minute)
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompensated {
		t.Fatalf("capped order is %s", st[o.OrderID])
	}
	// The timer clock is 72 h ahead of the events' time now: a new order's
	// pickup deadline would be due at once, so this one needs no pickup.
	s.completesWithin("cap-after-", 3*time.Minute, map[string]string{"pickup": "at_creation"})
}

// TestReservedIDsAreRefused: an order whose ID is in the engine's namespace
// is dead-lettered at intake with the rule, and Start refuses it.
func TestReservedIDsAreRefused(t *testing.T) {
	s := newStack(t)
	s.faults = sim.Faults{}
	s.orchestrator()
	s.participants()
	o := order("x", 1, nil)
	o.OrderID = "_late-x"
	s.publishOrder(o)
	s.waitDeadLetter(streams.DeadLetterSubject(streams.OrderCreated), `invalid workflow id "_late-x": ids starting with "_" are reserved`)
	if _, err := orchestrator.Start(context.Background(), s.env.JS, fulfillment.WorkflowType, "_late-y", o, "test"); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("Start of a reserved id: %v", err)
	}
	if _, ok := s.statuses()["_late-x"]; ok {
		t.Fatal("reserved id started")
	}
	s.completes("rsv-after-")
}

// TestJunkOnAFiredSubject: a message published by hand on the subject a
// timer will fire on takes it. When the deadline comes, the workflow is
// parked as blocked with the reason and the timer entry dropped, instead of
// the fire being retried for ever or taken as done. A well-formed fire of
// the timer published on another timer's subject is not taken for the
// fire either: that order meets its real deadline.
func TestJunkOnAFiredSubject(t *testing.T) {
	s, clock := timerStack(t)
	s.faults = sim.Faults{}
	s.orchestrator()
	s.participants()
	junk := order("junk-", 1, map[string]string{"pickup": "never"})
	forged := order("junk-", 2, map[string]string{"pickup": "never"})
	s.publishOrder(junk)
	s.publishOrder(forged)
	ids := []string{junk.OrderID, forged.OrderID}
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(ids[0]) && s.waitingForPickup(ids[1]) }, "orders not waiting for pickup")
	deadline := s.describe(forged.OrderID).Timers[0]
	taken := streams.FiredSubject(junk.OrderID, deadline.ID)
	if _, err := s.env.JS.Publish(context.Background(), streams.PublishSubject(taken), []byte("junk")); err != nil {
		t.Fatal(err)
	}
	fake, err := streams.NewMsg(streams.FiredSubject(forged.OrderID, deadline.ID+5), &schema.TimerFired{TimerID: deadline.ID, Due: deadline.Due})
	if err != nil {
		t.Fatal(err)
	}
	fake.Subject = streams.PublishSubject(fake.Subject)
	if _, err := s.env.JS.PublishMsg(context.Background(), fake); err != nil {
		t.Fatal(err)
	}
	clock.Advance(72*time.Hour + time.Minute)
	st := s.waitSettled(ids, time.Minute)
	if st[junk.OrderID] != schema.StatusBlocked || st[forged.OrderID] != schema.StatusCompensated {
		t.Fatalf("junk %s, forged %s; want blocked and compensated", st[junk.OrderID], st[forged.OrderID])
	}
	if d := s.describe(junk.OrderID); !strings.Contains(d.Reason, "cannot fire: "+taken+" already holds a message") {
		t.Fatalf("blocked with reason %q", d.Reason)
	}
	// The forged order ended on its real deadline, not on the forgery.
	var fired, end uint64
	for _, ev := range s.history(forged.OrderID) {
		switch ev.Value.(type) {
		case *schema.TimerFired:
			if ev.Subject == streams.FiredSubject(forged.OrderID, deadline.ID) {
				fired = ev.Seq
			}
		case *schema.WorkflowFinished:
			end = ev.Seq
		}
	}
	if fired == 0 || end < fired {
		t.Fatalf("forged order ended at #%d, its deadline fired at #%d", end, fired)
	}
	kv, err := s.env.JS.KeyValue(context.Background(), streams.TimersBucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, func() bool {
		_, err := kv.Get(context.Background(), deadline.Key)
		_, err2 := kv.Get(context.Background(), orchestrator.TimerKey(junk.OrderID, deadline.ID))
		return errors.Is(err, jetstream.ErrKeyNotFound) && errors.Is(err2, jetstream.ErrKeyNotFound)
	}, "timer entries left in the bucket")
	// Back to the wall clock: a new order's pickup deadline is due 72h
	// after its start on the server's clock, which the advanced timer
	// clock has passed already.
	clock.Advance(-(72*time.Hour + time.Minute))
	s.completes("junk-after-")
}
