// Package orchestrator is the runtime that drives workflows. It consumes
// the history events that call for a decision (a start, a result), replays
// the workflow's history through its code, and appends the next decision,
// each message fenced on the workflow's subject tree.
//
// Everything it needs is in JetStream; any number of orchestrators may run
// against the same streams. It keeps a bounded cache of histories and reads
// only the events it has not seen, and keeps the workflows it decided last
// live between decisions, so a wake feeds them only the new events (sticky
// execution); losing either costs a replay, never a different decision.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/tracing"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Config configures an Orchestrator.
type Config struct {
	// NC and JS are the connection to NATS. Required.
	NC *nats.Conn
	JS jetstream.JetStream
	// Registry holds the workflow functions this orchestrator can run.
	// Required.
	Registry *workflow.Registry
	// Intake, if set, starts a workflow for every message on order.created.
	Intake *Intake
	// Logger receives the runtime's log. Default: discarded.
	Logger *slog.Logger
	// Workers is the number of decision loops. A loop takes one workflow
	// with all of its waiting events at a time, and no other loop decides
	// that workflow meanwhile. Default 8 x GOMAXPROCS.
	Workers int
	// CacheSize bounds the number of workflow histories kept in memory.
	// Default 10,000.
	CacheSize int
	// StickyWorkflows bounds the workflows kept live between decisions
	// (sticky execution): their coroutines stay parked where they wait, so
	// the next decision feeds them only the new events instead of
	// replaying the whole history. Each holds its goroutines (a few KiB
	// each, see docs/BENCHMARKS.md); beyond the bound, the one decided
	// longest ago is released and replays in full at its next decision.
	// At most CacheSize. Default DefaultStickyWorkflows (10,000); negative
	// turns sticky execution off.
	StickyWorkflows int
	// VerifySticky replays every sticky decision in full as well and
	// takes the full replay's outcome when they differ, logging an error
	// and counting it (jetflow_sticky_mismatches_total). It doubles the
	// CPU of a decision: for tests (workflowtest sets it) and for
	// diagnosing a workflow whose code is suspected of depending on more
	// than its history.
	VerifySticky bool
	// AckWait of the shared consumers: how long a decision may take before
	// JetStream gives its event to another orchestrator. Default 30s.
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of one message on each consumer of
	// this orchestrator; the last delivery is dead-lettered before it is
	// handled. Zero fields take the streams defaults.
	MaxDeliver MaxDeliver
	// Clock drives the timer service. Default SystemClock.
	Clock Clock
	// TimerSweep is how often the timer service re-reads the whole timers
	// bucket, in case its watch missed an entry. Default 30s.
	TimerSweep time.Duration
	// LateSignals start a workflow when a signal arrives for a workflow
	// that has already finished (the signal also goes to dead-letter).
	LateSignals []LateSignalRoute
	// MaxInputSize bounds a workflow's encoded input: a workflow whose
	// input is larger is parked (blocked, with the reason) at its first
	// decision, before it issues any command, so it never charges a
	// customer and then sticks on a command too large to send. Any one
	// decision message larger than the server's max payload parks the
	// workflow too. A signal whose body is larger is dead-lettered, so the
	// history event that records it always fits. Default: the connection's
	// max payload / 4 (256 KiB on a default server).
	MaxInputSize int
	// SignalRules check signals against the recorded history of the
	// workflow they are sent to before they are recorded or routed late
	// (see SignalRule). A signal with no rule is recorded as sent.
	SignalRules []SignalRule
	// MaxPendingSignals caps the signals a workflow has recorded and not
	// yet received: more are dead-lettered with the reason, so a flood
	// cannot grow one history without bound. Default
	// DefaultMaxPendingSignals (1,000).
	MaxPendingSignals int
	// Retention is how long a finished workflow (completed, compensated,
	// failed, cancelled, terminated, resolved; never manual or blocked)
	// stays in the history stream once it ended: then it is archived
	// (streams.ArchiveStream) and removed. Default 0: kept for ever, no
	// archiver runs (the jetflow binary's --retention defaults to
	// DefaultRetention, 7 days).
	Retention time.Duration
	// Metrics receives the runtime's metrics: decisions, replays, cache
	// and history reads, workflows started and finished, timers, signals,
	// dead letters, readiness (internal/metrics). Default: none.
	Metrics *metrics.Metrics
	// Affinity routes each workflow's wakes to the orchestrator process
	// that owns it (see affinity), which needs the orchestrator role's
	// permission on streams.AffinityPrefix. Default off in the library
	// (every process decides whatever it pulls); the jetflow binary turns
	// it on unless --affinity=false.
	Affinity bool
}

func (c *Config) validate() error {
	if c.NC == nil || c.JS == nil {
		return errors.New("orchestrator: Config.NC and Config.JS are required")
	}
	if c.Registry == nil {
		return errors.New("orchestrator: Config.Registry is required")
	}
	if c.Intake != nil && (c.Intake.WorkflowType == "" || c.Intake.Decode == nil) {
		return errors.New("orchestrator: Intake needs WorkflowType and Decode")
	}
	if c.Intake != nil {
		if _, ok := c.Registry.Lookup(c.Intake.WorkflowType); !ok {
			return fmt.Errorf("orchestrator: intake workflow type %q is not registered", c.Intake.WorkflowType)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Workers <= 0 {
		c.Workers = 8 * runtime.GOMAXPROCS(0)
	}
	if c.CacheSize <= 0 {
		c.CacheSize = 10000
	}
	if c.StickyWorkflows == 0 {
		c.StickyWorkflows = DefaultStickyWorkflows
	}
	c.StickyWorkflows = min(c.StickyWorkflows, c.CacheSize)
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if err := c.MaxDeliver.validate(); err != nil {
		return err
	}
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	if c.TimerSweep <= 0 {
		c.TimerSweep = 30 * time.Second
	}
	if c.MaxInputSize <= 0 {
		c.MaxInputSize = streams.MaxPayload(c.NC) / 4
	}
	if c.Retention < 0 {
		return fmt.Errorf("orchestrator: Retention %s: must be 0 (keep for ever) or positive", c.Retention)
	}
	if c.MaxPendingSignals < 0 {
		return fmt.Errorf("orchestrator: MaxPendingSignals %d: must be positive", c.MaxPendingSignals)
	}
	if c.MaxPendingSignals == 0 {
		c.MaxPendingSignals = DefaultMaxPendingSignals
	}
	seen := map[[2]string]bool{}
	for _, r := range c.SignalRules {
		if r.WorkflowType == "" || r.Signal == "" || (r.Check == nil && !r.Once) {
			return fmt.Errorf("orchestrator: signal rule %q of %q: needs WorkflowType, Signal, and Check or Once", r.Signal, r.WorkflowType)
		}
		if seen[[2]string{r.WorkflowType, r.Signal}] {
			return fmt.Errorf("orchestrator: two signal rules for %q of %q", r.Signal, r.WorkflowType)
		}
		seen[[2]string{r.WorkflowType, r.Signal}] = true
	}
	for _, r := range c.LateSignals {
		if _, ok := c.Registry.Lookup(r.Start); !ok {
			return fmt.Errorf("orchestrator: late signal %q of %q starts %q, which is not registered", r.Signal, r.WorkflowType, r.Start)
		}
	}
	return nil
}

// Orchestrator runs workflows. Create it with New and start it with Run.
type Orchestrator struct {
	cfg    Config
	log    *slog.Logger
	hist   *streams.History
	timers *timers
	// waiting memoizes the signal cap's replays.
	waiting waitingMemo
	// accepting serializes the update acceptances of one workflow here.
	accepting keyedMutex
	// signalPurgeOffUntil is when the archiver's removals of recorded
	// signals resume after one failed (unix nanoseconds; see
	// deleteRecordedSignals).
	signalPurgeOffUntil atomic.Int64
	// affinityStats counts the wakes affinity forwarded and received; nil
	// until Run starts it, and without affinity.
	affinityStats *affinityStats
}

// New validates cfg and returns an Orchestrator. The streams and buckets
// must exist (streams.Ensure).
func New(cfg Config) (*Orchestrator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := cfg.JS.KeyValue(ctx, streams.TimersBucket)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: timers bucket: %w", err)
	}
	o := &Orchestrator{
		cfg: cfg, log: cfg.Logger, hist: streams.NewHistory(cfg.NC, cfg.JS),
		timers: &timers{kv: kv, js: cfg.JS, clock: cfg.Clock, log: cfg.Logger, sweep: cfg.TimerSweep, live: map[string]uint64{}, tombs: map[string]tomb{}},
	}
	o.timers.hist, o.timers.park = o.hist, o.parkTaken
	o.timers.onFire = cfg.Metrics.TimerFired
	cfg.Metrics.PendingTimers(o.PendingTimers)
	return o, nil
}

// PendingTimers is the number of timers this orchestrator holds, waiting.
func (o *Orchestrator) PendingTimers() int { return o.timers.pending() }

// startErr is what Run returns when starting failed with err: nothing when
// ctx was cancelled meanwhile (a stop during start-up is a stop).
func startErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Run consumes until ctx is done. It returns nil on cancellation.
func (o *Orchestrator) Run(ctx context.Context) error {
	// A server that is away at start is waited for (streams.Await).
	// One consumer per stream of the history (one, unless it is
	// partitioned), all feeding the same scheduler.
	var conss []jetstream.Consumer
	err := streams.Await(ctx, o.log, "create the orchestrator's consumer", func(ctx context.Context) (err error) {
		conss, err = streams.HistoryConsumers(ctx, o.cfg.JS, streams.OrchestratorConsumerConfig(o.cfg.AckWait, o.cfg.MaxDeliver.Decisions))
		return err
	})
	if err == nil && len(conss) == 0 {
		return nil // stopped while waiting
	}
	if err != nil {
		return startErr(ctx, fmt.Errorf("orchestrator: consumer: %w", err))
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The decision loops share one cache and take whole workflows from the
	// scheduler: the consume callback below never waits for a decision.
	sched := newScheduler()
	defer sched.close() // runs before wg.Wait, deferred earlier
	cache := newCache(o.cfg.CacheSize)
	cache.kept = keptLives{max: o.cfg.StickyWorkflows, metrics: o.cfg.Metrics}
	defer cache.releaseAll() // what the loops still hand back is closed too
	for range o.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{o: o, cache: cache}
			for {
				id, msgs, ok := sched.take()
				if !ok {
					return
				}
				w.handleBatch(ctx, id, msgs)
				sched.done(id)
			}
		}()
	}
	// Affinity hands the wakes of a workflow another process owns to that
	// process, whose cache holds it.
	aff, err := o.startAffinity(ctx, sched.put)
	if err != nil {
		return startErr(ctx, err)
	}
	defer aff.stop()
	for _, cons := range conss {
		cc, err := cons.Consume(func(m jetstream.Msg) {
			// A subject that names no workflow is keyed by what parsing gave
			// (possibly ""), and dead-lettered by its loop.
			id, _, _ := streams.ParseSubject(m.Subject())
			if aff.forward(id, m) {
				return
			}
			sched.put(id, m)
		}, jetstream.PullMaxMessages(max(64, 512/len(conss))), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			o.log.Debug("orchestrator consume", "err", err)
		}))
		if err != nil {
			return startErr(ctx, fmt.Errorf("orchestrator: consume: %w", err))
		}
		defer cc.Stop()
	}

	if o.cfg.Intake != nil {
		stop, err := o.runIntake(ctx)
		if err != nil {
			return startErr(ctx, err)
		}
		defer stop()
	}
	stopSignals, err := o.runSignals(ctx)
	if err != nil {
		return startErr(ctx, err)
	}
	defer stopSignals()
	stopHandlers, err := o.runHandlers(ctx)
	if err != nil {
		return startErr(ctx, err)
	}
	defer stopHandlers()
	if o.cfg.Retention > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.runArchiver(ctx)
		}()
	}
	timersDone := make(chan error, 1)
	go func() { timersDone <- o.timers.run(ctx) }()
	defer func() { cancel(); <-timersDone }()
	o.log.Info("orchestrator running", "workflows", o.cfg.Registry.Names(), "workers", o.cfg.Workers)
	o.cfg.Metrics.SetReady("orchestrator", true)
	defer o.cfg.Metrics.SetReady("orchestrator", false)
	select {
	case <-ctx.Done():
		return nil
	case err := <-timersDone:
		timersDone <- err // for the deferred wait
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("orchestrator: timer service: %w", err)
	}
}

// Start begins workflow id of type wfType with input, unless a workflow with
// that ID was started before: starting is idempotent and the second start
// reports started=false. The start is acknowledged by JetStream when Start
// returns nil. An input whose start event is larger than the server's max
// payload is refused with ErrTooLarge, before anything is written.
// IDs in the engine's namespace (streams.ReservedIDPrefix) are
// refused: the engine starts those itself.
func Start(ctx context.Context, js jetstream.JetStream, wfType, id string, input any, source string) (started bool, err error) {
	if err := streams.ValidUserID(id); err != nil {
		return false, err
	}
	return start(ctx, js, wfType, id, input, source)
}

// start is Start for any valid ID, the engine's own included.
func start(ctx context.Context, js jetstream.JetStream, wfType, id string, input any, source string) (started bool, err error) {
	if err := streams.ValidID(id); err != nil {
		return false, err
	}
	raw, err := schema.EncodeRaw(input)
	if err != nil {
		return false, fmt.Errorf("encode input: %w", err)
	}
	m, err := streams.NewMsg(streams.StartSubject(id), &schema.WorkflowStarted{WorkflowID: id, Type: wfType, Input: raw, Source: source})
	if err != nil {
		return false, err
	}
	m.Header.Set(jetstream.MsgIDHeader, "start-"+id)
	m.Header.Set(schema.HeaderWorkflowID, id)
	// The workflow's trace: every decision of it joins this span's trace.
	ctx, span := startSpan(ctx, wfType, id)
	defer span.End()
	tracing.Inject(ctx, m.Header)
	if err := checkStartSize(m, streams.MaxPayload(js.Conn())); err != nil {
		return false, err
	}
	// The fence is on the start subject alone: a workflow starts once, and a
	// stray message elsewhere in its tree cannot stop it from starting.
	return streams.PublishFirst(ctx, js, m)
}
