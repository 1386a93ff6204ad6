package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
)

// A stop is a stop whenever it comes: Run returns nil when its context is
// cancelled before, during or after start-up, never the error of a
// start-up step the cancellation interrupted.
func TestRunReturnsNilWhenStoppedDuringStartUp(t *testing.T) {
	env := natstest.RunJetStream(t)
	for _, after := range []time.Duration{0, time.Microsecond, 100 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond} {
		reg := workflow.NewRegistry()
		workflow.Register(reg, "x", func(ctx workflow.Context, in string) (string, error) { return in, nil })
		o, err := New(Config{NC: env.NC, JS: env.JS, Registry: reg, Intake: &Intake{WorkflowType: "x",
			Decode: func([]byte, nats.Header) (string, any, error) { return "", nil, nil }}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- o.Run(ctx) }()
		time.AfterFunc(after, cancel)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stopped %v after start: Run returned %v", after, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("stopped %v after start: Run did not return", after)
		}
	}
}
