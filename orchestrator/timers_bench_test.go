package orchestrator

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/streams"
)

// BenchmarkTimerService loads N pending timers into the timers bucket, lets
// one timer service hold them, then makes them all due at once and
// measures how fast and how late they fire. N is JETFLOW_BENCH_TIMERS
// (default 100,000). Run:
//
//	JETFLOW_BENCH_TIMERS=1000000 go test -run '^$' -bench TimerService -benchtime 1x -timeout 30m ./orchestrator/
func BenchmarkTimerService(b *testing.B) {
	n := 100_000
	if v := os.Getenv("JETFLOW_BENCH_TIMERS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for i := 0; i < b.N; i++ {
		benchTimers(b, n)
	}
}

func benchTimers(b *testing.B, n int) {
	env := natstest.RunJetStream(b)
	ctx := context.Background()
	kv, err := env.JS.KeyValue(ctx, streams.TimersBucket)
	if err != nil {
		b.Fatal(err)
	}
	// Fill the bucket with async publishes on the bucket's subjects.
	due := time.Now().Add(time.Hour).UTC()
	start := time.Now()
	for i := 0; i < n; i++ {
		id := "w" + strconv.Itoa(i)
		body, _ := json.Marshal(TimerEntry{WorkflowID: id, TimerID: 4, Due: due})
		if _, err := env.JS.PublishAsync("$KV."+streams.TimersBucket+"."+TimerKey(id, 4), body); err != nil {
			b.Fatal(err)
		}
		if i%10000 == 9999 {
			<-env.JS.PublishAsyncComplete()
		}
	}
	<-env.JS.PublishAsyncComplete()
	b.Logf("%d timers written in %s", n, time.Since(start).Round(time.Millisecond))

	clock := &ManualClock{}
	t := &timers{kv: kv, js: env.JS, clock: clock, log: slog.New(slog.DiscardHandler), sweep: time.Hour,
		live: map[string]uint64{}, tombs: map[string]tomb{}}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start = time.Now()
	go func() { done <- t.run(rctx) }()
	natstest.Eventually(b, 10*time.Minute, func() bool { return t.pending() == n }, "timers not loaded")
	loaded := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	b.Logf("loaded %d timers in %s; heap held by the timer service %.1f MiB (%.0f bytes per timer)",
		n, loaded.Round(time.Millisecond), float64(heap)/(1<<20), float64(heap)/float64(n))

	// Throughput: make every timer due at once.
	var fired atomic.Int64
	sub, err := env.NC.Subscribe("wf.*.fired.*", func(*nats.Msg) { fired.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	clock.Advance(time.Hour)
	start = time.Now()
	natstest.Eventually(b, 30*time.Minute, func() bool { return fired.Load() >= int64(n) }, "not all timers fired")
	elapsed := time.Since(start)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "fires/s")
	b.ReportMetric(float64(heap)/float64(n), "heap-bytes/timer")
	b.Logf("fired %d due timers in %s: %.0f fires/s", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())

	// Lateness under normal load: 2,000 timers due over the next 4 seconds.
	const spread = 2000
	dues := make(map[string]time.Time, spread)
	late := make(chan time.Duration, spread)
	lsub, err := env.NC.Subscribe("wf.*.fired.*", func(m *nats.Msg) {
		if d, ok := dues[m.Subject]; ok {
			late <- clock.Now().Sub(d)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer lsub.Unsubscribe()
	base := clock.Now().Add(time.Second)
	for i := 0; i < spread; i++ {
		id := "l" + strconv.Itoa(i)
		dues[streams.FiredSubject(id, 4)] = base.Add(time.Duration(i) * 2 * time.Millisecond)
	}
	for i := 0; i < spread; i++ {
		id := "l" + strconv.Itoa(i)
		body, _ := json.Marshal(TimerEntry{WorkflowID: id, TimerID: 4, Due: dues[streams.FiredSubject(id, 4)]})
		if _, err := kv.Put(ctx, TimerKey(id, 4), body); err != nil {
			b.Fatal(err)
		}
	}
	var lateness []time.Duration
	for len(lateness) < spread {
		select {
		case d := <-late:
			lateness = append(lateness, d)
		case <-time.After(time.Minute):
			b.Fatalf("only %d of %d spread timers fired", len(lateness), spread)
		}
	}
	cancel()
	<-done
	sort.Slice(lateness, func(i, j int) bool { return lateness[i] < lateness[j] })
	q := func(f float64) time.Duration { return lateness[min(len(lateness)-1, int(f*float64(len(lateness))))] }
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "late-p99-ms")
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.Logf("peak RSS of the whole process (embedded nats-server included): %d MiB", ru.Maxrss/1024)
	b.Logf("lateness of %d timers due over 4s: p50 %s p99 %s max %s", spread,
		q(0.5).Round(100*time.Microsecond), q(0.99).Round(100*time.Microsecond), lateness[len(lateness)-1].Round(100*time.Microsecond))
}
