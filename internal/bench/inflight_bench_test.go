package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/streams"
)

// BenchmarkInFlight measures the heap an orchestrator holds with many
// workflows in flight: orders whose carrier never comes, each parked on its
// 72 h pickup timer after its three forward steps. The orchestrator's share
// is the live heap with it running minus the live heap once it has stopped
// (the embedded server and the participants stay in both).
//
// JETFLOW_BENCH_INFLIGHT sets the number of orders (default 10,000):
//
//	JETFLOW_BENCH_INFLIGHT=100000 go test -run '^$' -bench InFlight -benchtime 1x -timeout 30m ./internal/bench/
func BenchmarkInFlight(b *testing.B) {
	n := 10000
	if v := os.Getenv("JETFLOW_BENCH_INFLIGHT"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("JETFLOW_BENCH_INFLIGHT=%q: want a positive number", v)
		}
	}
	for b.Loop() {
		inFlight(b, n)
	}
}

func inFlight(b *testing.B, n int) {
	env := natstest.RunJetStream(b)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)

	pctx, stopParts := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	defer func() {
		stopParts()
		pwg.Wait()
	}()
	for _, name := range reference.Names {
		svc, err := reference.Service(pctx, env.JS, streams.Topology{}, name, sim.Faults{})
		if err != nil {
			b.Fatal(err)
		}
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			_ = participants.Run(pctx, participants.Config{NC: env.NC, JS: env.JS, Logger: log}, svc)
		}()
	}

	cacheSize := 10000 // the default, stated here because the result depends on it
	octx, stopOrch := context.WithCancel(ctx)
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	o, err := orchestrator.New(orchestrator.Config{
		NC: env.NC, JS: env.JS, Registry: reg, Intake: fulfillment.Intake(), CacheSize: cacheSize, Logger: log,
	})
	if err != nil {
		b.Fatal(err)
	}
	odone := make(chan error, 1)
	go func() { odone <- o.Run(octx) }()

	start := time.Now()
	var acks []jetstream.PubAckFuture
	for i := range n {
		ord, _ := fulfillment.MixedOrder("inflight-", 40+i%60) // indices 40..99 complete
		ord.OrderID = fmt.Sprintf("inflight-%07d", i)
		ord.Simulate = map[string]string{"pickup": "never"}
		body, _ := json.Marshal(ord)
		f, err := env.JS.PublishAsync(streams.OrderCreated, body)
		if err != nil {
			b.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	timers, err := env.JS.KeyValue(ctx, streams.TimersBucket)
	if err != nil {
		b.Fatal(err)
	}
	natstest.Eventually(b, 30*time.Minute, func() bool {
		st, err := timers.Status(ctx)
		return err == nil && st.Values() >= uint64(n)
	}, "%d workflows waiting on their pickup timer", n)
	waited := time.Since(start)

	running := liveHeap()
	stopOrch()
	if err := <-odone; err != nil {
		b.Fatal(err)
	}
	o = nil // drop the last reference before measuring
	stopped := liveHeap()

	held := float64(running) - float64(stopped)
	b.ReportMetric(float64(n), "workflows")
	b.ReportMetric(held/(1<<20), "MiB-held")
	b.ReportMetric(held/float64(n), "B/workflow")
	b.ReportMetric(waited.Seconds(), "s-to-park")
	b.Logf("%d workflows in flight, cache %d histories: orchestrator holds %.1f MiB (%.0f B per workflow); live heap %.1f MiB running, %.1f MiB stopped; parked in %s",
		n, cacheSize, held/(1<<20), held/float64(n), float64(running)/(1<<20), float64(stopped)/(1<<20), waited.Round(time.Second))
}

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
