package bench

import (
	"fmt"

	dto "github.com/prometheus/client_model/go"

	"github.com/jetflow-io/jetflow/internal/metrics"
)

// Decisions sums the decision metrics of the run's orchestrators: how many
// decisions found their workflow cached, and how many appends the fence
// refused because another write got in first. With several orchestrators
// on one consumer, a workflow's wake reaches whichever pulls it: the hit
// rate says how often that was the process holding the workflow.
type Decisions struct {
	// Decisions taken (history read, replay, append), over every
	// orchestrator.
	Decisions uint64 `json:"decisions"`
	// CacheHits and CacheMisses split the decisions by whether the
	// workflow's history was in the deciding process's cache.
	CacheHits   uint64 `json:"cache_hits"`
	CacheMisses uint64 `json:"cache_misses"`
	// HitRate is CacheHits over CacheHits + CacheMisses.
	HitRate float64 `json:"hit_rate"`
	// Started counts the workflows the orchestrators started: the first
	// decision of each finds it in no cache. LaterHitRate is the hit rate
	// of the other decisions, those a process that decided the workflow
	// before could take from its cache.
	Started      uint64  `json:"workflows_started"`
	LaterHitRate float64 `json:"later_hit_rate"`
	// EventsRead are the history events the decisions read (a hit reads
	// what is new since the process's last read, a miss the whole
	// history), and EventsPerDecision their mean.
	EventsRead        uint64  `json:"events_read"`
	EventsPerDecision float64 `json:"events_per_decision"`
	// FenceConflicts are appends refused by the fence, and
	// ConflictsPerDecision their share of the decisions.
	FenceConflicts       uint64  `json:"fence_conflicts"`
	ConflictsPerDecision float64 `json:"conflicts_per_decision"`
}

// decisionsOf sums the counters of every registry.
func decisionsOf(regs []*metrics.Metrics) (*Decisions, error) {
	d := &Decisions{}
	for _, m := range regs {
		mfs, err := m.Registry.Gather()
		if err != nil {
			return nil, fmt.Errorf("orchestrator metrics: %w", err)
		}
		for _, mf := range mfs {
			switch mf.GetName() {
			case metrics.Namespace + "_history_cache_hits_total":
				d.CacheHits += counterOf(mf)
			case metrics.Namespace + "_history_cache_misses_total":
				d.CacheMisses += counterOf(mf)
			case metrics.Namespace + "_history_read_events_total":
				d.EventsRead += counterOf(mf)
			case metrics.Namespace + "_workflows_started_total":
				d.Started += counterOf(mf)
			case metrics.Namespace + "_fence_conflicts_total":
				d.FenceConflicts += counterOf(mf)
			case metrics.Namespace + "_decision_duration_seconds":
				for _, x := range mf.GetMetric() {
					d.Decisions += x.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	if n := d.CacheHits + d.CacheMisses; n > 0 {
		d.HitRate = float64(d.CacheHits) / float64(n)
	}
	if n := d.CacheHits + d.CacheMisses; n > d.Started {
		d.LaterHitRate = float64(d.CacheHits) / float64(n-d.Started)
	}
	if d.Decisions > 0 {
		d.ConflictsPerDecision = float64(d.FenceConflicts) / float64(d.Decisions)
		d.EventsPerDecision = float64(d.EventsRead) / float64(d.Decisions)
	}
	return d, nil
}

func counterOf(mf *dto.MetricFamily) uint64 {
	var n float64
	for _, x := range mf.GetMetric() {
		n += x.GetCounter().GetValue()
	}
	return uint64(n)
}
