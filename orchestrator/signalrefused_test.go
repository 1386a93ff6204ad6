package orchestrator_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// A workflow's signal to another that the full signals stream refuses is
// counted as unsent (jetflow_signals_total{outcome="unsent"}), its future
// fails with the stream's reason, and the sender ends.
func TestSignalExternalRefusedIsCounted(t *testing.T) {
	env := natstest.RunJetStream(t)
	m, _ := runSticky(t, env, orchestrator.Config{})
	ctx := context.Background()
	if _, err := orchestrator.Start(ctx, env.JS, "tally", "t-1", struct{ Rounds, Helpers int }{1, 0}, "test"); err != nil {
		t.Fatal(err)
	}
	natstest.FillSignals(t, env.JS, 64<<10, 4<<10, true)
	if _, err := orchestrator.Start(ctx, env.JS, "sender", "s-1", "t-1", "test"); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(t, env, "s-1")
	var out string
	if err := schema.DecodeRaw(d.Output, &out); err != nil || !strings.Contains(out, streams.SignalsStream+": maximum bytes exceeded") {
		t.Fatalf("sender returned %q (%v), want the refusal", out, err)
	}
	if n := labelled(t, m, "jetflow_signals_total", "outcome", metrics.SignalUnsent); n != 1 {
		t.Fatalf("%v signals counted unsent, want 1", n)
	}
}
