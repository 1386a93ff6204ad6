package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/internal/fuzzcheck"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestPoisonOrderBombGoesToDeadLetter: the order bomb is refused with the
// length it declared, and an order behind it completes.
func TestPoisonOrderBombGoesToDeadLetter(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	s.participants()
	bomb := fuzzcheck.OrderBomb()
	if len(bomb) != 68 {
		t.Fatalf("bomb of %d bytes", len(bomb))
	}
	s.publish(streams.OrderCreated, bomb, nats.Header{schema.HeaderContentType: []string{schema.ContentTypeMsgpack}})
	good := order("after-bomb-", 0, nil)
	s.publishOrder(good)
	if st := s.waitSettled([]string{good.OrderID}, time.Minute); st[good.OrderID] != schema.StatusCompleted {
		t.Fatalf("order behind the bomb: %s", st[good.OrderID])
	}
	var reasons []string
	natstest.Eventually(t, 30*time.Second, func() bool {
		reasons = s.deadLetters(streams.DeadLetterSubject(streams.OrderCreated))
		return len(reasons) == 1
	}, "dead letters: %v", reasons)
	if want := "array declares 4294967295 elements, 56 bytes remain"; !strings.Contains(reasons[0], want) {
		t.Fatalf("reason %q does not say %q", reasons[0], want)
	}
	if n := len(s.statuses()); n != 1 {
		t.Errorf("%d workflows, want only the good order's", n)
	}
}

// TestPoisonDecisionIsDeadLetteredAndParks: an event whose decision fails on
// every delivery (here the start of a workflow whose type no orchestrator
// has registered) is not redelivered forever: its last delivery goes to
// dlq.wf with "crashed or timed out N deliveries" and the workflow is
// parked blocked with that reason, while other workflows go on.
func TestPoisonDecisionIsDeadLetteredAndParks(t *testing.T) {
	s := newStack(t)
	s.maxDeliver = orchestrator.MaxDeliver{Decisions: 3}
	s.orchestrator()
	s.participants()
	id := "unregistered-1"
	if _, err := orchestrator.Start(context.Background(), s.env.JS, "teleport.order", id, map[string]string{"to": "mars"}, "test"); err != nil {
		t.Fatal(err)
	}
	good := order("beside-poison-", 0, nil)
	s.publishOrder(good)

	const want = "crashed or timed out 2 deliveries"
	var reasons []string
	natstest.Eventually(t, time.Minute, func() bool {
		reasons = s.deadLetters(streams.DeadLetterSubject("wf"))
		return len(reasons) == 1
	}, "dead letters on dlq.wf: %v", reasons)
	if reasons[0] != want {
		t.Errorf("dead-letter reason %q, want %q", reasons[0], want)
	}
	st := s.waitSettled([]string{id, good.OrderID}, time.Minute)
	if st[id] != schema.StatusBlocked {
		t.Fatalf("poisoned workflow is %s, want blocked", st[id])
	}
	if st[good.OrderID] != schema.StatusCompleted {
		t.Errorf("the other workflow is %s, want completed", st[good.OrderID])
	}
	d := s.describe(id)
	for _, w := range []string{want, streams.StartSubject(id), "dlq.wf"} {
		if !strings.Contains(d.Reason, w) {
			t.Errorf("blocked reason %q lacks %q", d.Reason, w)
		}
	}
	// The event is acked: nothing is left pending on the consumer.
	natstest.Eventually(t, 30*time.Second, func() bool {
		c, err := s.env.JS.Consumer(context.Background(), streams.HistoryStreamOf(id), streams.OrchestratorConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumRedelivered == 0
	}, "orchestrator consumer still holds the poisoned event")
}

// TestPoisonStartAndSignalEndAtMaxDeliver: an order whose start and a
// signal whose record fail on every delivery (here the history stream
// refuses them as too large) are not retried forever: each one's last
// delivery goes to its dead-letter subject with "crashed or timed out N
// deliveries" and is acked.
func TestPoisonStartAndSignalEndAtMaxDeliver(t *testing.T) {
	s := newStack(t)
	s.maxDeliver = orchestrator.MaxDeliver{Intake: 3, Signals: 3}
	s.orchestrator()
	ctx := context.Background()
	id := "signalled-1"
	if _, err := orchestrator.Start(ctx, s.env.JS, "teleport.order", id, nil, "test"); err != nil {
		t.Fatal(err)
	}
	// The orchestrator creates its consumer on the history stream as it
	// starts; the server races a stream update against a consumer create
	// on the same stream (its file store's config is read unlocked), so
	// the update waits until the consumer is there and has worked.
	natstest.Eventually(t, 30*time.Second, func() bool {
		c, err := s.env.JS.Consumer(ctx, streams.HistoryStreamOf(id), streams.OrchestratorConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.Delivered.Stream > 0
	}, "orchestrator consumer not created")
	// From now on the history (each stream of a partitioned one: the
	// orchestrator made their consumers before it consumed) takes no
	// message above 256 bytes.
	for _, name := range streams.HistoryStreams() {
		hist, err := s.env.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := hist.CachedInfo().Config
		cfg.MaxMsgSize = 256
		if _, err := s.env.JS.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	big := order("too-big-", 0, nil)
	big.CustomerID = strings.Repeat("c", 300)
	s.publishOrder(big)
	s.publish(streams.SignalSubject("carrier.picked_up", id), []byte(`{"note":"`+strings.Repeat("n", 300)+`"}`), nil)

	const want = "crashed or timed out 2 deliveries"
	for _, origin := range []string{streams.OrderCreated, "signal"} {
		var reasons []string
		natstest.Eventually(t, time.Minute, func() bool {
			reasons = s.deadLetters(streams.DeadLetterSubject(origin))
			return len(reasons) == 1
		}, "dead letters on dlq.%s: %v", origin, reasons)
		if reasons[0] != want {
			t.Errorf("dlq.%s: reason %q, want %q", origin, reasons[0], want)
		}
	}
	for _, durable := range []string{streams.IntakeConsumer, streams.SignalsConsumer} {
		stream := streams.OrdersStream
		if durable == streams.SignalsConsumer {
			stream = streams.SignalsStream
		}
		natstest.Eventually(t, 30*time.Second, func() bool {
			c, err := s.env.JS.Consumer(ctx, stream, durable)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			return err == nil && info.NumAckPending == 0 && info.NumPending == 0
		}, "%s still holds its message", durable)
	}
}
