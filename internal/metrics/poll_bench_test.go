package metrics_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// BenchmarkPollQueues measures one poll of the queue gauges (manual queue
// depth, blocked, dead letters stored) on a history stream holding
// $JETFLOW_BENCH_WORKFLOWS ended workflows (default 100,000), 1% of them
// manual and 0.1% parked blocked before they ended:
//
//	JETFLOW_BENCH_WORKFLOWS=1000000 go test -run '^$' -bench BenchmarkPollQueues -benchtime 20x ./internal/metrics/
func BenchmarkPollQueues(b *testing.B) {
	n := 100_000
	if v := os.Getenv("JETFLOW_BENCH_WORKFLOWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("JETFLOW_BENCH_WORKFLOWS %q: want a positive number", v)
		}
	}
	env := natstest.RunJetStream(b)
	ctx := context.Background()
	began := time.Now()
	var pending []jetstream.PubAckFuture
	flush := func() {
		for _, f := range pending {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
		pending = pending[:0]
	}
	for i := range n {
		id := fmt.Sprintf("w-%07d", i)
		status := schema.StatusCompleted
		if i%100 == 0 {
			status = schema.StatusManual
		}
		subjects := []string{streams.DoneSubject(id, string(status))}
		if i%1000 == 1 {
			subjects = append(subjects, streams.BlockedSubject(id, 2))
		}
		for _, s := range subjects {
			f, err := env.JS.PublishAsync(s, nil)
			if err != nil {
				b.Fatal(err)
			}
			pending = append(pending, f)
		}
		if len(pending) >= 2000 {
			flush()
		}
	}
	flush()
	b.Logf("%d workflows written in %s", n, time.Since(began).Round(time.Millisecond))
	m := metrics.New()
	cfg := metrics.PollConfig{NC: env.NC, JS: env.JS, Queues: true, QueueDepth: func(ctx context.Context) (int, int, error) { return orchestrator.QueueDepth(ctx, env.JS) }}
	hist := streams.NewHistory(env.NC, env.JS)
	b.Run("poll", func(b *testing.B) {
		for range b.N {
			if err := m.PollOnce(ctx, cfg, hist); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if got := testGauge(m); got != float64(n/100) {
			b.Fatalf("manual queue depth %v, want %d", got, n/100)
		}
	})
	// The manual queue's depth and the blocked count alone.
	b.Run("queue-depth", func(b *testing.B) {
		for range b.N {
			if _, _, err := orchestrator.QueueDepth(ctx, env.JS); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func testGauge(m *metrics.Metrics) float64 {
	mfs, _ := m.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "jetflow_manual_queue_depth" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}
