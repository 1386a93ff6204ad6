package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/tracing"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/streams"
)

// devMetricsAddr is the --metrics default of jetflow dev.
const devMetricsAddr = "127.0.0.1:9464"

// obsFlags are the observability flags of the engine commands.
type obsFlags struct {
	// metricsAddr is --metrics: where /metrics, /healthz and /readyz are
	// served; "" serves nothing.
	metricsAddr string
	// metrics is the process's registry, nil without --metrics.
	metrics *metrics.Metrics
	// fs is the flag set, to tell a --metrics given from the default.
	fs *flag.FlagSet
	// soft: the address is jetflow dev's default, not asked for; when it
	// is taken (another jetflow dev) the process runs without metrics.
	soft bool
	// announce, when set, prints where the metrics are served on a line
	// of its own (jetflow dev: the log may be quieted).
	announce func(url string)
}

func (o *obsFlags) register(fs *flag.FlagSet) {
	o.fs = fs
	fs.StringVar(&o.metricsAddr, "metrics", "", `address of the HTTP server of /metrics (Prometheus), /healthz and /readyz, e.g. 127.0.0.1:9464 ("" for none)`)
}

// devDefaults makes --metrics default to devMetricsAddr (jetflow dev).
func (o *obsFlags) devDefaults(fs *flag.FlagSet) {
	f := fs.Lookup("metrics")
	f.DefValue = devMetricsAddr
	_ = f.Value.Set(devMetricsAddr)
	o.soft = true
	o.announce = func(url string) { fmt.Fprintf(os.Stderr, "jetflow dev: metrics on %s\n", url) }
}

// init creates the process's metrics and serves them when --metrics is
// set, and installs the OTLP trace exporter when
// OTEL_EXPORTER_OTLP_ENDPOINT is set. The returned func flushes the traces.
func (o *obsFlags) init(ctx context.Context, log *slog.Logger, service string) (func(), error) {
	if o.metricsAddr != "" {
		o.metrics = metrics.New()
		if err := o.serve(ctx, log); err != nil {
			return nil, err
		}
	}
	shutdown, err := tracing.Setup(ctx, service, os.Getenv)
	if err != nil {
		return nil, err
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}, nil
}

// serve starts the metrics server, before the process connects: it
// answers /healthz, and /readyz with 503, while the process waits for its
// server. Without --metrics it does nothing.
func (o *obsFlags) serve(ctx context.Context, log *slog.Logger) error {
	if o.metrics == nil {
		return nil
	}
	if o.soft && o.fs != nil {
		o.fs.Visit(func(f *flag.Flag) { o.soft = o.soft && f.Name != "metrics" })
	}
	srv, err := metrics.Serve(ctx, o.metricsAddr, o.metrics, log.With("component", "metrics"))
	if err != nil {
		if o.soft {
			log.Warn("no metrics: the default address is taken (pass --metrics ADDR)", "err", err)
			return nil
		}
		return err
	}
	if o.announce != nil {
		o.announce("http://" + srv.Addr() + "/metrics")
	}
	return nil
}

// poll makes readiness depend on conns and starts the gauge pollers of
// cfg, once connected. Without --metrics it does nothing.
func (o *obsFlags) poll(ctx context.Context, log *slog.Logger, cfg metrics.PollConfig, conns ...*nats.Conn) {
	if o.metrics == nil {
		return
	}
	for _, nc := range conns {
		o.metrics.Watch(nc)
	}
	cfg.Logger = log.With("component", "metrics")
	go o.metrics.Poll(ctx, cfg)
}

// connOptions make a connection wait for its server at start and through
// outages, logging each change of state.
func (o *obsFlags) connOptions(log *slog.Logger) []nats.Option {
	m := o.metrics
	return []nats.Option{
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ConnectHandler(func(nc *nats.Conn) {
			// Called only when the first connect was retried.
			log.Info("NATS connected", "url", streams.RedactURL(nc.ConnectedUrl()))
			m.ConnState("reconnected", true)
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return
			}
			log.Warn("NATS disconnected, reconnecting", "err", err)
			m.ConnState("disconnected", false)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "url", streams.RedactURL(nc.ConnectedUrl()))
			m.ConnState("reconnected", true)
		}),
	}
}

// participantConsumers are the consumers of the reference participants.
func participantConsumers() []metrics.Consumer {
	out := make([]metrics.Consumer, 0, 2*len(reference.Names))
	for _, n := range reference.Names {
		out = append(out, metrics.ParticipantConsumer(n), metrics.CallbackConsumer(n))
	}
	return out
}

// supervise runs part until it returns nil or an error that is not
// streams.Transient, or ctx ends: a part that lost its server while
// starting is started again (with a backoff), not the process ended.
func supervise(ctx context.Context, log *slog.Logger, part func(context.Context) error) error {
	pause := time.Second
	for {
		err := part(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if !streams.Transient(err) {
			return err
		}
		log.Warn("NATS went away while starting: starting again", "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}
