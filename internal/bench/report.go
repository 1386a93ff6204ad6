package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r as a readable table.
func (r *Result) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	c := r.Config
	m := r.Machine

	fmt.Fprintf(w, "jetflow bench: %d orders, concurrency %d", c.Orders, c.Concurrency)
	if c.Rate > 0 {
		fmt.Fprintf(w, ", rate %.0f/s", c.Rate)
	}
	pickup := "pickup at creation (no timer)"
	if c.Pickup == PickupSignal {
		pickup = fmt.Sprintf("pickup signal after %gms (72h timer)", c.PickupMs)
	}
	fmt.Fprintf(w, ", mix %s, participant latency %gms, %s, sync %s, server %s", c.Mix, c.LatencyMs, pickup, c.Sync, c.Server)
	if c.SplitConns {
		fmt.Fprint(w, ", a connection per engine part")
	}
	if c.HistoryPartitions > 1 {
		fmt.Fprintf(w, ", history over %d streams", c.HistoryPartitions)
	}
	if c.Flood > 0 {
		fmt.Fprintf(w, ", flood of %d signals to one workflow", c.Flood)
	}
	if c.Orchestrators > 1 || c.Replicas > 1 {
		fmt.Fprintf(w, ", %d orchestrators, R%d streams", c.Orchestrators, c.Replicas)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "machine: %d CPUs (GOMAXPROCS %d), %s, %s %s/%s\n\n", m.CPUs, m.GOMAXPROCS, orUnknown(m.CPUModel), m.Go, m.OS, m.Arch)

	if cl := r.Ceiling; cl != nil {
		fmt.Fprintf(w, "JetStream ceiling (scratch stream, %d-byte messages)\n", cl.MsgBytes)
		p("  async publish\t%10s\tmsgs/s", num(cl.AsyncMsgsPerSec))
		p("  sync publish\t%10s\tmsgs/s", num(cl.SyncMsgsPerSec))
		if cl.Streams > 1 {
			p("  async publish over %d streams\t%10s\tmsgs/s", cl.Streams, num(cl.StreamsMsgsPerSec))
		}
		if cl.AtomicBatch > 1 {
			p("  atomic batches of %d\t%10s\tmsgs/s", cl.AtomicBatch, num(cl.AtomicBatchMsgsPerSec))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "Orders")
	p("  finished\t%10s\t%s", fmt.Sprintf("%d/%d", r.Finished, c.Orders), statuses(r.Statuses))
	if r.Unexpected > 0 {
		p("  unexpected status\t%10d\t", r.Unexpected)
	}
	if r.AgedOut > 0 {
		p("  aged out of the archive\t%10d\tstatus as their end event was seen (--archive-retention)", r.AgedOut)
	}
	p("  wall clock\t%10.2f\ts", r.WallSeconds)
	p("  throughput\t%10s\torders/s", num(r.OrdersPerSec))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)

	if f := r.Flood; f != nil {
		fmt.Fprintf(w, "Flood: %d %s signals to %s, published as the orders started (times from the first publish)\n", f.Signals, FloodSignal, f.Workflow)
		p("  published\t%10.2f\ts", f.PublishSeconds)
		p("  recorded by the signal router\t%10.2f\ts", f.RecordedSeconds)
		p("  decided by the orchestrator\t%10.2f\ts", f.DecidedSeconds)
		p("  in the workflow's history\t%10d\tsignals", f.Recorded)
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "Latency (ms)")
	p("\t%8s\t%8s\t%8s\t%8s\t%7s", "p50", "p90", "p99", "max", "n")
	row := func(name string, d Dist) {
		p("  %s\t%8.2f\t%8.2f\t%8.2f\t%8.2f\t%7d", name, d.P50, d.P90, d.P99, d.Max, d.N)
	}
	l := r.Latency
	row("e2e: started → done (stream times)", l.StartToDone)
	for _, st := range sortedStatuses(l.StartToDoneByStatus) {
		row("  of which "+string(st), l.StartToDoneByStatus[st])
	}
	row("e2e: publish → done seen (client)", l.PublishToDone)
	row("intake: publish → started", l.PublishToStart)
	row("orchestration: wake → next decision", l.StepOverhead)
	for _, tok := range sortedKeys(l.StepOverheadByWake) {
		row("  after a "+wakeNames[tok], l.StepOverheadByWake[tok])
	}
	row("orchestration: started → first decision", l.FirstDecision)
	row("participant: command → result", l.ParticipantStep)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)

	wr := r.Writes
	fmt.Fprintln(w, "JetStream writes per order")
	p("\t%8s\t%8s", "writes", "bytes")
	names := make([]string, 0, len(wr.ByStream))
	for n := range wr.ByStream {
		names = append(names, n)
	}
	sort.Slice(names, func(a, b int) bool {
		if names[a] == streams.HistoryStream || names[b] == streams.HistoryStream {
			return names[a] == streams.HistoryStream
		}
		return names[a] < names[b]
	})
	for _, n := range names {
		s := wr.ByStream[n]
		p("  %s\t%8.2f\t%8.0f", n, s.WritesPerOrder, s.BytesPerOrder)
	}
	p("  total\t%8.2f\t%8.0f", wr.PerOrder, wr.BytesPerOrder)
	p("  jetflow's own (total without the simulated systems')\t%8.2f\t", wr.EnginePerOrder)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)

	if d := r.Decisions; d != nil {
		aff := "no affinity"
		if c.Affinity {
			aff = "affinity"
		}
		fmt.Fprintf(w, "Decisions: %d over %d orchestrator(s), %s; history cache hit rate %.1f%% (%d hits, %d misses), %.1f%% after each workflow's first decision; %.2f history events read per decision; fence conflicts %d (%.2f%% of decisions)\n\n",
			d.Decisions, c.Orchestrators, aff, 100*d.HitRate, d.CacheHits, d.CacheMisses, 100*d.LaterHitRate, d.EventsPerDecision, d.FenceConflicts, 100*d.ConflictsPerDecision)
	}

	hs := r.History
	fmt.Fprintf(w, "History: %.2f events per order; the orchestrator appended %.2f decisions per order, %.2f of them of several messages\n\n",
		hs.EventsPerOrder, hs.AppendsPerOrder, hs.BatchesPerOrder)

	res := r.Resources
	who := "benchmark process"
	if res.IncludesServer {
		who += " incl. embedded server"
	}
	fmt.Fprintf(w, "Resources (%s)\n", who)
	p("  peak RSS\t%10.1f\tMB", res.PeakRSSMB)
	p("  CPU during the run\t%10.2f\ts", res.CPUSeconds)
	p("  CPU per order\t%10.3f\tms", res.CPUMsPerOrder)
	p("  heap allocations per order\t%10s\t(%.1f KiB)", num(res.AllocsPerOrder), res.AllocKBPerOrder)
	return tw.Flush()
}

var wakeNames = map[string]string{"res": "result", "signal": "signal", "fired": "fired timer"}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown CPU"
	}
	return s
}

// num formats a rate with thousands separators.
func num(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func sortedStatuses[V any](m map[schema.Status]V) []schema.Status {
	out := make([]schema.Status, 0, len(m))
	for st := range m {
		out = append(out, st)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

func statuses(m map[schema.Status]int) string {
	var parts []string
	for _, st := range sortedStatuses(m) {
		parts = append(parts, fmt.Sprintf("%s %d", st, m[st]))
	}
	return strings.Join(parts, ", ")
}
