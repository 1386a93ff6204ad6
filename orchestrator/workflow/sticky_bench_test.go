package workflow_test

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
)

// ticker takes signal "tick" for ever and records a side effect for each:
// a workflow whose history grows by two events per wake.
func ticker(ctx workflow.Context, _ struct{}) (int, error) {
	total := 0
	for {
		var n int
		if err := workflow.ReceiveSignal(ctx, "tick").Decode(&n); err != nil {
			return total, err
		}
		total += workflow.SideEffect(ctx, func() int { return n })
	}
}

// tickerHistory is a ticker's history of n events (n odd): the start, then
// (signal, side effect) pairs.
func tickerHistory(b *testing.B, n int) []workflow.Event {
	raw := func(v any) schema.Raw {
		r, err := schema.EncodeRaw(v)
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	t0 := time.Unix(1_700_000_000, 0)
	evs := []workflow.Event{{Seq: 1, Time: t0, Value: &schema.WorkflowStarted{WorkflowID: "w", Type: "ticker", Input: raw(struct{}{})}}}
	for i := 1; len(evs) < n; i++ {
		seq := uint64(len(evs) + 1)
		evs = append(evs,
			workflow.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Millisecond), Value: &schema.Signal{Name: "tick", Payload: raw(i)}},
			workflow.Event{Seq: seq + 1, Time: t0.Add(time.Duration(seq) * time.Millisecond), Value: &schema.Marker{ID: i, Name: "side_effect", Value: raw(i)}})
	}
	return evs
}

// BenchmarkDecision is the CPU one decision of a ticker costs at a history
// of 11, 1,001 and 10,001 events: kept live, fed the new signal and its own
// last decision back (sticky), against a full replay of the history and the
// new signal. Sticky stays flat; a full replay grows with the history.
//
//	go test -run '^$' -bench 'BenchmarkDecision' -benchmem ./orchestrator/workflow/
func BenchmarkDecision(b *testing.B) {
	reg := workflow.NewRegistry()
	workflow.Register(reg, "ticker", ticker)
	fn, _ := reg.Lookup("ticker")
	tick, _ := schema.EncodeRaw(7)
	for _, n := range []int{11, 1001, 10001} {
		hist := tickerHistory(b, n)
		b.Run("events="+strconv.Itoa(n)+"/sticky", func(b *testing.B) {
			out, live := workflow.Start(fn, "w", hist, nil)
			if live == nil || len(out.Decisions) != 0 {
				b.Fatalf("start: %+v", out)
			}
			defer live.Close()
			seq := hist[len(hist)-1].Seq
			var mine []schema.Kinded // the last decision, as appended
			b.ReportAllocs()
			for b.Loop() {
				var evs []workflow.Event
				for _, d := range mine {
					seq++
					evs = append(evs, workflow.Event{Seq: seq, Value: d})
				}
				seq++
				evs = append(evs, workflow.Event{Seq: seq, Value: &schema.Signal{Name: "tick", Payload: tick}})
				out, ok := live.Advance(evs)
				if !ok || len(out.Decisions) != 1 {
					b.Fatalf("advance: %v %+v", ok, out)
				}
				mine = out.Decisions
			}
		})
		b.Run("events="+strconv.Itoa(n)+"/replay", func(b *testing.B) {
			h := append(hist[:len(hist):len(hist)], workflow.Event{Seq: uint64(n + 1), Value: &schema.Signal{Name: "tick", Payload: tick}})
			b.ReportAllocs()
			for b.Loop() {
				out := workflow.Replay(fn, "w", h, nil)
				if len(out.Decisions) != 1 {
					b.Fatalf("replay: %+v", out)
				}
			}
		})
	}
}

// BenchmarkLiveWorkflowMemory is what a kept live workflow holds: a ticker
// (one coroutine) ten events in, parked at its wait. The bytes/live metric
// is the growth of heap and goroutine stacks per kept workflow.
//
//	go test -run '^$' -bench 'BenchmarkLiveWorkflowMemory' ./orchestrator/workflow/
func BenchmarkLiveWorkflowMemory(b *testing.B) {
	reg := workflow.NewRegistry()
	workflow.Register(reg, "ticker", ticker)
	fn, _ := reg.Lookup("ticker")
	hist := tickerHistory(b, 11)
	const n = 2000
	for b.Loop() {
		var before, after runtimeMem
		before.read()
		lives := make([]*workflow.Live, 0, n)
		for range n {
			_, l := workflow.Start(fn, "w", hist, nil)
			lives = append(lives, l)
		}
		after.read()
		b.ReportMetric(float64(after.total()-before.total())/n, "bytes/live")
		for _, l := range lives {
			l.Close()
		}
	}
}

type runtimeMem struct{ heap, stack uint64 }

func (m *runtimeMem) read() {
	runtime.GC()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.heap, m.stack = s.HeapAlloc, s.StackInuse
}

func (m *runtimeMem) total() uint64 { return m.heap + m.stack }
