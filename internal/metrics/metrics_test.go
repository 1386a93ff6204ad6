package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/jetflow-io/jetflow/internal/natstest"
)

// exercised returns a Metrics on which every collector has a child, so a
// Gather lists every family.
func exercised() *Metrics {
	m := New()
	m.WorkflowStarted("t")
	m.WorkflowFinished("t", "completed")
	m.Decision(time.Millisecond)
	m.Replay(time.Millisecond)
	m.CacheLookup(true)
	m.CacheLookup(false)
	m.FenceConflict()
	m.StickyLookup(true)
	m.StickyLookup(false)
	m.StickyMismatch()
	m.StickyWorkflows(1)
	m.HistoryRead(3)
	m.DeadLetter("wf", "undecodable history event")
	m.Signal(SignalRecorded)
	m.TimerFired(time.Millisecond)
	m.Step("payment", "charge", StepOK, time.Millisecond, 1)
	m.PendingTimers(func() int { return 0 })
	m.SetReady("orchestrator", true)
	m.ConnState("reconnected", true)
	m.deadStored.WithLabelValues("wf").Set(0)
	m.ArchiveDelay(time.Second)
	m.ArchiveLag(time.Second)
	m.streamSubjects.WithLabelValues("s").Set(0)
	m.streamMessages.WithLabelValues("s").Set(0)
	m.streamBytes.WithLabelValues("s").Set(0)
	m.streamMaxBytes.WithLabelValues("s").Set(0)
	m.consumerPending.WithLabelValues("s", "c").Set(0)
	m.consumerAckPending.WithLabelValues("s", "c").Set(0)
	m.consumerRedelivered.WithLabelValues("s", "c").Set(0)
	m.manualQueue.Set(0)
	m.blocked.Set(0)
	m.pollErrors.Add(0)
	return m
}

// families returns the type of every metric family m exports.
func families(t *testing.T, m *Metrics) map[string]dto.MetricType {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dto.MetricType{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetType()
	}
	return out
}

// TestDeployUsesExportedMetrics checks that every jetflow_ metric the
// alert rules and the Grafana dashboard query is one the registry
// exports (a histogram's _bucket, _sum and _count included), so neither
// can drift from the code.
func TestDeployUsesExportedMetrics(t *testing.T) {
	have := families(t, exercised())
	name := regexp.MustCompile(`\bjetflow_[a-z0-9_]+`)
	for _, f := range []string{"../../deploy/prometheus/alerts.yml", "../../deploy/grafana/jetflow.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, n := range name.FindAllString(string(data), -1) {
			used[n] = true
		}
		if len(used) < 5 {
			t.Errorf("%s: only %d jetflow_ metrics found; the check reads nothing", f, len(used))
		}
		for n := range used {
			if _, ok := have[n]; ok {
				continue
			}
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
			if typ, ok := have[base]; ok && typ == dto.MetricType_HISTOGRAM {
				continue
			}
			t.Errorf("%s uses %s, which the registry does not export", f, n)
		}
	}
}

// TestAlertRulesPassPromtool runs `promtool check rules` on the alert
// rules, when promtool is installed (.ci/run installs it).
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool := promtoolPath(t)
	out, err := exec.Command(promtool, "check", "rules", filepath.Join("..", "..", "deploy", "prometheus", "alerts.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestLabelsAreBounded checks that no family has a label that could hold
// a workflow ID.
func TestLabelsAreBounded(t *testing.T) {
	allowed := map[string]bool{"type": true, "status": true, "service": true, "action": true, "outcome": true,
		"origin": true, "reason": true, "stream": true, "consumer": true, "component": true, "state": true, "le": true}
	mfs, err := exercised().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), Namespace+"_") {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s has label %q", mf.GetName(), l.GetName())
				}
			}
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeHealthAndReadiness checks /healthz, /readyz and /metrics:
// readiness follows the components' reports and the NATS connection.
func TestServeHealthAndReadiness(t *testing.T) {
	env := natstest.RunJetStream(t)
	nc, _ := natstest.Connect(t, env.Server)
	m := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Watch(nc)
	s, err := Serve(ctx, "127.0.0.1:0", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr()
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d, want 200", code)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "no component") {
		t.Errorf("/readyz before any component: %d %q, want 503 naming no component", code, body)
	}
	m.SetReady("orchestrator", true)
	m.SetReady("participant-payment", false)
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "participant-payment is not running") {
		t.Errorf("/readyz with payment not running: %d %q", code, body)
	}
	m.SetReady("participant-payment", true)
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz with all running: %d %q, want 200", code, body)
	}
	m.WorkflowStarted("order.fulfillment")
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, `jetflow_workflows_started_total{type="order.fulfillment"} 1`) {
		t.Errorf("/metrics: %d, want the started counter in:\n%s", code, body)
	}
	env.Server.Stop()
	natstest.Eventually(t, 10*time.Second, func() bool {
		code, body := get(t, base+"/readyz")
		return code == 503 && strings.Contains(body, "NATS connection")
	}, "/readyz stayed ready with the server stopped")
	cancel()
	s.Wait()
}

// TestDashboardQueriesPassPromtool checks every query of the Grafana
// dashboard with `promtool check rules`, each written as a recording rule,
// and evaluates the ratio panels on idle counters with `promtool test
// rules`: a ratio of two rates that are both zero shows no data, not NaN.
func TestDashboardQueriesPassPromtool(t *testing.T) {
	promtool := promtoolPath(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "jetflow.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok {
				exprs = append(exprs, e)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	var dash any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	walk(dash)
	if len(exprs) < 5 {
		t.Fatalf("only %d queries found in the dashboard", len(exprs))
	}
	var rules strings.Builder
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	var ratios []int
	for i, e := range exprs {
		q, _ := json.Marshal(e) // a JSON string is a YAML string
		fmt.Fprintf(&rules, "  - record: dashboard_query_%d\n    expr: %s\n", i, q)
		if strings.Contains(e, " / (") {
			ratios = append(ratios, i)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "dashboard.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
	if len(ratios) < 3 {
		t.Fatalf("%d ratio panels found, want the attempts per step and the two hit ratios", len(ratios))
	}
	// Idle: every counter flat at 0 for ten minutes; each ratio is empty.
	var test strings.Builder
	fmt.Fprintf(&test, "rule_files: [%s]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n  input_series:\n", file)
	for _, c := range []string{"jetflow_history_cache_hits_total", "jetflow_history_cache_misses_total", "jetflow_sticky_hits_total", "jetflow_sticky_misses_total",
		"jetflow_step_attempts_sum", "jetflow_step_attempts_count"} {
		fmt.Fprintf(&test, "  - series: '%s'\n    values: '0x10'\n", c)
	}
	test.WriteString("  promql_expr_test:\n")
	for _, i := range ratios {
		fmt.Fprintf(&test, "  - expr: dashboard_query_%d\n    eval_time: 10m\n    exp_samples: []\n", i)
	}
	promtoolTestRules(t, promtool, filepath.Join(dir, "idle_test.yml"), test.String(), "idle ratios")
}

// TestOrdersNearlyFullAlert evaluates JetflowOrdersNearlyFull and
// JetflowSignalsNearlyFull with `promtool test rules`: each fires for its
// stream past 80% of its bound, and neither for a stream without a bound,
// however large, nor for a bounded dead-letter stream, which drops its
// oldest when full, nor for the other's stream.
func TestOrdersNearlyFullAlert(t *testing.T) {
	promtool := promtoolPath(t)
	rules, err := filepath.Abs(filepath.Join("..", "..", "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	test := fmt.Sprintf(`rule_files: [%s]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: 'jetflow_stream_bytes{stream="JETFLOW_ORDERS"}'
    values: '900x20'
  - series: 'jetflow_stream_max_bytes{stream="JETFLOW_ORDERS"}'
    values: '1000x20'
  - series: 'jetflow_stream_bytes{stream="JETFLOW_SIGNALS"}'
    values: '850x20'
  - series: 'jetflow_stream_max_bytes{stream="JETFLOW_SIGNALS"}'
    values: '1000x20'
  - series: 'jetflow_stream_bytes{stream="JETFLOW_DLQ"}'
    values: '990x20'
  - series: 'jetflow_stream_max_bytes{stream="JETFLOW_DLQ"}'
    values: '1000x20'
  - series: 'jetflow_stream_bytes{stream="JETFLOW_HISTORY"}'
    values: '5000000000x20'
  - series: 'jetflow_stream_max_bytes{stream="JETFLOW_HISTORY"}'
    values: '0x20'
  alert_rule_test:
  - alertname: JetflowOrdersNearlyFull
    eval_time: 5m
    exp_alerts: []
  - alertname: JetflowOrdersNearlyFull
    eval_time: 15m
    exp_alerts:
    - exp_labels: {severity: warning, stream: JETFLOW_ORDERS}
      exp_annotations:
        summary: "JETFLOW_ORDERS is 90%% full"
        description: %q
  - alertname: JetflowSignalsNearlyFull
    eval_time: 5m
    exp_alerts: []
  - alertname: JetflowSignalsNearlyFull
    eval_time: 15m
    exp_alerts:
    - exp_labels: {severity: warning, stream: JETFLOW_SIGNALS}
      exp_annotations:
        summary: "JETFLOW_SIGNALS is 85%% full"
        description: %q
`, rules, alertDescription(t, rules, "JetflowOrdersNearlyFull"), alertDescription(t, rules, "JetflowSignalsNearlyFull"))
	promtoolTestRules(t, promtool, filepath.Join(t.TempDir(), "full_test.yml"), test, "JetflowOrdersNearlyFull and JetflowSignalsNearlyFull")
}

// promtoolPath is promtool's path; the test is skipped without it (.ci/run
// installs it).
func promtoolPath(t *testing.T) string {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	return promtool
}

// promtoolTestRules writes the rule unit test text to file and runs
// `promtool test rules` on it; what names it in a failure.
func promtoolTestRules(t *testing.T, promtool, file, text, what string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "test", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules, %s: %v\n%s", what, err, out)
	}
}

// alertDescription is the description of alert as the
// rules file has it (it has no template): the test pins when the alert
// fires, not its prose.
func alertDescription(t *testing.T, file, alert string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "alert: "+alert+"\n")
	_, rest, ok2 := strings.Cut(rest, "description: \"")
	desc, _, ok3 := strings.Cut(rest, "\"\n")
	if !ok || !ok2 || !ok3 {
		t.Fatal(alert + " has no description in " + file)
	}
	return desc
}
