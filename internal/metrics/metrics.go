// Package metrics owns every Prometheus collector of a jetflow process:
// one registry per process (never the global default, so two engines in
// one test binary do not collide), the hooks the engine calls on its hot
// paths, the pollers that read gauges from JetStream, and the HTTP server
// of /metrics, /healthz and /readyz.
//
// Every hook is a method on *Metrics that does nothing on a nil receiver,
// so an engine built without metrics pays one nil check per event. Labels
// are bounded: workflow types, statuses, services and actions, origins and
// short reason classes, never a workflow ID.
package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "jetflow"

// Metrics is the set of collectors of one process. Create it with New; a
// nil *Metrics is valid and records nothing.
type Metrics struct {
	// Registry holds every collector; /metrics serves it.
	Registry *prometheus.Registry

	workflowsStarted  *prometheus.CounterVec
	workflowsFinished *prometheus.CounterVec
	workflowsArchived prometheus.Counter
	archiveDelay      prometheus.Histogram
	archiveLag        prometheus.Gauge
	manualQueue       prometheus.Gauge
	blocked           prometheus.Gauge

	stepDuration *prometheus.HistogramVec
	stepAttempts *prometheus.HistogramVec

	decisionDuration prometheus.Histogram
	replayDuration   prometheus.Histogram
	cacheHits        prometheus.Counter
	cacheMisses      prometheus.Counter
	fenceConflicts   prometheus.Counter
	historyReads     prometheus.Counter
	historyEvents    prometheus.Counter
	stickyHits       prometheus.Counter
	stickyMisses     prometheus.Counter
	stickyMismatches prometheus.Counter
	stickyWorkflows  prometheus.Gauge

	deadLetters    *prometheus.CounterVec
	deadStored     *prometheus.GaugeVec
	streamSubjects *prometheus.GaugeVec
	streamMessages *prometheus.GaugeVec
	streamBytes    *prometheus.GaugeVec
	streamMaxBytes *prometheus.GaugeVec
	timerLateness  prometheus.Histogram
	signals        *prometheus.CounterVec

	consumerPending     *prometheus.GaugeVec
	consumerAckPending  *prometheus.GaugeVec
	consumerRedelivered *prometheus.GaugeVec
	pollErrors          prometheus.Counter

	natsConnected prometheus.Gauge
	natsChanges   *prometheus.CounterVec
	readyGauge    *prometheus.GaugeVec

	mu    sync.Mutex
	ready map[string]*atomic.Bool
	conns []*nats.Conn
	// steps holds the resolved children of the step collectors, so a
	// step costs atomic adds once its action was seen.
	steps sync.Map // stepKey -> *stepChildren
}

type stepKey struct{ service, action, outcome string }

type stepChildren struct {
	duration prometheus.Observer
	attempts prometheus.Observer
}

// Outcomes of a step attempt (label outcome of jetflow_step_duration_seconds).
const (
	StepOK      = "ok"
	StepFailed  = "failed"  // final failure result
	StepRetried = "retried" // retryable failure, the command is redelivered
)

// Outcomes of a signal (label outcome of jetflow_signals_total).
const (
	SignalRecorded = "recorded"
	SignalRefused  = "refused"
	SignalLate     = "late"
	// SignalUnsent: a workflow's SignalExternal that the full signals
	// stream refused to store (its future failed; nothing was sent).
	SignalUnsent = "unsent"
)

// New returns a Metrics with every collector registered on a fresh
// registry, with the Go runtime and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{Registry: r, ready: map[string]*atomic.Bool{}}
	f := factory{r}
	m.workflowsStarted = f.counterVec("workflows_started_total", "Workflows started (their first decision recorded) by this process, by workflow type.", "type")
	m.workflowsFinished = f.counterVec("workflows_finished_total", "Workflows whose end this process recorded, by type and final status.", "type", "status")
	m.workflowsArchived = f.counter("workflows_archived_total", "Finished workflows this process archived (JETFLOW_ARCHIVE) and removed from the history stream.")
	m.archiveDelay = f.histogram("archive_delay_seconds", "How long past its due time (its end's copy in the index plus the retention) each end waited for the archiver to settle it (archived, or found archived or reopened already): near 0 while archival keeps up.", []float64{1, 5, 15, 60, 300, 600, 1800, 3600, 21600, 86400})
	m.archiveLag = f.gauge("archive_lag_seconds", "How far past its due time the oldest end this process's archiver fetched last was: 0 while it waits for ends to come due; growing while archival is slow or failing.")
	m.manualQueue = f.gauge("manual_queue_depth", "Workflows ended manual (wf.*.done.manual in the history stream): the manual-intervention queue.")
	m.blocked = f.gauge("workflows_blocked", "Workflows parked blocked and not ended (the code no longer matches their history).")
	m.stepDuration = f.histogramVec("step_duration_seconds", "Time a participant's handler took for one attempt of a step, by service, action and outcome (ok, failed, retried).",
		prometheus.ExponentialBuckets(0.001, 4, 10), "service", "action", "outcome")
	m.stepAttempts = f.histogramVec("step_attempts", "Attempts a step took when its result was recorded, by service, action and outcome (ok, failed).",
		[]float64{1, 2, 3, 5, 10, 20, 50, 100}, "service", "action", "outcome")
	m.decisionDuration = f.histogram("decision_duration_seconds", "Time one decision took: history read, replay, append.", prometheus.ExponentialBuckets(0.0005, 4, 10))
	m.replayDuration = f.histogram("replay_duration_seconds", "Time one replay of a workflow's history through its code took.", prometheus.ExponentialBuckets(0.00005, 4, 10))
	m.cacheHits = f.counter("history_cache_hits_total", "Decisions that found their workflow's history in the cache.")
	m.cacheMisses = f.counter("history_cache_misses_total", "Decisions that loaded their workflow's history from the stream.")
	m.fenceConflicts = f.counter("fence_conflicts_total", "Decisions refused by the fence because another write reached the workflow's history first (another orchestrator's decision, or an event among its own).")
	m.historyReads = f.counter("history_reads_total", "Reads of a workflow's history tail from the stream.")
	m.historyEvents = f.counter("history_read_events_total", "History events those reads returned.")
	m.stickyHits = f.counter("sticky_hits_total", "Decisions taken by the workflow kept live since the last decision, fed only the new events.")
	m.stickyMisses = f.counter("sticky_misses_total", "Decisions that replayed the whole history: no live workflow kept, or it could not confirm its last decisions.")
	m.stickyMismatches = f.counter("sticky_mismatches_total", "Sticky decisions that differed from a full replay (checked only with VerifySticky); the full replay's was taken.")
	m.stickyWorkflows = f.gauge("sticky_workflows", "Workflows kept live between decisions (bounded by StickyWorkflows).")
	m.deadLetters = f.counterVec("dead_letters_total", "Messages this process refused and stored in JETFLOW_DLQ, by origin and reason class.", "origin", "reason")
	m.deadStored = f.gaugeVec("dead_letters_stored", "Messages held in the JETFLOW_DLQ stream, by origin (its subject dlq.<origin>; a refused signal's, dlq.signal.<seq>, under origin signal).", "origin")
	m.streamSubjects = f.gaugeVec("stream_subjects", "Distinct subjects in the stream; the server keeps an entry of its subject index in memory for each (JETFLOW_HISTORY: about 10 per workflow kept, JETFLOW_ARCHIVE: one per archived workflow).", "stream")
	m.streamMessages = f.gaugeVec("stream_messages", "Messages in the stream.", "stream")
	m.streamBytes = f.gaugeVec("stream_bytes", "Bytes the stream's messages take, as stored.", "stream")
	m.streamMaxBytes = f.gaugeVec("stream_max_bytes", "The stream's bound in bytes (its MaxBytes), 0 when it has none: JETFLOW_ORDERS and JETFLOW_SIGNALS refuse publishes past it, JETFLOW_DLQ and JETFLOW_ARCHIVE drop their oldest messages.", "stream")
	m.timerLateness = f.histogram("timer_lateness_seconds", "How long after its due time a timer's fire was recorded.", prometheus.ExponentialBuckets(0.001, 4, 10))
	m.signals = f.counterVec("signals_total", "Signals handled, by outcome: recorded in the history, refused (dead-lettered), late (the workflow had ended), or unsent (a workflow's signal to another that the full signals stream refused).", "outcome")
	m.consumerPending = f.gaugeVec("consumer_pending_messages", "Messages of the stream not yet delivered to the consumer.", "stream", "consumer")
	m.consumerAckPending = f.gaugeVec("consumer_ack_pending_messages", "Messages delivered to the consumer and not yet acknowledged.", "stream", "consumer")
	m.consumerRedelivered = f.gaugeVec("consumer_redelivered_messages", "Messages delivered to the consumer more than once and not yet acknowledged.", "stream", "consumer")
	m.pollErrors = f.counter("poll_errors_total", "Periodic reads of gauges from JetStream that failed.")
	m.natsConnected = f.gauge("nats_connected", "1 while the process's connections to NATS are all up.")
	m.natsChanges = f.counterVec("nats_connection_changes_total", "Connection state changes, by state (disconnected, reconnected).", "state")
	m.readyGauge = f.gaugeVec("ready", "1 while the component runs with its consumers: what /readyz reports.", "component")
	for _, o := range []string{SignalRecorded, SignalRefused, SignalLate, SignalUnsent} {
		m.signals.WithLabelValues(o)
	}
	for _, s := range []string{"disconnected", "reconnected"} {
		m.natsChanges.WithLabelValues(s)
	}
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// factory registers collectors under the jetflow namespace.
type factory struct{ r *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	f.r.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.r.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.r.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.r.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	f.r.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.r.MustRegister(h)
	return h
}

// WorkflowStarted counts the start of a workflow of type wfType.
func (m *Metrics) WorkflowStarted(wfType string) {
	if m != nil {
		m.workflowsStarted.WithLabelValues(wfType).Inc()
	}
}

// WorkflowFinished counts the end of a workflow of type wfType with status.
func (m *Metrics) WorkflowFinished(wfType, status string) {
	if m != nil {
		m.workflowsFinished.WithLabelValues(wfType, status).Inc()
	}
}

// WorkflowArchived counts a workflow archived and removed from the history.
func (m *Metrics) WorkflowArchived() {
	if m != nil {
		m.workflowsArchived.Inc()
	}
}

// ArchiveDelay observes how long past its due time the archiver settled
// an end of the index.
func (m *Metrics) ArchiveDelay(d time.Duration) {
	if m != nil {
		m.archiveDelay.Observe(max(d, 0).Seconds())
	}
}

// ArchiveLag sets how far past its due time the oldest end the archiver
// fetched last was (0: not due yet, or nothing fetched).
func (m *Metrics) ArchiveLag(d time.Duration) {
	if m != nil {
		m.archiveLag.Set(max(d, 0).Seconds())
	}
}

// Decision observes the duration of one decision.
func (m *Metrics) Decision(d time.Duration) {
	if m != nil {
		m.decisionDuration.Observe(d.Seconds())
	}
}

// Replay observes the duration of one replay.
func (m *Metrics) Replay(d time.Duration) {
	if m != nil {
		m.replayDuration.Observe(d.Seconds())
	}
}

// StickyLookup counts a decision taken by a kept live workflow (hit) or by
// a full replay.
func (m *Metrics) StickyLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.stickyHits.Inc()
	} else {
		m.stickyMisses.Inc()
	}
}

// StickyMismatch counts a sticky decision that a full replay decided
// differently.
func (m *Metrics) StickyMismatch() {
	if m != nil {
		m.stickyMismatches.Inc()
	}
}

// StickyWorkflows sets the number of workflows kept live.
func (m *Metrics) StickyWorkflows(n int) {
	if m != nil {
		m.stickyWorkflows.Set(float64(n))
	}
}

// CacheLookup counts a decision that found its history cached (hit) or
// had to load it.
func (m *Metrics) CacheLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.cacheHits.Inc()
	} else {
		m.cacheMisses.Inc()
	}
}

// FenceConflict counts one append refused by the fence
// (Nats-Expected-Last-Subject-Sequence): something was written to the
// workflow's history after the decision read it, and the decision is taken
// again on the new tail. Against the decisions counted by Decision, it is
// the share of work lost to two processes deciding one workflow at once.
func (m *Metrics) FenceConflict() {
	if m != nil {
		m.fenceConflicts.Inc()
	}
}

// HistoryRead counts one read of a history tail that returned events.
func (m *Metrics) HistoryRead(events int) {
	if m != nil {
		m.historyReads.Inc()
		m.historyEvents.Add(float64(events))
	}
}

// DeadLetter counts a message stored in the dead-letter stream under
// dlq.<origin>, with its reason reduced to a class (see ReasonClass).
func (m *Metrics) DeadLetter(origin, reason string) {
	if m != nil {
		m.deadLetters.WithLabelValues(origin, ReasonClass(reason)).Inc()
	}
}

// Signal counts a signal by outcome (SignalRecorded, SignalRefused,
// SignalLate).
func (m *Metrics) Signal(outcome string) {
	if m != nil {
		m.signals.WithLabelValues(outcome).Inc()
	}
}

// TimerFired observes how late a timer's fire was recorded.
func (m *Metrics) TimerFired(lateness time.Duration) {
	if m != nil {
		m.timerLateness.Observe(max(lateness, 0).Seconds())
	}
}

// Step observes one attempt of a step: its handler's duration d and, when
// the attempt ended the step (outcome StepOK or StepFailed), its attempt
// number.
func (m *Metrics) Step(service, action, outcome string, d time.Duration, attempt int) {
	if m == nil {
		return
	}
	k := stepKey{service, action, outcome}
	c, ok := m.steps.Load(k)
	if !ok {
		c, _ = m.steps.LoadOrStore(k, &stepChildren{
			duration: m.stepDuration.WithLabelValues(service, action, outcome),
			attempts: m.stepAttempts.WithLabelValues(service, action, outcome),
		})
	}
	sc := c.(*stepChildren)
	sc.duration.Observe(d.Seconds())
	if outcome != StepRetried {
		sc.attempts.Observe(float64(attempt))
	}
}

// PendingTimers exports n() as jetflow_timers_pending: the timers the
// process holds, waiting to fire. Call it once per process.
func (m *Metrics) PendingTimers(n func() int) {
	if m == nil {
		return
	}
	// A second orchestrator in the process keeps the first one's gauge.
	_ = m.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "timers_pending",
		Help: "Timers this process holds from the jetflow_timers bucket, waiting to fire.",
	}, func() float64 { return float64(n()) }))
}

// SetReady reports whether component (orchestrator, participant-payment,
// ...) runs with its consumers. /readyz answers 200 only while every
// component that reported is ready.
func (m *Metrics) SetReady(component string, ready bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	b := m.ready[component]
	if b == nil {
		b = new(atomic.Bool)
		m.ready[component] = b
	}
	m.mu.Unlock()
	b.Store(ready)
	m.readyGauge.WithLabelValues(component).Set(map[bool]float64{true: 1}[ready])
}

// notReady returns the components that are not ready, sorted by report.
func (m *Metrics) notReady() (missing []string, any bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, b := range m.ready {
		any = true
		if !b.Load() {
			missing = append(missing, name)
		}
	}
	return missing, any
}

// ConnState records a connection state change: state is "disconnected"
// or "reconnected", connected whether the connection is up now.
func (m *Metrics) ConnState(state string, connected bool) {
	if m == nil {
		return
	}
	m.natsChanges.WithLabelValues(state).Inc()
	m.natsConnected.Set(map[bool]float64{true: 1}[connected])
}
