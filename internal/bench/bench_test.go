package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

func TestDistOf(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	d := distOf(ds)
	if d.N != 100 || d.P50 != 50 || d.P90 != 90 || d.P99 != 99 || d.Max != 100 || d.Mean != 50.5 {
		t.Fatalf("dist %+v", d)
	}
	if d := distOf(nil); d.N != 0 || d.P99 != 0 {
		t.Fatalf("empty dist %+v", d)
	}
	if d := distOf([]time.Duration{1500 * time.Microsecond}); d.P50 != 1.5 || d.P99 != 1.5 {
		t.Fatalf("single dist %+v", d)
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu\n"
	if got := cpuModel(info); got != "Intel(R) Xeon(R) Processor" {
		t.Fatalf("cpuModel = %q", got)
	}
	if got := cpuModel("nothing here"); got != "" {
		t.Fatalf("cpuModel = %q", got)
	}
}

func TestWritesOf(t *testing.T) {
	before := map[string]streamState{
		streams.HistoryStream:              {lastSeq: 100, bytes: 1000},
		"KV_" + streams.IdempotencyBucket:  {lastSeq: 10, bytes: 500},
		"KV_" + streams.LedgerBucketPrefix: {lastSeq: 0, bytes: 0},
		"UNTOUCHED":                        {lastSeq: 7, bytes: 70},
	}
	after := map[string]streamState{
		streams.HistoryStream:                      {lastSeq: 200, bytes: 6000},
		"KV_" + streams.IdempotencyBucket:          {lastSeq: 90, bytes: 1500},
		"KV_" + streams.LedgerBucketPrefix + "pay": {lastSeq: 10, bytes: 300},
		"UNTOUCHED":   {lastSeq: 7, bytes: 70},
		scratchStream: {lastSeq: 5000, bytes: 1 << 20},
		"KV_" + streams.LedgerBucketPrefix + "placed": {lastSeq: 0, bytes: 0},
		streams.CallbacksStream("shipping"):           {lastSeq: 20, bytes: 0},
	}
	w := writesOf(before, after, 10)
	if w.PerOrder != 21 || w.EnginePerOrder != 18 || w.HistoryPerOrder != 10 || w.BytesPerOrder != 630 {
		t.Fatalf("writes %+v", w)
	}
	if _, ok := w.ByStream["UNTOUCHED"]; ok {
		t.Fatal("a stream without writes is listed")
	}
	if _, ok := w.ByStream[scratchStream]; ok {
		t.Fatal("the scratch stream is counted")
	}
}

func TestConfigRefusesNonsense(t *testing.T) {
	for _, c := range []Config{
		{Mix: "some"},
		{Rate: -1},
		{Flood: -1},
		{SyncAlways: true, NatsURL: "nats://127.0.0.1:4222"},
	} {
		if err := c.defaults(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	c := Config{}
	if err := c.defaults(); err != nil || c.Orders != 2000 || c.Mix != MixNone || c.Concurrency <= 0 {
		t.Fatalf("defaults %+v, %v", c, err)
	}
}

// checkSane asserts what any successful run must report.
func checkSane(t *testing.T, r *Result, orders int) {
	t.Helper()
	if r.Finished != orders || r.Statuses[schema.StatusCompleted] != orders || r.Unexpected != 0 {
		t.Fatalf("finished %d of %d, statuses %v, unexpected %d", r.Finished, orders, r.Statuses, r.Unexpected)
	}
	if r.OrdersPerSec <= 0 || r.WallSeconds <= 0 {
		t.Fatalf("throughput %v over %vs", r.OrdersPerSec, r.WallSeconds)
	}
	if r.Writes.PerOrder <= 0 || r.Writes.HistoryPerOrder <= 0 || r.Writes.BytesPerOrder <= 0 {
		t.Fatalf("writes %+v", r.Writes)
	}
	// Every order wrote its order.created and a history of several events.
	if got := r.Writes.ByStream[streams.OrdersStream].WritesPerOrder; got != 1 {
		t.Fatalf("order.created writes per order = %v", got)
	}
	if r.History.EventsPerOrder != r.Writes.HistoryPerOrder {
		t.Fatalf("history events per order %v, history writes per order %v", r.History.EventsPerOrder, r.Writes.HistoryPerOrder)
	}
	for name, d := range map[string]Dist{
		"start_to_done": r.Latency.StartToDone, "publish_to_done": r.Latency.PublishToDone,
		"step_overhead": r.Latency.StepOverhead, "participant_step": r.Latency.ParticipantStep,
	} {
		if d.N == 0 || d.P50 > d.P90 || d.P90 > d.P99 || d.P99 > d.Max || d.P50 < 0 {
			t.Errorf("%s: %+v", name, d)
		}
	}
	if r.Latency.StartToDone.N != orders {
		t.Errorf("start_to_done over %d orders, want %d", r.Latency.StartToDone.N, orders)
	}
}

func TestRunEmbedded(t *testing.T) {
	var progress bytes.Buffer
	r, err := Run(context.Background(), Config{Orders: 40, Concurrency: 16, CeilingMsgs: 500, Progress: &progress})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	checkSane(t, r, 40)
	if r.Ceiling == nil || r.Ceiling.AsyncMsgsPerSec <= 0 || r.Ceiling.SyncMsgsPerSec <= 0 || r.Ceiling.MsgBytes <= 0 {
		t.Fatalf("ceiling %+v", r.Ceiling)
	}
	if _, ok := r.Writes.ByStream[scratchStream]; ok {
		t.Fatal("scratch stream writes counted")
	}
	if r.Resources.CPUSeconds <= 0 || r.Resources.PeakRSSMB <= 0 || !r.Resources.IncludesServer {
		t.Fatalf("resources %+v", r.Resources)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"orders/s", "JETFLOW_HISTORY", "p99", "peak RSS"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Finished != 40 {
		t.Fatalf("JSON round trip: %v, %+v", err, back)
	}
}

// TestRunExternal runs against a server given by URL, as --nats does.
func TestRunExternal(t *testing.T) {
	env := natstest.RunJetStream(t)
	r, err := Run(natstest.Context(t), Config{Orders: 20, Concurrency: 8, CeilingMsgs: -1, NatsURL: env.Server.ClientURL(), Rate: 200})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, r, 20)
	if r.Ceiling != nil || r.Resources.IncludesServer {
		t.Fatalf("ceiling %+v, resources %+v", r.Ceiling, r.Resources)
	}
}

// TestRunExternalRefusesADeployment: a server whose jetflow streams were
// written to is refused without Reuse, naming the stream, and nothing is
// written to it; with Reuse the run goes on.
func TestRunExternalRefusesADeployment(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := natstest.Context(t)
	if _, err := env.JS.Publish(ctx, streams.OrderCreated, []byte(`{"order_id":"in-use"}`)); err != nil {
		t.Fatal(err)
	}
	_, err := Run(ctx, Config{Orders: 10, Concurrency: 4, CeilingMsgs: -1, NatsURL: env.Server.ClientURL()})
	if err == nil || !strings.Contains(err.Error(), "already holds a jetflow deployment") || !strings.Contains(err.Error(), streams.OrdersStream) {
		t.Fatalf("bench on a deployment in use: %v; want it refused naming %s", err, streams.OrdersStream)
	}
	orders, err := env.JS.Stream(ctx, streams.OrdersStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := orders.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("%d orders after the refused run, want the 1 there before", n)
	}
	r, err := Run(ctx, Config{Orders: 10, Concurrency: 4, CeilingMsgs: -1, NatsURL: env.Server.ClientURL(), Reuse: true})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, r, 10)

	// A workflow started through the API writes its history only.
	api := natstest.RunJetStream(t)
	if _, err := orchestrator.Start(ctx, api.JS, "order", "started-by-api", map[string]string{"order_id": "started-by-api"}, "test"); err != nil {
		t.Fatal(err)
	}
	_, err = Run(ctx, Config{Orders: 10, Concurrency: 4, CeilingMsgs: -1, NatsURL: api.Server.ClientURL()})
	if err == nil || !strings.Contains(err.Error(), "already holds a jetflow deployment") || !strings.Contains(err.Error(), streams.HistoryStreamOf("started-by-api")) {
		t.Fatalf("bench on a deployment with a history only: %v; want it refused naming %s", err, streams.HistoryStreamOf("started-by-api"))
	}
}

// TestRunOrchestrators runs three orchestrators side by side: every order
// finishes, the report sums their decisions, cache lookups and fence
// conflicts, and a workflow's decisions after its first find it cached.
func TestRunOrchestrators(t *testing.T) {
	env := natstest.RunJetStream(t)
	r, err := Run(natstest.Context(t), Config{Orders: 30, Concurrency: 10, CeilingMsgs: -1, NatsURL: env.Server.ClientURL(), Orchestrators: 3, Affinity: true})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, r, 30)
	d := r.Decisions
	if d == nil || r.Config.Orchestrators != 3 {
		t.Fatalf("decisions %+v, config %+v", d, r.Config)
	}
	// Every order takes at least its first decision and its four steps'.
	if d.Decisions < 5*30 || d.CacheHits+d.CacheMisses < d.Decisions || d.HitRate < 0 || d.HitRate > 1 || d.FenceConflicts > d.Decisions {
		t.Fatalf("decisions %+v", d)
	}
	// Affinity: after its first decision, a workflow's wakes reach the
	// process that decided it and has it cached (without it, each wake
	// goes to whichever of the three pulls it: about half hit).
	if d.Started != 30 || d.LaterHitRate < 0.9 {
		t.Errorf("%d workflows started, %.1f%% of the later decisions found their workflow cached, want 90%% or more", d.Started, 100*d.LaterHitRate)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "3 orchestrators") || !strings.Contains(text.String(), "cache hit rate") {
		t.Errorf("text report:\n%s", text.String())
	}
}

// TestRunFlood floods one waiting order while the measured orders run: the
// report says when every signal was recorded and decided, and the measured
// orders all finish.
func TestRunFlood(t *testing.T) {
	var progress bytes.Buffer
	r, err := Run(context.Background(), Config{Orders: 20, Concurrency: 8, CeilingMsgs: -1, Flood: 300, Progress: &progress})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	// The writes count the flood's too; the orders must all complete.
	if r.Finished != 20 || r.Statuses[schema.StatusCompleted] != 20 || r.Latency.StartToDone.N != 20 {
		t.Fatalf("finished %d of 20, statuses %v, e2e over %d", r.Finished, r.Statuses, r.Latency.StartToDone.N)
	}
	f := r.Flood
	if f == nil || f.Signals != 300 || f.Recorded != 300 || f.RecordedSeconds <= 0 || f.DecidedSeconds < f.RecordedSeconds {
		t.Fatalf("flood %+v", f)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "decided by the orchestrator") {
		t.Errorf("text report lacks the flood:\n%s", text.String())
	}
}

// TestAnalyseTakesAnOrderPastTheArchiveAsSeen: an order whose history has
// left the archive too by the end of a long run (--archive-retention
// shorter than the run) is counted with the status its end event had when
// it was seen, as aged out, not as running and unexpected.
func TestAnalyseTakesAnOrderPastTheArchiveAsSeen(t *testing.T) {
	env := natstest.RunJetStream(t)
	now := time.Now()
	orders := []*order{{id: "gone-1", want: schema.StatusCompleted, published: now.Add(-time.Second), done: now, status: schema.StatusCompleted}}
	res := &Result{}
	if err := analyse(context.Background(), streams.NewHistory(env.NC, env.JS), orders, res); err != nil {
		t.Fatal(err)
	}
	if res.Statuses[schema.StatusCompleted] != 1 || res.Unexpected != 0 || res.AgedOut != 1 {
		t.Fatalf("statuses %v, unexpected %d, aged out %d; want 1 completed, aged out", res.Statuses, res.Unexpected, res.AgedOut)
	}
}
