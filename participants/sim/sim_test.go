package sim_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

func TestApplyReturnsFirstEffect(t *testing.T) {
	t.Parallel()
	env := natstest.RunJetStream(t)
	ctx := natstest.Context(t)
	sys, err := sim.Open(ctx, env.JS, "payment", streams.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	if sys.Name() != "payment" {
		t.Fatalf("name %q", sys.Name())
	}
	first, ok, err := sys.Apply(ctx, sim.Effect{IdempotencyKey: "wf-1.1", OrderID: "o-1", Kind: "charge", AmountCents: 100, Currency: "EUR", Ref: "ch_a"})
	if err != nil || !ok {
		t.Fatalf("first apply: %v, first=%v", err, ok)
	}
	if first.System != "payment" || first.Time.IsZero() {
		t.Fatalf("first effect not completed: %+v", first)
	}
	again, ok, err := sys.Apply(ctx, sim.Effect{IdempotencyKey: "wf-1.1", OrderID: "o-1", Kind: "charge", AmountCents: 999, Ref: "ch_b"})
	if err != nil || ok {
		t.Fatalf("second apply: %v, first=%v", err, ok)
	}
	if again.AmountCents != 100 || again.Ref != "ch_a" || !again.Time.Equal(first.Time) {
		t.Fatalf("second apply returned %+v, want the first %+v", again, first)
	}
	// Opening again keeps the ledger.
	if _, err := sim.Open(ctx, env.JS, "payment", streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	effs, err := sim.List(ctx, env.JS, "payment", "")
	if err != nil || len(effs) != 1 || effs[0].AmountCents != 100 {
		t.Fatalf("list: %v %+v", err, effs)
	}
}

func TestListFiltersAndSorts(t *testing.T) {
	t.Parallel()
	env := natstest.RunJetStream(t)
	ctx := natstest.Context(t)
	effs, err := sim.List(ctx, env.JS, "inventory", "")
	if err != nil || len(effs) != 0 {
		t.Fatalf("list of a missing ledger: %v %+v", err, effs)
	}
	sys, err := sim.Open(ctx, env.JS, "inventory", streams.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	if effs, err := sim.List(ctx, env.JS, "inventory", ""); err != nil || len(effs) != 0 {
		t.Fatalf("list of an empty ledger: %v %+v", err, effs)
	}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(key, order string, at time.Duration) {
		t.Helper()
		_, _, err := sys.Apply(ctx, sim.Effect{IdempotencyKey: key, OrderID: order, Kind: "reserve",
			Items: []sim.Item{{SKU: "sku-1", Qty: 2}}, Time: base.Add(at)})
		if err != nil {
			t.Fatal(err)
		}
	}
	add("k3", "o-1", 2*time.Second)
	add("k2", "o-2", time.Second)
	add("k1", "o-1", 2*time.Second)
	add("k0", "o-1", 0)

	all, err := sim.List(ctx, env.JS, "inventory", "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range all {
		keys = append(keys, e.IdempotencyKey)
	}
	if fmt.Sprint(keys) != "[k0 k2 k1 k3]" {
		t.Fatalf("order %v", keys)
	}
	o1, err := sim.List(ctx, env.JS, "inventory", "o-1")
	if err != nil || len(o1) != 3 {
		t.Fatalf("o-1: %v %+v", err, o1)
	}
	if o1[0].Items[0] != (sim.Item{SKU: "sku-1", Qty: 2}) {
		t.Fatalf("items %+v", o1[0].Items)
	}
}

func TestLedgerKeyIsValidAndDistinct(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"wf-1.3":  "wf-1.3",
		"a_b-C9":  "a_b-C9",
		".lead":   "=2Elead",
		"trail.":  "trail=2E",
		"a..b":    "a.=2Eb",
		"a b":     "a=20b",
		"a=20b":   "a=3D20b",
		"x/y*z>":  "x=2Fy=2Az=3E",
		"ünicode": "=C3=BCnicode",
	}
	for in, want := range cases {
		got, err := sim.LedgerKey(in)
		if err != nil || got != want {
			t.Errorf("LedgerKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := sim.LedgerKey(""); err == nil {
		t.Error("empty key accepted")
	}
}

func TestHitIsDeterministic(t *testing.T) {
	t.Parallel()
	hits := 0
	for i := range 10000 {
		id := fmt.Sprintf("order-%d", i)
		h := sim.Hit(0.1, id, "payment")
		if h != sim.Hit(0.1, id, "payment") {
			t.Fatal("Hit is not deterministic")
		}
		if h {
			hits++
		}
		if sim.Hit(0, id, "payment") || !sim.Hit(1, id, "payment") {
			t.Fatal("rates 0 and 1 must never and always hit")
		}
	}
	if hits < 800 || hits > 1200 {
		t.Fatalf("rate 0.1 hit %d of 10000", hits)
	}
}

func TestFailing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		sim     string
		attempt int
		want    bool
	}{
		{"", 1, false},
		{"fail_always", 9, true},
		{"fail_n:2", 1, true},
		{"fail_n:2", 2, true},
		{"fail_n:2", 3, false},
		{"fail_n:x", 1, false},
		{"decline", 1, false},
	}
	for _, c := range cases {
		if got := sim.Failing(c.sim, c.attempt); got != c.want {
			t.Errorf("Failing(%q, %d) = %v", c.sim, c.attempt, got)
		}
	}
}

func TestFaultsWait(t *testing.T) {
	t.Parallel()
	ctx := natstest.Context(t)
	start := time.Now()
	if err := (sim.Faults{Latency: 20 * time.Millisecond}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("latency not waited")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := (sim.Faults{Latency: time.Hour}).Wait(cctx); err == nil {
		t.Fatal("Wait ignored a cancelled context")
	}
}

// forwarder runs sys.ForwardCallbacks until the returned stop is called.
func forwarder(t *testing.T, ctx context.Context, sys *sim.System) (stop func()) {
	t.Helper()
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sys.ForwardCallbacks(fctx, slog.New(slog.DiscardHandler)) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ForwardCallbacks: %v", err)
		}
	}
}

// lastSignal is the last signal name for id in the signals stream, nil
// when there is none.
func lastSignal(t *testing.T, ctx context.Context, js jetstream.JetStream, name, id string) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, streams.SignalSubject(name, id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// callbacksLeft is the number of messages in sys's callbacks stream.
func callbacksLeft(t *testing.T, ctx context.Context, js jetstream.JetStream, system string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, streams.CallbacksStream(system))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestCallbackIsSentWhenDue: a callback scheduled for later is held by the
// server in the system's callbacks stream while no forwarder runs (a
// restart), and sent as its signal, once, when a forwarder runs; the
// callbacks stream is then empty.
func TestCallbackIsSentWhenDue(t *testing.T) {
	t.Parallel()
	env := natstest.RunJetStream(t)
	ctx := natstest.Context(t)
	sys, err := sim.Open(ctx, env.JS, "shipping", streams.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.Callback(ctx, "carrier.picked_up", "o-1", 300*time.Millisecond, map[string]string{"carrier": "DHL"}); err != nil {
		t.Fatal(err)
	}
	// Scheduling it again (a retried step) is a duplicate.
	if err := sys.Callback(ctx, "carrier.picked_up", "o-1", 300*time.Millisecond, map[string]string{"carrier": "UPS"}); err != nil {
		t.Fatal(err)
	}
	// Due, with nothing to forward it: it waits in the callbacks stream.
	natstest.Eventually(t, 10*time.Second, func() bool {
		s, err := env.JS.Stream(ctx, streams.CallbacksStream("shipping"))
		if err != nil {
			return false
		}
		_, err = s.GetLastMsgForSubject(ctx, streams.CallbackDueSubject("shipping", "o-1", "carrier.picked_up"))
		return err == nil
	}, "the callback did not fall due")
	if m := lastSignal(t, ctx, env.JS, "carrier.picked_up", "o-1"); m != nil {
		t.Fatalf("signal sent with no forwarder running: %s", m.Data)
	}
	stop := forwarder(t, ctx, sys)
	defer stop()
	var m *jetstream.RawStreamMsg
	natstest.Eventually(t, 10*time.Second, func() bool {
		m = lastSignal(t, ctx, env.JS, "carrier.picked_up", "o-1")
		return m != nil
	}, "the due callback was not sent")
	if string(m.Data) != `{"carrier":"DHL"}` {
		t.Errorf("signal %s, want the first schedule's", m.Data)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return callbacksLeft(t, ctx, env.JS, "shipping") == 0 },
		"the forwarded callback stays in its stream")
	info, err := env.JS.Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("%d signals, want 1", n)
	}
}

// TestCallbackFromAnotherScheduleIsDropped: the server does not check a
// schedule's target against the scheduler's permissions, so a party that
// may schedule its own callbacks could aim one at another signal's due
// subject; the forwarder drops a due callback whose schedule is not its
// own subject's.
func TestCallbackFromAnotherScheduleIsDropped(t *testing.T) {
	t.Parallel()
	env := natstest.RunJetStream(t)
	ctx := natstest.Context(t)
	sys, err := sim.Open(ctx, env.JS, "payment", streams.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	stop := forwarder(t, ctx, sys)
	defer stop()
	m := nats.NewMsg(streams.CallbackAtSubject("payment", "o-2", "carrier.picked_up"))
	m.Header.Set("Nats-Schedule", "@at "+time.Now().Add(100*time.Millisecond).UTC().Format(time.RFC3339Nano))
	m.Header.Set("Nats-Schedule-Target", streams.CallbackDueSubject("payment", "o-2", "payment.settled"))
	m.Data = []byte(`{"charge_id":"forged"}`)
	if _, err := env.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	// Then a callback of its own, after it: once that one is sent, the
	// forged one was handled.
	if err := sys.Callback(ctx, "payment.settled", "o-3", 200*time.Millisecond, map[string]string{"charge_id": "ch"}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		return lastSignal(t, ctx, env.JS, "payment.settled", "o-3") != nil && callbacksLeft(t, ctx, env.JS, "payment") == 0
	}, "the callbacks were not handled")
	if m := lastSignal(t, ctx, env.JS, "payment.settled", "o-2"); m != nil {
		t.Fatalf("the forged callback was sent: %s", m.Data)
	}
	// It is in the dead letters, with its reason.
	dlq, err := env.JS.Stream(ctx, streams.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := dlq.GetLastMsgForSubject(ctx, streams.DeadLetterSubject(streams.CallbackOrigin("payment")))
	if err != nil {
		t.Fatalf("no dead letter for the forged callback: %v", err)
	}
	if r := dl.Header.Get(schema.HeaderReason); !strings.Contains(r, streams.CallbackAtSubject("payment", "o-2", "carrier.picked_up")) ||
		!strings.Contains(r, streams.CallbackAtSubject("payment", "o-2", "payment.settled")) {
		t.Errorf("dead letter reason %q: want the schedule it came from and the one it must", r)
	}
}

// TestForwarderWaitsForItsStream: a forwarder started before its
// callbacks stream exists (an orchestrator of this version makes it) does
// not make it, and starts sending once it is made.
func TestForwarderWaitsForItsStream(t *testing.T) {
	t.Parallel()
	env := natstest.RunJetStream(t)
	ctx := natstest.Context(t)
	if err := env.JS.DeleteStream(ctx, streams.CallbacksStream("payment")); err != nil {
		t.Fatal(err)
	}
	sys, err := sim.Open(ctx, env.JS, "payment", streams.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	stop := forwarder(t, ctx, sys)
	defer stop()
	if err := sys.Callback(ctx, "payment.settled", "o-4", 100*time.Millisecond, map[string]string{"charge_id": "ch"}); err == nil {
		t.Fatal("a callback was scheduled with no callbacks stream")
	}
	if _, err := env.JS.Stream(ctx, streams.CallbacksStream("payment")); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("the forwarder made its stream: %v", err)
	}
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	if err := sys.Callback(ctx, "payment.settled", "o-4", 100*time.Millisecond, map[string]string{"charge_id": "ch"}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, func() bool {
		return lastSignal(t, ctx, env.JS, "payment.settled", "o-4") != nil
	}, "the callback was not sent")
}
