package orchestrator

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/streams"
)

// BenchmarkSignalFlood sends N signals (JETFLOW_BENCH_SIGNALS, default
// 10,000) at once to one workflow that never takes them, and measures how
// long the signal router takes until the first 1,000 (the default cap) are
// recorded and every other one is dead-lettered. Run:
//
//	go test -run '^$' -bench SignalFlood -benchtime 1x ./orchestrator/
func BenchmarkSignalFlood(b *testing.B) {
	n := 10_000
	if v := os.Getenv("JETFLOW_BENCH_SIGNALS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for i := 0; i < b.N; i++ {
		benchSignalFlood(b, n)
	}
}

func benchSignalFlood(b *testing.B, n int) {
	env := natstest.RunJetStream(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := workflow.NewRegistry()
	workflow.Register(reg, "wait", func(ctx workflow.Context, _ string) (string, error) {
		workflow.ReceiveSignal(ctx, "go")
		return "done", nil
	})
	o, err := New(Config{NC: env.NC, JS: env.JS, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if _, err := Start(ctx, env.JS, "wait", "flood-1", "x", "bench"); err != nil {
		b.Fatal(err)
	}
	dlq, err := env.JS.Stream(ctx, streams.DeadLetterStream)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	began := time.Now()
	for i := 0; i < n; i++ {
		if _, err := env.JS.PublishAsync(streams.SignalSubject("note", "flood-1"), []byte(`{}`)); err != nil {
			b.Fatal(err)
		}
	}
	<-env.JS.PublishAsyncComplete()
	want := uint64(max(n-DefaultMaxPendingSignals, 0))
	natstest.Eventually(b, 10*time.Minute, func() bool {
		info, err := dlq.Info(ctx)
		return err == nil && info.State.Msgs >= want
	}, "not %d dead letters", want)
	elapsed := time.Since(began)
	b.StopTimer()
	recorded, err := o.hist.Count(ctx, streams.SignalFilterOf("flood-1"))
	if err != nil || recorded != uint64(min(n, DefaultMaxPendingSignals)) {
		b.Fatalf("%d signals recorded (%v)", recorded, err)
	}
	b.ReportMetric(float64(elapsed.Microseconds())/float64(n), "µs/signal")
	b.ReportMetric(elapsed.Seconds(), "s/flood")
}
