package orchestrator_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// BenchmarkStickyDecision is one decision end to end on an embedded
// server — a signal recorded in the history, the decision it wakes read,
// taken and appended, its marker seen — for a workflow that loops on
// signals (tally, one side effect per signal) with a history of 11, 1,001
// and 10,001 events, with sticky execution on and off. Each orchestrator
// starts cold and takes one decision before the timer starts.
//
//	go test -run '^$' -bench BenchmarkStickyDecision -benchtime 200x ./orchestrator/
func BenchmarkStickyDecision(b *testing.B) {
	for _, n := range []int{11, 1001, 10001} {
		for _, sticky := range []bool{true, false} {
			name := "events=" + strconv.Itoa(n) + "/sticky=" + map[bool]string{true: "on", false: "off"}[sticky]
			b.Run(name, func(b *testing.B) { stickyDecision(b, n, sticky) })
		}
	}
}

func stickyDecision(b *testing.B, events int, sticky bool) {
	env := natstest.RunJetStream(b)
	ctx := context.Background()
	const id = "bench-1"
	one, _ := schema.EncodeRaw(1)
	// Stored markers, one per signal decided (a core subscription would
	// also see appends the fence refused).
	subj := streams.MarkerSubject(id, 1)
	cons, err := env.JS.OrderedConsumer(ctx, streams.HistoryStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj[:strings.LastIndex(subj, ".")] + ".*"},
	})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	wait := func(n int) {
		for range n {
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Signals are recorded in the history directly, as the signal router
	// records them: what is measured is the decision they wake.
	sent := uint64(0)
	signal := func(n int) {
		for range n {
			sent++
			m, err := streams.NewMsg(streams.SignalEventSubject(id, sent), &schema.Signal{Name: "add", Payload: one})
			if err != nil {
				b.Fatal(err)
			}
			m.Header.Set(schema.HeaderWorkflowID, id)
			if _, err := env.JS.PublishMsg(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	}

	// The history is written with sticky execution on (fast), by an
	// orchestrator that stops before the measured one starts.
	_, stopBuilder := runSticky(b, env, orchestrator.Config{})
	if _, err := orchestrator.Start(ctx, env.JS, "tally", id, struct{ Rounds, Helpers int }{1 << 30, 0}, "bench"); err != nil {
		b.Fatal(err)
	}
	for left := (events - 1) / 2; left > 0; {
		k := min(left, 200)
		signal(k)
		wait(k)
		left -= k
	}
	stopBuilder()

	cfg := orchestrator.Config{}
	if !sticky {
		cfg.StickyWorkflows = -1
	}
	runSticky(b, env, cfg)
	signal(1) // the cold decision: a read of the whole history and a replay
	wait(1)
	b.ResetTimer()
	for b.Loop() {
		signal(1)
		wait(1)
	}
}
