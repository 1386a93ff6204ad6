package test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// publishSeq publishes on order.created and returns the stream sequence.
func (s *stack) publishSeq(body []byte, h nats.Header) uint64 {
	s.t.Helper()
	ack, err := s.env.JS.PublishMsg(context.Background(), &nats.Msg{Subject: streams.OrderCreated, Data: body, Header: h})
	if err != nil {
		s.t.Fatalf("publish %d bytes: %v", len(body), err)
	}
	return ack.Sequence
}

// deadLetterMsgs returns the dead letters on subject, by source sequence.
func (s *stack) deadLetterMsgs(subject string) map[uint64]jetstream.Msg {
	s.t.Helper()
	out := map[uint64]jetstream.Msg{}
	for _, m := range s.deadLetterList(subject) {
		seq, _ := strconv.ParseUint(m.Headers().Get(schema.HeaderSourceSeq), 10, 64)
		out[seq] = m
	}
	return out
}

// intakeSettled waits until the intake has settled every order up to
// stream sequence seq: its ack floor is there and nothing is pending. (The
// consumer's pending count alone can read 0 before the consumer has seen
// an order just stored.)
func (s *stack) intakeSettled(seq uint64) {
	s.t.Helper()
	s.consumerSettled(streams.OrdersStream, streams.IntakeConsumer, seq)
}

// consumerSettled waits until durable consumer name of stream has settled
// every message up to stream sequence seq.
func (s *stack) consumerSettled(stream, name string, seq uint64) {
	s.t.Helper()
	var info *jetstream.ConsumerInfo
	natstest.Eventually(s.t, 30*time.Second, func() bool {
		c, err := s.env.JS.Consumer(context.Background(), stream, name)
		if err != nil {
			return false
		}
		info, err = c.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0 && info.NumPending == 0
	}, "%s has not settled %s up to #%d: %+v", name, stream, seq, info)
}

// TestHostileOrdersEndInDeadLetters: an order just under the server's max
// payload, a 1 MB invalid body, a 64 KB header, a 100 KB order_id and
// values the systems do not understand each end in dlq.order.created with
// a copy that fits and names its source; nothing is charged for any of
// them, and a normal order behind them completes.
func TestHostileOrdersEndInDeadLetters(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	s.participants()
	const nearMax = 1_048_000 // just under the 1 MiB max payload
	valid := order("big-", 0, nil)
	valid.Items[0].SKU = ""
	shell, _ := json.Marshal(valid)
	valid.Items[0].SKU = strings.Repeat("s", nearMax-len(shell))
	bigOrder, _ := json.Marshal(valid)
	longID := order("x", 0, nil)
	longID.OrderID = strings.Repeat("o", 100<<10)
	longIDBody, _ := json.Marshal(longID)
	msgpackHdr := nats.Header{schema.HeaderContentType: []string{schema.ContentTypeMsgpack}}
	hugeAmount, _ := msgpack.Marshal(map[string]any{"order_id": "mp-1", "customer_id": "c", "amount_cents": uint64(1<<64 - 1),
		"currency": "EUR", "items": []map[string]any{{"sku": "s", "qty": 1}}})
	simulate := func(id, k, v string) []byte {
		b, _ := json.Marshal(order(id, 0, map[string]string{k: v}))
		return b
	}

	cases := []struct {
		name   string
		body   []byte
		header nats.Header
		reason []string // all in the reason
		cut    string   // in Jetflow-Truncated
	}{
		{"valid order just under 1 MiB", bigOrder, nil, []string{"order is " + strconv.Itoa(len(bigOrder)) + " bytes, the limit is 262144 (--max-order-size)"}, "body " + strconv.Itoa(len(bigOrder)) + " bytes, kept "},
		{"invalid 1 MB body", []byte(strings.Repeat("\xff", nearMax)), nil, []string{"order is 1048000 bytes"}, "body 1048000 bytes, kept "},
		{"64 KB header", []byte(`{"order_id":`), nats.Header{"X-Big": []string{strings.Repeat("h", 64000)}}, []string{"invalid JSON"}, "header Orig-X-Big 64000 bytes, kept 1024"},
		{"100 KB order_id", longIDBody, nil, []string{`order_id "ooooo`, strconv.Itoa(100<<10) + " bytes)"}, ""},
		{"payment declined", simulate("sv-1-", "payment", "declined"), nil, []string{`simulate.payment "declined": want one of decline, fail`}, ""},
		{"pickup soon-ish", simulate("sv-2-", "pickup", "soon-ish"), nil, []string{`simulate.pickup "soon-ish": want one of never, at_creation, <duration>`}, ""},
		{"JSON amount 2^64-1", []byte(`{"order_id":"am-1","customer_id":"c","amount_cents":18446744073709551615,"currency":"EUR","items":[{"sku":"s","qty":1}]}`), nil, []string{"amount_cents 18446744073709551615"}, ""},
		{"msgpack amount 2^64-1", hugeAmount, msgpackHdr, []string{"amount_cents 18446744073709551615: out of range"}, ""},
	}
	seqs := make([]uint64, len(cases))
	for i, c := range cases {
		seqs[i] = s.publishSeq(c.body, c.header)
	}
	good := order("good-", 0, nil)
	s.publishOrder(good)
	if st := s.waitSettled([]string{good.OrderID}, time.Minute); st[good.OrderID] != schema.StatusCompleted {
		t.Fatalf("good order behind the hostile ones: %s", st[good.OrderID])
	}

	var dls map[uint64]jetstream.Msg
	natstest.Eventually(t, 30*time.Second, func() bool {
		dls = s.deadLetterMsgs(streams.DeadLetterSubject(streams.OrderCreated))
		return len(dls) == len(cases)
	}, "%d dead letters, want %d", len(dls), len(cases))
	limit := int(s.env.NC.MaxPayload())
	for i, c := range cases {
		d := dls[seqs[i]]
		if d == nil {
			t.Errorf("%s: no dead letter names source seq %d", c.name, seqs[i])
			continue
		}
		h := d.Headers()
		reason := h.Get(schema.HeaderReason)
		for _, want := range c.reason {
			if !strings.Contains(reason, want) {
				t.Errorf("%s: reason %.300q lacks %q", c.name, reason, want)
			}
		}
		if len(reason) > 2100 {
			t.Errorf("%s: reason of %d bytes", c.name, len(reason))
		}
		if got := h.Get(schema.HeaderSourceStream); got != streams.OrdersStream {
			t.Errorf("%s: source stream %q", c.name, got)
		}
		if cut := h.Get(schema.HeaderTruncated); c.cut != "" && !strings.Contains(cut, c.cut) {
			t.Errorf("%s: %s %q lacks %q", c.name, schema.HeaderTruncated, cut, c.cut)
		}
		if n := streams.HeaderSize(h) + len(d.Data()); n > limit {
			t.Errorf("%s: dead letter of %d bytes", c.name, n)
		}
	}
	// Nothing was started or charged but the good order.
	if st := s.statuses(); len(st) != 1 {
		t.Errorf("hostile orders started workflows: %v", st)
	}
	charges, err := sim.List(context.Background(), s.env.JS, "payment", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(charges) != 1 || charges[0].OrderID != good.OrderID {
		t.Errorf("payment ledger %+v, want the good order's charge only", charges)
	}
}

// TestAFloodFillsOnlyItsBoundedStream: with the orders and the dead
// letters bounded (--orders-max-bytes, --dead-letter-max-bytes), a flood
// of invalid orders fills JETFLOW_ORDERS to its bound and no further. The
// publish past it is refused with the server's reason, nothing accepted
// is dropped to make room, every accepted order is still settled (dead-
// lettered), the dead letters drop their oldest to stay within their own
// bound, and the engine goes on: a workflow started then completes.
func TestAFloodFillsOnlyItsBoundedStream(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	const bound, deadBound = 256 << 10, 64 << 10
	if err := streams.Ensure(ctx, s.env.JS, streams.Topology{OrdersMaxBytes: bound, DeadLetterMaxBytes: deadBound}); err != nil {
		t.Fatal(err)
	}
	s.orchestrator()
	s.participants()
	junk := []byte(strings.Repeat("\xff", 8<<10))
	var accepted []uint64
	var refused error
	for len(accepted) < 100 {
		ack, err := s.env.JS.Publish(ctx, streams.OrderCreated, junk)
		if err != nil {
			refused = err
			break
		}
		accepted = append(accepted, ack.Sequence)
	}
	if refused == nil || !strings.Contains(refused.Error(), "maximum bytes exceeded") {
		t.Fatalf("%d orders of 8 KiB into a bound of %d bytes, then %v; want maximum bytes exceeded", len(accepted), bound, refused)
	}
	orders, err := s.env.JS.Stream(ctx, streams.OrdersStream)
	if err != nil {
		t.Fatal(err)
	}
	if st := orders.CachedInfo().State; st.Msgs != uint64(len(accepted)) || st.FirstSeq != accepted[0] || st.Bytes > bound {
		t.Fatalf("%s after the flood: %d orders from #%d, %d bytes; want the %d accepted from #%d within %d bytes",
			streams.OrdersStream, st.Msgs, st.FirstSeq, st.Bytes, len(accepted), accepted[0], bound)
	}

	// Every accepted order was dead-lettered; the dead letters dropped the
	// oldest (each a copy of about 8 KiB, in the order they were written)
	// to stay within their bound.
	s.intakeSettled(accepted[len(accepted)-1])
	dlq, err := s.env.JS.Stream(ctx, streams.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if st := dlq.CachedInfo().State; st.LastSeq != uint64(len(accepted)) || st.FirstSeq < 2 || st.Msgs == 0 || st.Bytes > deadBound {
		t.Fatalf("%s after %d dead letters: #%d to #%d, %d kept, %d bytes; want all %d written, the oldest dropped, within %d bytes",
			streams.DeadLetterStream, len(accepted), st.FirstSeq, st.LastSeq, st.Msgs, st.Bytes, len(accepted), deadBound)
	}

	// The history is not bounded with them: a workflow started now runs.
	o := order("after-flood-", 0, map[string]string{"pickup": "at_creation"})
	if _, err := orchestrator.Start(ctx, s.env.JS, fulfillment.WorkflowType, o.OrderID, o, "test"); err != nil {
		t.Fatal(err)
	}
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("order started after the flood: %s", st[o.OrderID])
	}
}

// TestASignalFloodFillsOnlyItsBoundedStream: with the signals bounded
// (--signals-max-bytes), a flood of signals fills JETFLOW_SIGNALS to its
// bound and no further: the publish past it is refused with the server's
// reason and every signal accepted is kept and settled (these name no
// workflow: dead-lettered). While the stream is full a legitimate signal
// is refused too: the carrier's pickup callback is retried by its
// forwarder, not lost, and once an operator purges the flood it is sent
// and the order completes.
func TestASignalFloodFillsOnlyItsBoundedStream(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	const bound = 256 << 10
	// Signals of 8 KiB until one is refused as past the bound, then of one
	// byte until one is: the stream has no room left for any signal.
	accepted := natstest.FillSignals(t, s.env.JS, bound, 8<<10, false)
	s.orchestrator()
	s.participants()
	if _, err := s.env.JS.Publish(ctx, streams.SignalSubject("carrier.picked_up", "o-1"), nil); err == nil || !strings.Contains(err.Error(), "maximum bytes exceeded") {
		t.Fatalf("a signal to a full stream: %v; want maximum bytes exceeded", err)
	}
	// jetflow signal and the console say why.
	if _, err := orchestrator.SendSignal(ctx, s.env.JS, "o-1", "carrier.picked_up", nil); err == nil || !strings.Contains(err.Error(), streams.SignalsStream+" is full (maximum bytes exceeded): the signal was not stored") {
		t.Fatalf("SendSignal to a full stream: %v", err)
	}
	sigs, err := s.env.JS.Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	if st := sigs.CachedInfo().State; st.Msgs != uint64(len(accepted)) || st.FirstSeq != accepted[0] || st.Bytes > bound {
		t.Fatalf("%s after the flood: %d signals from #%d, %d bytes; want the %d accepted from #%d within %d bytes",
			streams.SignalsStream, st.Msgs, st.FirstSeq, st.Bytes, len(accepted), accepted[0], bound)
	}
	s.consumerSettled(streams.SignalsStream, streams.SignalsConsumer, accepted[len(accepted)-1])
	if n := len(s.deadLetterList(streams.DeadLetterSubject("signal"))); n != len(accepted) {
		t.Fatalf("%d dead letters of signals, want one for each of the %d accepted", n, len(accepted))
	}

	// An order whose carrier calls back a second after the shipment: the
	// callback's signal is refused while the stream is full, and its
	// forwarder tries again.
	o := order("sig-flood-", 0, map[string]string{"pickup": "1s"})
	if _, err := orchestrator.Start(ctx, s.env.JS, fulfillment.WorkflowType, o.OrderID, o, "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, func() bool {
		c, err := s.env.JS.Consumer(ctx, streams.CallbacksStream("shipping"), streams.CallbackConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumRedelivered > 0
	}, "the carrier's callback was never refused and retried")
	if st := s.statuses()[o.OrderID]; st.Terminal() {
		t.Fatalf("order %s while its pickup signal is refused", st)
	}
	// The operator purges the flood; the retried callback goes through.
	if err := sigs.Purge(ctx, jetstream.WithPurgeSubject(streams.SignalSubject("flood", "*"))); err != nil {
		t.Fatal(err)
	}
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("order after the flood was purged: %s", st[o.OrderID])
	}
}

// TestACallbackRefusedTooOftenEnds: while the signals stream stays full,
// the carrier's pickup callback is retried in its bounded deliveries, then
// given up to dlq.callback.shipping with the server's reason, and the
// order that waited for it meets its pickup deadline: it is compensated,
// not left waiting.
func TestACallbackRefusedTooOftenEnds(t *testing.T) {
	s, clock := timerStack(t)
	s.callbackAttempts = 2
	natstest.FillSignals(t, s.env.JS, 256<<10, 8<<10, false)
	s.orchestrator()
	s.participants()
	o := order("cb-full-", 0, map[string]string{"pickup": "1s"})
	s.publishOrder(o)
	var reasons []string
	natstest.Eventually(t, time.Minute, func() bool {
		reasons = s.deadLetters(streams.DeadLetterSubject(streams.CallbackOrigin("shipping")))
		return len(reasons) > 0
	}, "the refused callback was never given up")
	if len(reasons) != 1 || !strings.Contains(reasons[0], "could not be sent in 2 deliveries") || !strings.Contains(reasons[0], "maximum bytes exceeded") {
		t.Fatalf("callback dead letters %q: want one, sent in 2 deliveries and refused as maximum bytes exceeded", reasons)
	}
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(o.OrderID) }, "order not waiting for its pickup")
	clock.Advance(72*time.Hour + time.Minute)
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompensated {
		t.Fatalf("order whose pickup was given up: %s, want compensated at its deadline", st[o.OrderID])
	}
}

// TestConflictingDuplicateOrder: the same order again (as JSON or msgpack)
// is a duplicate and acknowledged; another body under a started order's ID
// is dead-lettered as a conflicting duplicate, never silently dropped, and
// charges nothing.
func TestConflictingDuplicateOrder(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	s.participants()
	o := order("dup-", 0, nil)
	first := s.publishSeq(mustJSON(t, o), nil)
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("order %s", st[o.OrderID])
	}
	s.publishSeq(mustJSON(t, o), nil)
	mp, err := msgpack.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	s.publishSeq(mp, nats.Header{schema.HeaderContentType: []string{schema.ContentTypeMsgpack}})
	changed := o
	changed.AmountCents++
	conflict := s.publishSeq(mustJSON(t, changed), nil)
	s.intakeSettled(conflict)

	dls := s.deadLetterMsgs(streams.DeadLetterSubject(streams.OrderCreated))
	if len(dls) != 1 || dls[conflict] == nil {
		t.Fatalf("dead letters at seqs %v, want only the conflicting order's (seq %d)", keys(dls), conflict)
	}
	want := "conflicting duplicate: workflow " + o.OrderID + " was started by order.created#" + strconv.FormatUint(first, 10) + " with a different body"
	if r := dls[conflict].Headers().Get(schema.HeaderReason); r != want {
		t.Errorf("reason %q, want %q", r, want)
	}
	charges, err := sim.List(context.Background(), s.env.JS, "payment", o.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	if len(charges) != 1 || charges[0].AmountCents != o.AmountCents {
		t.Errorf("payment ledger %+v, want one charge of %d", charges, o.AmountCents)
	}
	d, err := orchestrator.Describe(context.Background(), streams.NewHistory(s.env.NC, s.env.JS), o.OrderID)
	if err != nil || d.Status != schema.StatusCompleted {
		t.Fatalf("describe: %v %v", d, err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keys(m map[uint64]jetstream.Msg) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	return out
}
