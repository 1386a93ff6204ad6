package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"jetflow/schema"
	"jetflow/streams"
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
	// WallSeconds runs from the first publish to the last terminal event;
	// OrdersPerSec is Finished over it.
	WallSeconds  float64 `json:"wall_seconds"`
	OrdersPerSec float64 `json:"orders_per_sec"`

	Latency   Latencies `json:"latency_ms"`
	Writes    Writes    `json:"writes"`
	Resources Resources `json:"resources"`
}

// RunConfig is the configuration of a run as reported.
type RunConfig struct {
	Orders      int     `json:"orders"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	Mix         string  `json:"mix"`
	LatencyMs   float64 `json:"participant_latency_ms"`
	Sync        string  `json:"sync"`
	Server      string  `json:"server"`
}

func (c Config) describe() RunConfig {
	r := RunConfig{
		Orders: c.Orders, Concurrency: c.Concurrency, Rate: c.Rate, Mix: c.Mix,
		LatencyMs: ms(c.Latency), Sync: "default", Server: "embedded",
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
	// StepOverhead: a result stored → the orchestrator's next decision
	// (command, marker or end) of the same workflow stored. This is the
	// orchestration overhead per step.
	StepOverhead Dist `json:"step_overhead"`
	// FirstDecision: workflow.started stored → first command stored.
	FirstDecision Dist `json:"first_decision"`
	// ParticipantStep: a command stored → its result stored: delivery,
	// claim, handler, record and publish in the participant.
	ParticipantStep Dist `json:"participant_step"`
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
	PerOrder        float64                 `json:"per_order"`
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
	var total uint64
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
		bytes += sw.Bytes
	}
	w.PerOrder = float64(total) / float64(orders)
	w.BytesPerOrder = float64(bytes) / float64(orders)
	w.HistoryPerOrder = w.ByStream[streams.HistoryStream].WritesPerOrder
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
}

func resourcesOf(a, b usage, orders int, embedded bool) Resources {
	cpu := (b.cpu - a.cpu).Seconds()
	return Resources{
		PeakRSSMB:      math.Round(float64(b.maxRSS)/(1<<20)*10) / 10,
		CPUSeconds:     math.Round(cpu*1000) / 1000,
		CPUMsPerOrder:  math.Round(cpu/float64(orders)*1e6) / 1e3,
		IncludesServer: embedded,
	}
}

// analyse reads every order's history and fills in statuses and latencies.
func analyse(ctx context.Context, h *streams.History, orders []*order, res *Result) error {
	type perOrder struct {
		status                       schema.Status
		startToDone, pubToStart      time.Duration
		hasDone, hasStart            bool
		overhead, participant, first []time.Duration
		err                          error
	}
	out := make([]perOrder, len(orders))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				o := orders[i]
				p := &out[i]
				p.status = schema.StatusRunning
				if o.published.IsZero() {
					continue
				}
				evs, err := h.Read(ctx, o.id, 0)
				if err != nil {
					p.err = err
					continue
				}
				var start time.Time
				cmdAt := map[int]time.Time{}
				lastResult := -1
				for j, ev := range evs {
					switch v := ev.Value.(type) {
					case *schema.WorkflowStarted:
						start, p.hasStart = ev.Time, true
						p.pubToStart = ev.Time.Sub(o.published)
					case *schema.Result:
						lastResult = j
						if t, ok := cmdAt[v.CommandID]; ok {
							p.participant = append(p.participant, ev.Time.Sub(t))
							delete(cmdAt, v.CommandID)
						}
					case *schema.Command, *schema.Marker, *schema.WorkflowFinished, *schema.WorkflowBlocked:
						if c, ok := v.(*schema.Command); ok {
							cmdAt[c.ID] = ev.Time
							if len(p.first) == 0 && lastResult < 0 && p.hasStart {
								p.first = append(p.first, ev.Time.Sub(start))
							}
						}
						// The first decision after a result is the one that
						// result woke.
						if lastResult >= 0 {
							p.overhead = append(p.overhead, ev.Time.Sub(evs[lastResult].Time))
							lastResult = -1
						}
						switch v := v.(type) {
						case *schema.WorkflowFinished:
							p.status, p.hasDone = v.Status, true
							p.startToDone = ev.Time.Sub(start)
						case *schema.WorkflowBlocked:
							p.status = schema.StatusBlocked
						}
					}
				}
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
		byStatus                         = map[schema.Status][]time.Duration{}
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
		over = append(over, p.overhead...)
		part = append(part, p.participant...)
		first = append(first, p.first...)
	}
	res.Latency = Latencies{
		StartToDone:     distOf(s2d),
		PublishToDone:   distOf(p2d),
		PublishToStart:  distOf(p2s),
		StepOverhead:    distOf(over),
		FirstDecision:   distOf(first),
		ParticipantStep: distOf(part),
	}
	if len(byStatus) > 1 {
		res.Latency.StartToDoneByStatus = map[schema.Status]Dist{}
		for st, ds := range byStatus {
			res.Latency.StartToDoneByStatus[st] = distOf(ds)
		}
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more", len(errs)-5))
	}
	return errors.Join(errs...)
}
