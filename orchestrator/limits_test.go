package orchestrator

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestIntakeDeadLettersStartTooLarge: an order under the intake limit whose
// decoded input makes a start event larger than the max payload is
// dead-lettered with Start's ErrTooLarge, never retried, and nothing is
// started.
func TestIntakeDeadLettersStartTooLarge(t *testing.T) {
	env := natstest.RunJetStream(t)
	reg := workflow.NewRegistry()
	workflow.Register(reg, "x", func(ctx workflow.Context, in string) (string, error) { return "", nil })
	o, err := New(Config{NC: env.NC, JS: env.JS, Registry: reg, AckWait: 2 * time.Second, Intake: &Intake{
		WorkflowType: "x",
		MaxSize:      2 << 20, // past the max payload: only Start stands in the way
		Decode: func(data []byte, _ nats.Header) (string, any, error) {
			return "big-start", string(bytes.Repeat(data, 2)), nil // the input doubles the body
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	if _, err := env.JS.Publish(ctx, streams.OrderCreated, bytes.Repeat([]byte("b"), 600<<10)); err != nil {
		t.Fatal(err)
	}
	cons, err := env.JS.OrderedConsumer(ctx, streams.DeadLetterStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatalf("no dead letter for a start too large: %v", err)
	}
	if r := m.Headers().Get(schema.HeaderReason); !strings.Contains(r, ErrTooLarge.Error()) {
		t.Errorf("reason %q, want one with %q", r, ErrTooLarge)
	}
	if ev, err := o.hist.Last(ctx, streams.StartSubject("big-start")); err != nil || ev != nil {
		t.Errorf("start event %v (%v), want none", ev, err)
	}
}
