package test

import (
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
)

// TestAffinityUnderRolePermissions runs three orchestrators, each on its
// own orchestrator-role connection to a server that enforces
// deploy/nats-server.conf, with the order mix: a workflow's wakes after
// its first decision reach the process that decided it before and find it
// cached, and no orchestrator's membership or forwarding is refused by
// the permissions. Then one orchestrator stops; the two others take its
// workflows and a second batch of orders ends as it should.
func TestAffinityUnderRolePermissions(t *testing.T) {
	s := newAuthStack(t)
	s.participants()
	type orch struct {
		m    *metrics.Metrics
		p    *part
		errs func() []string
	}
	var orchs []orch
	for range 3 {
		nc, js, v := s.env.ConnectAs(t, natsauth.Orchestrator)
		reg := workflow.NewRegistry()
		s.workflows(reg)
		m := metrics.New()
		o, err := orchestrator.New(orchestrator.Config{
			NC: nc, JS: js, Registry: reg, Intake: fulfillment.Intake(), SignalRules: fulfillment.SignalRules(),
			Logger: testLogger(), AckWait: s.ackWait, Metrics: m, Affinity: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		orchs = append(orchs, orch{m: m, p: s.run(o.Run), errs: v.All})
	}
	// later returns the cache hits and the lookups of the decisions after
	// each workflow's first, over the orchestrators of os.
	later := func(os []orch) (hits, lookups float64) {
		for _, o := range os {
			h := counter(t, o.m, "jetflow_history_cache_hits_total")
			hits += h
			lookups += h + counter(t, o.m, "jetflow_history_cache_misses_total") - counter(t, o.m, "jetflow_workflows_started_total")
		}
		return hits, lookups
	}
	settle := func(prefix string, n int) {
		t.Helper()
		orders, want, ids := s.mix(prefix, n)
		st := s.waitSettled(ids, 4*time.Minute)
		for _, id := range ids {
			if st[id] != want[id] {
				t.Errorf("%s: status %s, want %s (simulate %v)", id, st[id], want[id], orders[id].Simulate)
			}
		}
		s.checkInvariants(orders, st)
	}
	settle("af1-", 30)
	if hits, n := later(orchs); hits < 0.9*n {
		t.Errorf("%v of %v later decisions found their workflow cached, want 90%% or more", hits, n)
	}
	for i, o := range orchs {
		if errs := o.errs(); len(errs) > 0 {
			t.Errorf("orchestrator %d: permission violations %v", i+1, errs)
		}
	}

	// A stopped orchestrator says bye: the others own its share at once.
	orchs[0].p.stop(t)
	h0, n0 := later(orchs[1:])
	settle("af2-", 30)
	if h1, n1 := later(orchs[1:]); h1-h0 < 0.9*(n1-n0) {
		t.Errorf("after a stop: %v of %v later decisions found their workflow cached, want 90%% or more", h1-h0, n1-n0)
	}
}

// counter sums the samples of the counter family name in m.
func counter(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, x := range mf.GetMetric() {
				n += x.GetCounter().GetValue()
			}
		}
	}
	return n
}

// histogram returns the sample count and sum of the histogram family name
// in m.
func histogram(t *testing.T, m *metrics.Metrics, name string) (count uint64, sum float64) {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, x := range mf.GetMetric() {
				count += x.GetHistogram().GetSampleCount()
				sum += x.GetHistogram().GetSampleSum()
			}
		}
	}
	return count, sum
}
