package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/metrics"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Result is everything one run measured.
type Result struct {
	Config  RunConfig `json:"config"`
	Machine Machine   `json:"machine"`
	// Ceiling is the raw JetStream publish rate; nil when skipped.
	Ceiling *Ceiling `json:"ceiling,omitempty"`

	// Published orders, and Finished: those whose terminal (or blocked)
	// event was seen.
	Published int `json:"published"`
	Finished  int `json:"finished"`
	// Statuses counts the final status of every order, read from its
	// history after the run ("running" for one that did not finish).
	Statuses map[schema.Status]int `json:"statuses"`
	// Unexpected counts orders whose status is not the one the mix gives.
	Unexpected int `json:"unexpected"`
	// AgedOut counts orders whose history had left the archive too by the
	// time it was read (Config.ArchiveRetention shorter than the run):
	// their status is the end event seen while the run went on.
	AgedOut int `json:"aged_out,omitempty"`
	// WallSeconds runs from the first publish to the last terminal event;
	// OrdersPerSec is Finished over it.
	WallSeconds  float64 `json:"wall_seconds"`
	OrdersPerSec float64 `json:"orders_per_sec"`

	// Flood is what became of the flood of signals; nil without one.
	Flood *FloodResult `json:"flood,omitempty"`

	// Decisions are the orchestrators' decision counts: cache hits and
	// fence conflicts, summed over every orchestrator of the run.
	Decisions *Decisions `json:"decisions,omitempty"`

	Latency   Latencies    `json:"latency_ms"`
	History   HistoryShape `json:"history"`
	Writes    Writes       `json:"writes"`
	Resources Resources    `json:"resources"`
	// Retention samples the server's state during a run with a retention
	// window (Config.Retention); nil without one.
	Retention []RetentionSample `json:"retention,omitempty"`
}

// RunConfig is the configuration of a run as reported.
type RunConfig struct {
	Orders      int     `json:"orders"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	Mix         string  `json:"mix"`
	LatencyMs   float64 `json:"participant_latency_ms"`
	Pickup      string  `json:"pickup"`
	PickupMs    float64 `json:"pickup_delay_ms"`
	Sync        string  `json:"sync"`
	Server      string  `json:"server"`
	SplitConns  bool    `json:"split_conns,omitempty"`
	Flood       int     `json:"flood,omitempty"`
	// Orchestrators run side by side; Replicas of every stream.
	Orchestrators int `json:"orchestrators"`
	Replicas      int `json:"replicas"`
	// HistoryPartitions is the number of history streams (1: the single
	// JETFLOW_HISTORY).
	HistoryPartitions int  `json:"history_partitions"`
	Affinity          bool `json:"affinity,omitempty"`
}

func (c Config) describe() RunConfig {
	r := RunConfig{
		Orders: c.Orders, Concurrency: c.Concurrency, Rate: c.Rate, Mix: c.Mix,
		LatencyMs: ms(c.Latency), Pickup: c.Pickup, PickupMs: ms(c.PickupDelay), Sync: "default", Server: "embedded", SplitConns: c.SplitConns,
		Flood: c.Flood, Orchestrators: c.Orchestrators, Replicas: c.Replicas, Affinity: c.Affinity,
	}
	if c.SyncAlways {
		r.Sync = "always"
	}
	if c.NatsURL != "" {
		r.Server, r.Sync = c.NatsURL, "server's setting"
	}
	return r
}

// Machine is where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model,omitempty"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Dist is a latency distribution in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	// Nearest rank.
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return ms(ds[min(max(i, 0), len(ds)-1)])
	}
	return Dist{N: len(ds), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(ds[len(ds)-1]), Mean: ms(sum / time.Duration(len(ds)))}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Latencies are taken from the history's stream timestamps, except those
// that start at the client's publish, which use the client's clock (the
// same clock as the server's when it is embedded).
type Latencies struct {
	// StartToDone: workflow.started stored → done event stored.
	StartToDone Dist `json:"start_to_done"`
	// StartToDoneByStatus splits StartToDone by final status.
	StartToDoneByStatus map[schema.Status]Dist `json:"start_to_done_by_status,omitempty"`
	// PublishToDone: order.created published → its done event received by
	// the benchmark's subscriber (client clock only).
	PublishToDone Dist `json:"publish_to_done"`
	// PublishToStart: order.created published → workflow.started stored:
	// the intake.
	PublishToStart Dist `json:"publish_to_start"`
	// StepOverhead: an event that calls for a decision (a result, a
	// signal, a fired timer) stored → the orchestrator's next decision
	// (command, marker, timer, end) of the same workflow stored. This is
	// the orchestration overhead per step.
	StepOverhead Dist `json:"step_overhead"`
	// StepOverheadByWake splits StepOverhead by the kind of event that
	// woke the decision: "res", "signal", "fired".
	StepOverheadByWake map[string]Dist `json:"step_overhead_by_wake,omitempty"`
	// FirstDecision: workflow.started stored → first command stored.
	FirstDecision Dist `json:"first_decision"`
	// ParticipantStep: a command stored → its result stored: delivery,
	// claim, handler, record and publish in the participant.
	ParticipantStep Dist `json:"participant_step"`
}

// HistoryShape says how the histories were written.
type HistoryShape struct {
	// EventsPerOrder: messages in an order's history.
	EventsPerOrder float64 `json:"events_per_order"`
	// AppendsPerOrder: decisions the orchestrator appended, counted by
	// their message IDs (<id>:<seq>:<index>), and BatchesPerOrder those of
	// several messages, which History.Append writes one after the other,
	// each fenced on the one before.
	AppendsPerOrder float64 `json:"appends_per_order"`
	BatchesPerOrder float64 `json:"batches_per_order"`
}

// StreamWrites is what one stream gained during the run.
type StreamWrites struct {
	// Writes is the increase of the stream's last sequence: every message
	// written, including those a KV bucket later replaced.
	Writes uint64 `json:"writes"`
	// Bytes is the increase of the bytes the stream holds.
	Bytes          int64   `json:"bytes"`
	WritesPerOrder float64 `json:"writes_per_order"`
	BytesPerOrder  float64 `json:"bytes_per_order"`
}

// Writes are the JetStream writes of the run, over every stream of the
// server (KV buckets are streams named KV_<bucket>).
type Writes struct {
	PerOrder float64 `json:"per_order"`
	// EnginePerOrder leaves out the simulated external systems' ledgers
	// (KV_jetflow_ledger_*) and scheduled callbacks (JETFLOW_CALLBACKS_*):
	// the writes jetflow itself makes.
	EnginePerOrder  float64                 `json:"engine_per_order"`
	HistoryPerOrder float64                 `json:"history_per_order"`
	BytesPerOrder   float64                 `json:"bytes_per_order"`
	ByStream        map[string]StreamWrites `json:"by_stream"`
}

type streamState struct {
	lastSeq uint64
	bytes   uint64
}

// snapshot returns the state of every stream on the server.
func snapshot(ctx context.Context, js jetstream.JetStream) (map[string]streamState, error) {
	out := map[string]streamState{}
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		out[info.Config.Name] = streamState{lastSeq: info.State.LastSeq, bytes: info.State.Bytes}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	return out, nil
}

func writesOf(before, after map[string]streamState, orders int) Writes {
	w := Writes{ByStream: map[string]StreamWrites{}}
	var total, engine uint64
	var bytes int64
	for name, a := range after {
		if name == scratchStream {
			continue
		}
		b := before[name]
		sw := StreamWrites{Bytes: int64(a.bytes) - int64(b.bytes)}
		if a.lastSeq > b.lastSeq {
			sw.Writes = a.lastSeq - b.lastSeq
		}
		if sw.Writes == 0 && sw.Bytes == 0 {
			continue
		}
		sw.WritesPerOrder = float64(sw.Writes) / float64(orders)
		sw.BytesPerOrder = float64(sw.Bytes) / float64(orders)
		w.ByStream[name] = sw
		total += sw.Writes
		if !strings.HasPrefix(name, "KV_"+streams.LedgerBucketPrefix) && !strings.HasPrefix(name, streams.CallbacksStreamPrefix) {
			engine += sw.Writes
		}
		bytes += sw.Bytes
	}
	w.PerOrder = float64(total) / float64(orders)
	w.EnginePerOrder = float64(engine) / float64(orders)
	w.BytesPerOrder = float64(bytes) / float64(orders)
	for name, sw := range w.ByStream {
		if streams.IsHistoryStream(name) {
			w.HistoryPerOrder += sw.WritesPerOrder
		}
	}
	return w
}

// Resources are the benchmark process's own: with an embedded server they
// include the server's work.
type Resources struct {
	// PeakRSSMB is the process's peak resident set size, whole lifetime.
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// CPUSeconds is user plus system time during the order run.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUMsPerOrder is CPUSeconds per order, in milliseconds.
	CPUMsPerOrder  float64 `json:"cpu_ms_per_order"`
	IncludesServer bool    `json:"includes_server"`
	// AllocsPerOrder and AllocKBPerOrder are the heap allocations (objects
	// and KiB) made during the order run, per order: unlike CPU time they
	// do not vary with the machine's load.
	AllocsPerOrder  float64 `json:"allocs_per_order"`
	AllocKBPerOrder float64 `json:"alloc_kb_per_order"`
}

func resourcesOf(a, b usage, orders int, embedded bool) Resources {
	cpu := (b.cpu - a.cpu).Seconds()
	return Resources{
		PeakRSSMB:       math.Round(float64(b.maxRSS)/(1<<20)*10) / 10,
		CPUSeconds:      math.Round(cpu*1000) / 1000,
		CPUMsPerOrder:   math.Round(cpu/float64(orders)*1e6) / 1e3,
		IncludesServer:  embedded,
		AllocsPerOrder:  math.Round(float64(b.allocs-a.allocs) / float64(orders)),
		AllocKBPerOrder: math.Round(float64(b.allocBytes-a.allocBytes)/float64(orders)/1024*10) / 10,
	}
}

// heapAllocs returns the heap allocations of the process so far: objects
// and bytes.
func heapAllocs() (objects, bytes uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		objects = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		bytes = s[1].Value.Uint64()
	}
	return objects, bytes
}

// Event classes by the first subject token after wf.<id>: wakes call for a
// decision, decisions are what the orchestrator appends.
var (
	wakeTokens     = map[string]bool{"start": true, "res": true, "signal": true, "fired": true}
	decisionTokens = map[string]bool{"cmd": true, "marker": true, "timer": true, "done": true, "blocked": true}
)

// orderStats is what one order's history says.
type orderStats struct {
	status schema.Status
	// agedOut: neither the history nor the archive held the order.
	agedOut                 bool
	startToDone, pubToStart time.Duration
	hasDone, hasStart       bool
	// overhead by wake token (res, signal, fired); first: start → first
	// decision.
	overhead           map[string][]time.Duration
	first, participant []time.Duration
	events             int
	appends, batches   int
	err                error
}

// historyStats reads one order's history and derives its timings.
func historyStats(ctx context.Context, h *streams.History, o *order) orderStats {
	p := orderStats{status: schema.StatusRunning, overhead: map[string][]time.Duration{}}
	evs, err := h.Read(ctx, o.id, 0)
	if err == nil && len(evs) == 0 {
		// Archived during the run (Config.Retention).
		var rec *schema.ArchivedHistory
		if rec, err = h.Archived(ctx, o.id); err == nil && rec != nil {
			evs, err = h.ArchivedEvents(ctx, rec)
		} else if err == nil && !o.done.IsZero() {
			// Past the archive's retention as well: what was seen of
			// its end while the run went on is all there is.
			p.status, p.agedOut = o.status, true
			return p
		}
	}
	if err != nil {
		p.err = err
		return p
	}
	p.events = len(evs)
	var start time.Time
	cmdAt := map[int]time.Time{}
	var wake *streams.Event
	appendSize := map[string]int{}
	var appendOrder []string
	for i := range evs {
		ev := &evs[i]
		_, rest, _ := streams.ParseSubject(ev.Subject)
		tok, _, _ := strings.Cut(rest, ".")
		switch v := ev.Value.(type) {
		case *schema.WorkflowStarted:
			if !p.hasStart {
				start, p.hasStart = ev.Time, true
				p.pubToStart = ev.Time.Sub(o.published)
			}
		case *schema.Command:
			cmdAt[v.ID] = ev.Time
		case *schema.Result:
			if t, ok := cmdAt[v.CommandID]; ok {
				p.participant = append(p.participant, ev.Time.Sub(t))
				delete(cmdAt, v.CommandID)
			}
		case *schema.WorkflowFinished:
			p.status, p.hasDone = v.Status, true
			p.startToDone = ev.Time.Sub(start)
		case *schema.WorkflowBlocked:
			p.status = schema.StatusBlocked
		}
		switch {
		case wakeTokens[tok]:
			// The decision after several wakes is the last one's doing.
			wake = ev
		case decisionTokens[tok]:
			if wake != nil {
				_, wrest, _ := streams.ParseSubject(wake.Subject)
				wtok, _, _ := strings.Cut(wrest, ".")
				d := ev.Time.Sub(wake.Time)
				if wtok == "start" {
					p.first = append(p.first, d)
				} else {
					p.overhead[wtok] = append(p.overhead[wtok], d)
				}
				wake = nil
			}
			// Decision IDs are <id>:<seq decided on>:<index in the append>.
			if k := strings.LastIndexByte(ev.MsgID, ':'); k > 0 {
				key := ev.MsgID[:k]
				if appendSize[key] == 0 {
					appendOrder = append(appendOrder, key)
				}
				appendSize[key]++
			}
		}
	}
	p.appends = len(appendOrder)
	for _, k := range appendOrder {
		if appendSize[k] > 1 {
			p.batches++
		}
	}
	return p
}

// analyse reads every order's history and fills in statuses and latencies.
func analyse(ctx context.Context, h *streams.History, orders []*order, res *Result) error {
	out := make([]orderStats, len(orders))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if orders[i].published.IsZero() {
					out[i] = orderStats{status: schema.StatusRunning}
					continue
				}
				out[i] = historyStats(ctx, h, orders[i])
			}
		}()
	}
	for i := range orders {
		next <- i
	}
	close(next)
	wg.Wait()

	var (
		s2d, p2d, p2s, over, part, first []time.Duration
		overBy                           = map[string][]time.Duration{}
		byStatus                         = map[schema.Status][]time.Duration{}
		events, appends, batches         int
		errs                             []error
	)
	res.Statuses = map[schema.Status]int{}
	res.Unexpected = 0
	for i, p := range out {
		o := orders[i]
		if p.err != nil {
			errs = append(errs, fmt.Errorf("read history of %s: %w", o.id, p.err))
			continue
		}
		res.Statuses[p.status]++
		if p.agedOut {
			res.AgedOut++
		}
		if p.status != o.want {
			res.Unexpected++
		}
		if p.hasDone && p.hasStart {
			s2d = append(s2d, p.startToDone)
			byStatus[p.status] = append(byStatus[p.status], p.startToDone)
		}
		if p.hasStart {
			p2s = append(p2s, p.pubToStart)
		}
		if !o.done.IsZero() {
			p2d = append(p2d, o.done.Sub(o.published))
		}
		for tok, ds := range p.overhead {
			over = append(over, ds...)
			overBy[tok] = append(overBy[tok], ds...)
		}
		part = append(part, p.participant...)
		first = append(first, p.first...)
		events += p.events
		appends += p.appends
		batches += p.batches
	}
	res.Latency = Latencies{
		StartToDone:     distOf(s2d),
		PublishToDone:   distOf(p2d),
		PublishToStart:  distOf(p2s),
		StepOverhead:    distOf(over),
		FirstDecision:   distOf(first),
		ParticipantStep: distOf(part),
	}
	if len(overBy) > 1 {
		res.Latency.StepOverheadByWake = map[string]Dist{}
		for tok, ds := range overBy {
			res.Latency.StepOverheadByWake[tok] = distOf(ds)
		}
	}
	if len(byStatus) > 1 {
		res.Latency.StartToDoneByStatus = map[schema.Status]Dist{}
		for st, ds := range byStatus {
			res.Latency.StartToDoneByStatus[st] = distOf(ds)
		}
	}
	if n := float64(len(orders)); n > 0 {
		res.History = HistoryShape{
			EventsPerOrder:  float64(events) / n,
			AppendsPerOrder: float64(appends) / n,
			BatchesPerOrder: float64(batches) / n,
		}
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more", len(errs)-5))
	}
	return errors.Join(errs...)
}
