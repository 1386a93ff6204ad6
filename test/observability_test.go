package test

import (
	"context"
	"github.com/jetflow-io/jetflow/orchestrator"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// scrape reads url's Prometheus text and returns the value of every
// sample, keyed by the sample as written ("name{labels}").
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sumOf adds the samples of metric whose labels match every label=value
// pair of want.
func sumOf(samples map[string]float64, metric string, want map[string]string) float64 {
	var total float64
	label := regexp.MustCompile(`(\w+)="([^"]*)"`)
	for k, v := range samples {
		name, labels, _ := strings.Cut(k, "{")
		if name != metric {
			continue
		}
		got := map[string]string{}
		for _, m := range label.FindAllStringSubmatch(labels, -1) {
			got[m[1]] = m[2]
		}
		ok := true
		for l, w := range want {
			ok = ok && got[l] == w
		}
		if ok {
			total += v
		}
	}
	return total
}

// TestMetricsMatchOutcomes runs the reference workflow over a mix of
// orders, some of which fail (compensated, manual), with every part
// reporting to one registry served over HTTP, and checks the scraped
// counters against the outcomes: workflows started = the orders, finished
// by status = the statuses List reports, a step latency and attempt per
// result, the manual queue's depth, readiness.
func TestMetricsMatchOutcomes(t *testing.T) {
	s := newStack(t)
	s.metrics = metrics.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.metrics.Watch(s.env.NC)
	srv, err := metrics.Serve(ctx, "127.0.0.1:0", s.metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + srv.Addr()
	s.orchestrator()
	s.participants()
	natstest.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "/readyz never answered 200 with the orchestrator and participants running")

	const n = 100 // one whole run of the mix: every outcome, manual included
	_, _, ids := s.mix("metrics-", n)
	st := s.waitSettled(ids, 90*time.Second)
	want := map[schema.Status]int{}
	for _, id := range ids {
		want[st[id]]++
	}
	if want[schema.StatusManual] == 0 || want[schema.StatusCompensated] == 0 || want[schema.StatusCompleted] == 0 {
		t.Fatalf("the mix did not produce every outcome: %v", want)
	}
	poll := metrics.PollConfig{NC: s.env.NC, JS: s.env.JS, Queues: true, QueueDepth: func(ctx context.Context) (int, int, error) { return orchestrator.QueueDepth(ctx, s.env.JS) }, Consumers: metrics.EngineConsumers}
	if err := s.metrics.PollOnce(ctx, poll, streams.NewHistory(s.env.NC, s.env.JS)); err != nil {
		t.Fatal(err)
	}

	m := scrape(t, url+"/metrics")
	wfType := fulfillment.Intake().WorkflowType
	if got := sumOf(m, "jetflow_workflows_started_total", map[string]string{"type": wfType}); got != n {
		t.Errorf("workflows started of %s = %v, want %d", wfType, got, n)
	}
	for status, count := range want {
		if got := sumOf(m, "jetflow_workflows_finished_total", map[string]string{"type": wfType, "status": string(status)}); got != float64(count) {
			t.Errorf("workflows finished %s = %v, want %d (List)", status, got, count)
		}
	}
	if got := sumOf(m, "jetflow_workflows_finished_total", nil); got != float64(n) {
		t.Errorf("workflows finished, all statuses = %v, want %d", got, n)
	}
	if got := m["jetflow_manual_queue_depth"]; got != float64(want[schema.StatusManual]) {
		t.Errorf("manual queue depth = %v, want %d", got, want[schema.StatusManual])
	}
	// Every order is charged once (declined or not): one final attempt
	// each, its latency observed.
	if got := sumOf(m, "jetflow_step_attempts_count", map[string]string{"service": "payment", "action": "charge"}); got != n {
		t.Errorf("payment.charge final attempts = %v, want %d", got, n)
	}
	if got := sumOf(m, "jetflow_step_duration_seconds_count", map[string]string{"service": "payment", "action": "charge", "outcome": "ok"}); got == 0 {
		t.Error("no payment.charge latency observed")
	}
	// refund fail_n:2 orders retry their refund: retries are counted.
	if got := sumOf(m, "jetflow_step_duration_seconds_count", map[string]string{"service": "payment", "action": "refund", "outcome": "retried"}); got == 0 {
		t.Error("no retried refund attempt observed, though the mix has refunds failing twice")
	}
	for _, c := range []string{"jetflow_decision_duration_seconds_count", "jetflow_replay_duration_seconds_count", "jetflow_history_reads_total"} {
		if m[c] < n {
			t.Errorf("%s = %v, want at least one per workflow (%d)", c, m[c], n)
		}
	}
	if m["jetflow_history_cache_hits_total"]+m["jetflow_history_cache_misses_total"] != m["jetflow_decision_duration_seconds_count"] {
		t.Errorf("cache hits %v + misses %v != decisions %v", m["jetflow_history_cache_hits_total"], m["jetflow_history_cache_misses_total"], m["jetflow_decision_duration_seconds_count"])
	}
	if got := sumOf(m, "jetflow_ready", map[string]string{"component": "orchestrator"}); got != 1 {
		t.Errorf("jetflow_ready{component=orchestrator} = %v, want 1", got)
	}
	if got := sumOf(m, "jetflow_consumer_pending_messages", map[string]string{"consumer": "jetflow-intake"}); got != 0 {
		t.Errorf("intake consumer pending = %v after every order settled, want 0", got)
	}
}

// TestOneOrderIsOneTrace publishes one order that goes through every step
// and checks, with the SDK's in-memory exporter, that all its spans —
// intake, start, every decision, every step — share one trace ID, and
// that each step's span is there.
func TestOneOrderIsOneTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })

	s := newStack(t)
	s.orchestrator()
	s.participants()
	o, _ := fulfillment.MixedOrder("trace-", 40) // completes: charge, reserve, ship, pickup, notify
	s.publishOrder(o)
	st := s.waitSettled([]string{o.OrderID}, 60*time.Second)
	if st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("order %s ended %s, want completed", o.OrderID, st[o.OrderID])
	}
	// The last decision's span ends right after its append; wait for it.
	var spans tracetest.SpanStubs
	natstest.Eventually(t, 10*time.Second, func() bool {
		spans = exp.GetSpans()
		for _, sp := range spans {
			for _, a := range sp.Attributes {
				if a.Key == "jetflow.workflow.status" {
					return true
				}
			}
		}
		return false
	}, "no decision span recorded the workflow's end")

	names := map[string]int{}
	traces := map[string]bool{}
	for _, sp := range spans {
		names[sp.Name]++
		traces[sp.SpanContext.TraceID().String()] = true
	}
	if len(traces) != 1 {
		t.Errorf("the order's %d spans are in %d traces, want 1: %v", len(spans), len(traces), names)
	}
	steps := 0
	for _, c := range s.describe(o.OrderID).History {
		if c.Type == string(schema.KindCommand) {
			steps++
			if names["step "+c.Step] == 0 {
				t.Errorf("no span for step %s; spans: %v", c.Step, names)
			}
		}
	}
	if steps < 4 {
		t.Errorf("only %d commands in the history", steps)
	}
	if names["decide "+fulfillment.Intake().WorkflowType] < steps {
		t.Errorf("%d decision spans for %d commands, want at least one each: %v", names["decide "+fulfillment.Intake().WorkflowType], steps, names)
	}
	if names["intake "+streams.OrderCreated] != 1 {
		t.Errorf("intake spans: %d, want 1: %v", names["intake "+streams.OrderCreated], names)
	}
}

// TestTimerFireJoinsTheTrace lets an order's 72 h pickup deadline fire (the
// orchestrator's clock moved 73 h) and checks that the fire is in the
// order's trace: the fire's span, the fired event's traceparent, and the
// compensating steps after it share the trace of the order's start.
func TestTimerFireJoinsTheTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })

	s, clock := timerStack(t)
	s.orchestrator()
	s.participants()
	o := order("trace-timer-", 0, map[string]string{"pickup": "never"})
	s.publishOrder(o)
	natstest.Eventually(t, 30*time.Second, func() bool { return s.waitingForPickup(o.OrderID) }, "order never waited for its pickup")
	clock.Advance(73 * time.Hour)
	st := s.waitSettled([]string{o.OrderID}, 60*time.Second)
	if st[o.OrderID] != schema.StatusCompensated {
		t.Fatalf("order %s ended %s, want compensated by its deadline", o.OrderID, st[o.OrderID])
	}
	var start, fired string
	for _, ev := range s.history(o.OrderID) {
		switch ev.Value.(type) {
		case *schema.WorkflowStarted:
			start = ev.TraceParent
		case *schema.TimerFired:
			fired = ev.TraceParent
		}
	}
	traceOf := func(tp string) string {
		parts := strings.Split(tp, "-")
		if len(parts) != 4 {
			return ""
		}
		return parts[1]
	}
	if traceOf(start) == "" || traceOf(fired) != traceOf(start) {
		t.Fatalf("fired event traceparent %q, start %q: want the start's trace", fired, start)
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		for _, sp := range exp.GetSpans() {
			if sp.Name == "step payment.refund" {
				return true
			}
		}
		return false
	}, "no refund span after the deadline")
	names := map[string]int{}
	for _, sp := range exp.GetSpans() {
		if sp.SpanContext.TraceID().String() != traceOf(start) {
			t.Errorf("span %q in trace %s, want %s", sp.Name, sp.SpanContext.TraceID(), traceOf(start))
		}
		names[sp.Name]++
	}
	if names["timer fired"] != 1 {
		t.Errorf("timer fired spans: %d, want 1: %v", names["timer fired"], names)
	}
}

// TestSignalKeepsItsSendersTrace sends a pickup signal carrying the order's
// trace context (as a carrier that propagates it would): the recorded
// signal event carries that trace, and the signal's span is in it.
func TestSignalKeepsItsSendersTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })

	s := newStack(t)
	s.orchestrator()
	s.participants()
	o := order("trace-signal-", 0, map[string]string{"pickup": "never"})
	s.publishOrder(o)
	natstest.Eventually(t, 30*time.Second, func() bool { return s.waitingForPickup(o.OrderID) }, "order never waited for its pickup")
	var start string
	for _, ev := range s.history(o.OrderID) {
		if _, ok := ev.Value.(*schema.WorkflowStarted); ok {
			start = ev.TraceParent
		}
	}
	if start == "" {
		t.Fatal("the start event carries no traceparent")
	}
	s.publish("signal.carrier.picked_up."+o.OrderID, []byte(`{"carrier":"DHL"}`), nats.Header{"traceparent": []string{start}})
	st := s.waitSettled([]string{o.OrderID}, 60*time.Second)
	if st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("order %s ended %s, want completed", o.OrderID, st[o.OrderID])
	}
	traceID := strings.Split(start, "-")[1]
	var signal string
	for _, ev := range s.history(o.OrderID) {
		if _, ok := ev.Value.(*schema.Signal); ok {
			signal = ev.TraceParent
		}
	}
	if parts := strings.Split(signal, "-"); len(parts) != 4 || parts[1] != traceID {
		t.Errorf("recorded signal's traceparent %q, want one in trace %s", signal, traceID)
	}
	found := false
	for _, sp := range exp.GetSpans() {
		if strings.HasPrefix(sp.Name, "signal signal.carrier.picked_up.") {
			found = found || sp.SpanContext.TraceID().String() == traceID
		}
	}
	if !found {
		t.Errorf("no signal span in the order's trace %s", traceID)
	}
}
