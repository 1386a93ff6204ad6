package chaos

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/streams"
)

// Soak faults, by the key JETFLOW_SOAK_FAULTS selects them with.
var soakFaults = []struct{ key, help string }{
	{"orch-kill", "kill -9 an orchestrator at a random moment, restart it"},
	{"part-kill", "kill -9 a participant at a random moment, restart it"},
	{"orch-point", "restart an orchestrator armed to exit at its n-th before-append, after-append or mid-append"},
	{"part-point", "restart a participant armed to exit at its n-th after-effect"},
	{"orch-stop", "SIGSTOP an orchestrator past the ack wait, then SIGCONT (zombie)"},
	{"part-stop", "SIGSTOP a participant past the ack wait, then SIGCONT (zombie)"},
	{"poison", "publish a poison message (garbage order, garbage or stray result)"},
	{"server-kill", "kill -9 the nats-server (a random node, or the history leader, on a cluster), restart it"},
}

// TestSoak is the long randomized run of `make chaos`: orders of the full
// outcome mix flow in at a steady rate while faults of every kind are
// injected at random, for $JETFLOW_SOAK_DURATION. Then the faults stop,
// every order must end within the settle bound, and the invariant checker
// runs over all of them. It prints a table: orders, faults injected by
// kind, double effects, stuck, lost.
//
//	JETFLOW_SOAK_DURATION  how long to inject faults (required, e.g. 10m)
//	JETFLOW_SOAK_SEED      the seed (default: the clock; it is printed)
//	JETFLOW_SOAK_RATE      orders per second (default 20)
//	JETFLOW_SOAK_CLUSTER   1: a 3-node cluster with R3 streams instead of
//	                       one server with --sync-always
//	JETFLOW_SOAK_FAULTS    comma-separated fault keys (default: all)
//	JETFLOW_SOAK_REPORT    also write the table to this file
func TestSoak(t *testing.T) {
	durStr := os.Getenv("JETFLOW_SOAK_DURATION")
	if durStr == "" {
		t.Skip("the soak runs with JETFLOW_SOAK_DURATION set: make chaos DURATION=10m")
	}
	dur, err := time.ParseDuration(durStr)
	if err != nil {
		t.Fatalf("JETFLOW_SOAK_DURATION: %v", err)
	}
	seed := time.Now().UnixNano() % 1_000_000
	if s := os.Getenv("JETFLOW_SOAK_SEED"); s != "" {
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("JETFLOW_SOAK_SEED: %v", err)
		}
	}
	rate := 20.0
	if s := os.Getenv("JETFLOW_SOAK_RATE"); s != "" {
		if rate, err = strconv.ParseFloat(s, 64); err != nil || rate <= 0 {
			t.Fatalf("JETFLOW_SOAK_RATE %q", s)
		}
	}
	cluster := os.Getenv("JETFLOW_SOAK_CLUSTER") == "1"
	enabled := map[string]bool{}
	var keys []string
	for _, f := range soakFaults {
		keys = append(keys, f.key)
	}
	if s := os.Getenv("JETFLOW_SOAK_FAULTS"); s != "" {
		keys = strings.Split(s, ",")
	}
	for _, k := range keys {
		known := false
		for _, f := range soakFaults {
			known = known || f.key == k
		}
		if !known {
			t.Fatalf("JETFLOW_SOAK_FAULTS: unknown fault %q", k)
		}
		enabled[k] = true
	}
	t.Logf("soak: seed %d, %s of faults %v, %.0f orders/s, cluster %v", seed, dur, keys, rate, cluster)

	so := serverOptions{syncAlways: true}
	if cluster {
		so = serverOptions{nodes: 3}
	}
	h := newHarness(t, seed, so)
	if cluster {
		h.eventually(60*time.Second, "the cluster is not healthy", h.clusterHealthy)
	}
	orchs := []*role{h.orchestrator("o1", nil), h.orchestrator("o2", nil)}
	var parts []*role
	for _, p := range h.participants() {
		parts = append(parts, p)
	}
	parts = append(parts, h.participant("payment-2", "payment", nil))
	sort.Slice(parts, func(i, j int) bool { return parts[i].name < parts[j].name })

	every := time.Duration(float64(time.Second) / rate)
	orders := mix(fmt.Sprintf("s%d-", seed), int(rate*dur.Seconds())+1, true)
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	began := time.Now()
	l := h.drive(ctx, orders, every)

	pick := func(rs []*role) *role { return rs[h.rng.Intn(len(rs))] }
	pause := func(min, max time.Duration) time.Duration {
		return min + time.Duration(h.rng.Int63n(int64(max-min)+1))
	}
	var actions []func()
	if enabled["orch-kill"] {
		actions = append(actions, func() {
			o := pick(orchs)
			o.kill()
			h.fault("kill -9 orchestrator", o.name)
			time.AfterFunc(pause(0, time.Second), o.ensure)
		})
	}
	if enabled["part-kill"] {
		actions = append(actions, func() {
			p := pick(parts)
			p.kill()
			h.fault("kill -9 participant", p.name)
			time.AfterFunc(pause(0, time.Second), p.ensure)
		})
	}
	if enabled["orch-point"] {
		actions = append(actions, func() {
			o := pick(orchs)
			point := []string{"orchestrator.before-append", "orchestrator.after-append", "history.mid-append"}[h.rng.Intn(3)]
			o.kill()
			o.arm(fmt.Sprintf("%s=exit@%d", point, 1+h.rng.Intn(60)))
			o.ensure()
			h.fault("orchestrator restarted armed at a fault point", o.name+" "+point)
		})
	}
	if enabled["part-point"] {
		actions = append(actions, func() {
			p := pick(parts)
			p.kill()
			p.arm(fmt.Sprintf("participant.after-effect=exit@%d", 1+h.rng.Intn(30)))
			p.ensure()
			h.fault("participant restarted armed after its effect", p.name)
		})
	}
	if enabled["orch-stop"] {
		actions = append(actions, func() {
			o := pick(orchs)
			d := pause(ackWait+500*time.Millisecond, 3*ackWait)
			o.signal(syscall.SIGSTOP)
			h.fault("zombie orchestrator (SIGSTOP past the ack wait)", o.name+" for "+d.String())
			time.AfterFunc(d, func() { o.signal(syscall.SIGCONT) })
		})
	}
	if enabled["part-stop"] {
		actions = append(actions, func() {
			p := pick(parts)
			d := pause(ackWait+500*time.Millisecond, 3*ackWait)
			p.signal(syscall.SIGSTOP)
			h.fault("zombie participant (SIGSTOP past the ack wait)", p.name+" for "+d.String())
			time.AfterFunc(d, func() { p.signal(syscall.SIGCONT) })
		})
	}
	if enabled["poison"] {
		n := 0
		actions = append(actions, func() {
			n++
			id := fmt.Sprintf("poison-%d-%d", seed, n)
			var m *nats.Msg
			switch h.rng.Intn(3) {
			case 0:
				m = &nats.Msg{Subject: streams.OrderCreated, Data: []byte(`{"order_id":"` + id + `",`)}
			case 1:
				m = &nats.Msg{Subject: streams.ResultSubject(id, 1, "payment", "charge"), Data: []byte("garbage"), Header: nats.Header{"Jetflow-Kind": []string{"result"}}}
			default:
				m = &nats.Msg{Subject: streams.ResultSubject(id, 1, "payment", "charge"), Data: []byte{0x80}, Header: nats.Header{"Jetflow-Kind": []string{"result"}, "Jetflow-Schema": []string{"99"}}}
			}
			pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer pcancel()
			if _, err := h.js.PublishMsg(pctx, m); err == nil {
				h.fault("poison message", m.Subject)
			}
		})
	}
	if enabled["server-kill"] {
		actions = append(actions, func() {
			node := pick(h.servers)
			if cluster && h.rng.Intn(2) == 0 {
				if leader, err := h.streamLeader(streams.HistoryStream); err == nil {
					node = h.serverRole(leader)
				}
			}
			node.kill()
			h.fault(map[bool]string{true: "kill -9 cluster node", false: "kill -9 nats-server"}[cluster], node.name)
			time.Sleep(pause(200*time.Millisecond, 2*time.Second))
			node.start()
			if cluster {
				deadline := time.Now().Add(90 * time.Second)
				for !h.clusterHealthy() && time.Now().Before(deadline) {
					time.Sleep(250 * time.Millisecond)
				}
			}
		})
	}
	if len(actions) == 0 {
		t.Fatal("no fault enabled")
	}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(pause(500*time.Millisecond, 3*time.Second)):
			actions[h.rng.Intn(len(actions))]()
		}
	}
	// The faults stop: every process runs, none is frozen.
	for _, r := range append(append([]*role(nil), orchs...), parts...) {
		r.signal(syscall.SIGCONT)
		r.ensure()
	}
	for _, s := range h.servers {
		s.ensure()
	}
	published := l.published(orders)
	faultsEnd := time.Now()
	h.logf("faults stopped after %s; %d orders published", faultsEnd.Sub(began).Round(time.Second), len(published))

	const bound = 3 * time.Minute
	var want []string
	for _, e := range published {
		if e.Acked {
			want = append(want, e.Order.OrderID)
		}
	}
	took, _ := h.waitSettled(want, bound)
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer ccancel()
	rep, err := Check(cctx, h.nc, h.js, published)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	// Exits at fault points, from the processes' exit statuses.
	// Other exits are not injected: a process gave up (an error at start-up
	// while the servers were down, ...) and the supervisor restarted it.
	// Processes wait for their servers, so there must be none.
	exits, crashes := map[string]int{}, map[string]int{}
	for _, r := range append(append([]*role(nil), orchs...), parts...) {
		for _, c := range r.exitCodes() {
			if c == 137 {
				exits[r.kind+" exit at a fault point (exit 137)"]++
			} else {
				crashes[r.kind+" exited on its own with status "+strconv.Itoa(c)]++
			}
		}
	}

	var b strings.Builder
	setup := "one nats-server, --sync-always"
	if cluster {
		setup = "3-node cluster, R3 streams"
	}
	fmt.Fprintf(&b, "jetflow chaos soak: seed %d, faults for %s, %.0f orders/s, %s\n", seed, dur, rate, setup)
	fmt.Fprintf(&b, "reproduce: make chaos SEED=%d DURATION=%s%s%s\n\n", seed, durStr,
		map[bool]string{true: " CLUSTER=1", false: ""}[cluster],
		map[bool]string{true: " FAULTS=" + strings.Join(keys, ","), false: ""}[os.Getenv("JETFLOW_SOAK_FAULTS") != ""])
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	acked := len(want)
	fmt.Fprintf(tw, "orders published (acknowledged)\t%d (%d)\n", len(published), acked)
	fmt.Fprintf(tw, "outcomes\tcompleted %d, compensated %d, manual %d\n", rep.Outcomes["completed"], rep.Outcomes["compensated"], rep.Outcomes["manual"])
	fc := h.faultCounts()
	for k, v := range exits {
		fc[k] += v
	}
	var kinds []string
	total := 0
	for k, v := range fc {
		kinds = append(kinds, k)
		total += v
	}
	sort.Strings(kinds)
	fmt.Fprintf(tw, "faults injected\t%d\n", total)
	for _, k := range kinds {
		fmt.Fprintf(tw, "  %s\t%d\n", k, fc[k])
	}
	var crashKinds []string
	for k := range crashes {
		crashKinds = append(crashKinds, k)
	}
	sort.Strings(crashKinds)
	selfExits := 0
	for _, k := range crashKinds {
		fmt.Fprintf(tw, "not injected: %s, restarted\t%d\n", k, crashes[k])
		selfExits += crashes[k]
	}
	fmt.Fprintf(tw, "engine processes that exited on their own (gave up)\t%d\n", selfExits)
	fmt.Fprintf(tw, "double effects\t%d\n", len(rep.DoubleEffects))
	fmt.Fprintf(tw, "stuck (not ended within %s)\t%d\n", bound, len(rep.Stuck))
	fmt.Fprintf(tw, "lost (acknowledged, never started)\t%d\n", len(rep.Lost))
	fmt.Fprintf(tw, "other invariant violations\t%d\n", len(rep.Violations))
	fmt.Fprintf(tw, "compensated because an outage outlasted a step's retries\t%d\n", len(rep.Outages))
	fmt.Fprintf(tw, "all ended after the faults stopped in\t%s\n", took.Round(100*time.Millisecond))
	tw.Flush()
	for _, p := range rep.Problems(20) {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	for i, o := range rep.Outages {
		if i == 5 {
			fmt.Fprintf(&b, "  ... and %d more outages\n", len(rep.Outages)-5)
			break
		}
		fmt.Fprintf(&b, "  outage: %s\n", o)
	}
	fmt.Fprint(os.Stdout, "\n"+b.String())
	if path := os.Getenv("JETFLOW_SOAK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
	}
	if selfExits > 0 {
		t.Errorf("%d engine process exits that no fault caused: %v (a process must wait for NATS, not exit)", selfExits, crashKinds)
	}
	if !rep.OK() {
		t.Errorf("invariants broken: %s", rep)
		h.explainViolations(rep)
		for i, s := range rep.Stuck {
			if i == 5 {
				break
			}
			h.explain(strings.SplitN(s, ":", 2)[0])
		}
	}
}
