package orchestrator

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/tracing"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// This file holds the runtime's metric and trace hooks, so the decision
// loop, intake, signals and timers each call one line.

// Span attribute keys.
const (
	attrWorkflowID   = attribute.Key("jetflow.workflow.id")
	attrWorkflowType = attribute.Key("jetflow.workflow.type")
	attrDecisions    = attribute.Key("jetflow.decisions")
	attrStatus       = attribute.Key("jetflow.workflow.status")
	attrHistorySeq   = attribute.Key("jetflow.history.seq")
)

// startSpan starts the span of a workflow's start: a child of the span in
// ctx (an intake's, a caller's), else the root of the workflow's trace.
func startSpan(ctx context.Context, wfType, id string) (context.Context, trace.Span) {
	return tracing.Tracer().Start(ctx, "start "+wfType, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrWorkflowID.String(id), attrWorkflowType.String(wfType)))
}

// intakeSpan starts the span of one order's intake, a child of the trace
// context its publisher sent, if any.
func intakeSpan(ctx context.Context, m jetstream.Msg) (context.Context, trace.Span) {
	return tracing.Tracer().Start(tracing.Extract(ctx, m.Headers()), "intake "+m.Subject(), trace.WithSpanKind(trace.SpanKindConsumer))
}

// startDecision starts the span of one decision of st, in the workflow's
// trace (its start event's traceparent), and makes every message the
// decision appends carry it.
func (w *worker) startDecision(ctx context.Context, id string, st *state) trace.Span {
	ctx, span := tracing.Tracer().Start(tracing.FromTraceParent(ctx, st.trace), "decide "+st.start.Type,
		trace.WithAttributes(attrWorkflowID.String(id), attrWorkflowType.String(st.start.Type), attrHistorySeq.Int64(int64(st.lastSeq))))
	w.trace = nil
	if span.SpanContext().IsValid() {
		w.trace = nats.Header{}
		tracing.Inject(ctx, w.trace)
	}
	return span
}

// observeAppend records a stored decision: the workflow's start when it
// is its first decision (first), its end when it finished.
func (w *worker) observeAppend(st *state, first bool, out workflow.Outcome, span trace.Span) {
	m := w.o.cfg.Metrics
	if first {
		m.WorkflowStarted(st.start.Type)
	}
	span.SetAttributes(attrDecisions.Int(len(out.Decisions)))
	switch {
	case out.Finished != nil:
		m.WorkflowFinished(st.start.Type, string(out.Finished.Status))
		span.SetAttributes(attrStatus.String(string(out.Finished.Status)))
	case out.Blocked != nil:
		span.SetStatus(codes.Error, "blocked: "+streams.Clip(out.Blocked.Reason, 256))
	}
}

// hasDecision reports whether the history evs holds a decision: a workflow's
// first decision is the one appended on a history without any. Fenced,
// exactly one orchestrator stores it.
func hasDecision(evs []workflow.Event) bool {
	for _, ev := range evs {
		switch ev.Value.(type) {
		case *schema.Command, *schema.Marker, *schema.TimerStarted, *schema.TimerCancelled,
			*schema.WorkflowFinished, *schema.WorkflowBlocked:
			return true
		}
	}
	return false
}

// observeRefused counts a message dead-lettered under origin with reason;
// a refused signal is also counted among the signals, as late when its
// workflow had finished.
func (o *Orchestrator) observeRefused(origin, reason string) {
	m := o.cfg.Metrics
	m.DeadLetter(origin, reason)
	if origin == "signal" {
		if streams.ReasonClass(reason) == streams.ReasonFinishedWorkflow {
			m.Signal(metrics.SignalLate)
		} else {
			m.Signal(metrics.SignalRefused)
		}
	}
}

// observeRecorded counts a signal recorded in its workflow's history.
func (o *Orchestrator) observeRecorded() { o.cfg.Metrics.Signal(metrics.SignalRecorded) }

// traced returns ctx with the trace context of the decision being taken,
// if any.
func (w *worker) traced(ctx context.Context) context.Context {
	return tracing.Extract(ctx, w.trace)
}

// traceParent returns the traceparent of the span context in ctx, or "".
func traceParent(ctx context.Context) string {
	h := nats.Header{}
	tracing.Inject(ctx, h)
	return h.Get(tracing.HeaderTraceParent)
}

// traceFire starts the span of a timer's fire, in the trace of the
// decision that started the timer, and makes the fire message h carry it.
// The returned func ends the span.
func traceFire(ctx context.Context, e TimerEntry, h nats.Header) (end func()) {
	if e.Trace == "" {
		return func() {}
	}
	ctx, span := tracing.Tracer().Start(tracing.FromTraceParent(ctx, e.Trace), "timer fired",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrWorkflowID.String(e.WorkflowID), attribute.Int("jetflow.timer.id", e.TimerID)))
	tracing.Inject(ctx, h)
	return func() { span.End() }
}

// traceSignal starts the span of a signal whose sender sent a trace
// context (a traceparent header), as its child; the recorded signal event
// carries it. A signal without one starts no trace. The returned func ends
// the span.
func traceSignal(ctx context.Context, m jetstream.Msg) (context.Context, func()) {
	if m.Headers().Get(tracing.HeaderTraceParent) == "" {
		return ctx, func() {}
	}
	ctx, span := tracing.Tracer().Start(tracing.Extract(ctx, m.Headers()), "signal "+m.Subject(), trace.WithSpanKind(trace.SpanKindConsumer))
	return ctx, func() { span.End() }
}
