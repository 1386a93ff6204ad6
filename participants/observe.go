package participants

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/tracing"
	"github.com/jetflow-io/jetflow/schema"
)

// This file holds the library's metric and trace hooks.

// startStep starts the span of one attempt of a step, a child of the
// decision that issued the command (the command's traceparent), and makes
// the step's result carry it.
func (j *job) startStep(ctx context.Context, sc *schema.Command) (context.Context, trace.Span) {
	ctx, span := tracing.Tracer().Start(tracing.Extract(ctx, j.msg.Headers()), "step "+sc.Service+"."+sc.Action,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("jetflow.workflow.id", sc.WorkflowID),
			attribute.Int("jetflow.command.id", sc.ID),
			attribute.Int("jetflow.attempt", j.attempt),
			attribute.Bool("jetflow.compensation", sc.Compensation),
		))
	j.trace = nil
	if span.SpanContext().IsValid() {
		j.trace = nats.Header{}
		tracing.Inject(ctx, j.trace)
	}
	return ctx, span
}

// observeStep records an attempt of sc that took d and ended with outcome
// (metrics.StepOK, StepFailed, StepRetried; "" records nothing).
func (j *job) observeStep(sc *schema.Command, outcome string, d time.Duration, span trace.Span) {
	if outcome == "" {
		return
	}
	span.SetAttributes(attribute.String("jetflow.outcome", outcome))
	if outcome != metrics.StepOK {
		span.SetStatus(codes.Error, outcome)
	}
	j.metrics.Step(sc.Service, sc.Action, outcome, d, j.attempt)
}
