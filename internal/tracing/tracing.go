// Package tracing carries OpenTelemetry trace context through jetflow's
// NATS messages, as W3C traceparent and tracestate headers, and sets up the
// process's tracer provider.
//
// The engine starts its spans with Tracer, which uses the process's global
// tracer provider: without Setup (or with no OTLP endpoint configured) it
// is OpenTelemetry's no-op provider, whose spans are never valid, so
// nothing is recorded and no header is written.
//
// One workflow is one trace: its start message carries the trace context
// of whoever started it (an order.created publisher's own traceparent, a
// span of the caller of orchestrator.Start, or the start's own root
// span); every decision of the workflow reads it back from the start event
// and runs as a child span; every command carries its decision's context
// and every result its step's.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Instrumentation is the name of jetflow's tracer.
const Instrumentation = "github.com/jetflow-io/jetflow"

// HeaderTraceParent is the W3C trace context header jetflow writes.
const HeaderTraceParent = "traceparent"

// propagator is the W3C trace context, used whatever the process's global
// propagator is: the header format is part of the wire.
var propagator = propagation.TraceContext{}

// Tracer is jetflow's tracer from the global tracer provider.
func Tracer() trace.Tracer { return otel.Tracer(Instrumentation) }

// carrier adapts nats.Header to the propagator.
type carrier nats.Header

func (c carrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c carrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the trace context of ctx into h, when ctx holds a valid
// span context; it writes nothing otherwise.
func Inject(ctx context.Context, h nats.Header) {
	if h == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, carrier(h))
}

// Extract returns ctx with the remote span context that h carries, if any.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil || h.Get(HeaderTraceParent) == "" {
		return ctx
	}
	return propagator.Extract(ctx, carrier(h))
}

// FromTraceParent returns ctx with the remote span context of a
// traceparent header value ("" leaves ctx as it is).
func FromTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Extract(ctx, nats.Header{HeaderTraceParent: []string{traceparent}})
}

// Setup installs the process's tracer provider from the OpenTelemetry
// environment that getenv reads: with OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, spans are batched and exported
// over OTLP/HTTP to it, under service.name serviceName unless
// OTEL_SERVICE_NAME says otherwise; with neither set nothing is installed
// and tracing stays a no-op. The returned shutdown flushes the exporter.
func Setup(ctx context.Context, serviceName string, getenv func(string) string) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if endpoint == "" {
		return noop, nil
	}
	if u, err := url.Parse(endpoint); err != nil || u.Host == "" || !strings.HasPrefix(u.Scheme, "http") {
		return noop, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT %q: want an http(s) URL such as http://localhost:4318", endpoint)
	}
	// The exporter reads the OTEL_EXPORTER_OTLP_* variables itself.
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return noop, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		serviceName = name
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", serviceName)))
	if err != nil {
		res = resource.Default()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}
