package test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/internal/reconcile"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/schedule"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// newReconcileStack is a stack whose orchestrators also run the
// reconciliation and schedule workflows, with the reference participants
// and the reconciliation's scan service.
func newReconcileStack(t *testing.T) *stack {
	s := newStack(t)
	s.workflows = func(r *workflow.Registry) {
		fulfillment.Register(r, fulfillment.Config{Steps: fastSteps, Compensation: fastCompensation})
		reconcile.Register(r, reconcile.Config{Refund: fastCompensation})
		schedule.Register(r)
	}
	s.orchestrator()
	s.participants()
	s.reconcileService()
	return s
}

// reconcileService runs the scan step on its own connection, as the
// reconcile role.
func (s *stack) reconcileService() *part {
	nc, js := s.connect(natsauth.Reconcile)
	cfg := participants.Config{NC: nc, JS: js, Logger: testLogger(), AckWait: s.ackWait}
	return s.run(func(ctx context.Context) error { return participants.Run(ctx, cfg, reconcile.Service(js)) })
}

func reconcileOrder(id string, simulate map[string]string) fulfillment.Order {
	return fulfillment.Order{OrderID: id, CustomerID: "c-1", AmountCents: 4200, Currency: "EUR",
		Items: []inventory.Item{{SKU: "sku-1", Qty: 1}}, Simulate: simulate}
}

// gatewayApply writes an effect straight into the payment ledger, as the
// gateway (or a person at its console) does without the engine knowing.
func (s *stack) gatewayApply(e sim.Effect) sim.Effect {
	s.t.Helper()
	sys, err := sim.Open(context.Background(), s.env.JS, payment.Name, streams.Topology{})
	if err != nil {
		s.t.Fatal(err)
	}
	if e.Ref == "" {
		prefix := map[string]string{"charge": "ch", "refund": "re"}[e.Kind]
		e.Ref = sim.Ref(prefix, e.IdempotencyKey)
	}
	out, first, err := sys.Apply(context.Background(), e)
	if err != nil || !first {
		s.t.Fatalf("gateway %s %s: first %v, %v", e.Kind, e.IdempotencyKey, first, err)
	}
	return out
}

// paymentLines is the payment ledger as "order kind ref key" lines,
// sorted: two equal snapshots mean nothing moved.
func (s *stack) paymentLines() []string {
	s.t.Helper()
	effects, err := sim.List(context.Background(), s.env.JS, payment.Name, "")
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, e := range effects {
		out = append(out, fmt.Sprintf("%s %s %d %s %s", e.OrderID, e.Kind, e.AmountCents, e.Ref, e.IdempotencyKey))
	}
	sort.Strings(out)
	return out
}

// findingsByKey maps "class order" to the finding.
func findingsByKey(rep reconcile.Report) map[string]reconcile.Finding {
	out := map[string]reconcile.Finding{}
	for _, f := range rep.Findings {
		out[f.Class+" "+f.OrderID] = f
	}
	return out
}

func reconcileKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestReconcile injects what the engine cannot see and checks that the
// job finds each case, refunds the fixable ones exactly once through the
// payment participant, and that a second run changes nothing:
//
//   - a charge the gateway made whose result never came back (the order
//     ended compensated without it): refunded;
//   - a charge of an order that has no workflow: refunded;
//   - the same, older than OrphanWithin (its history may have been
//     archived): reported for a person, not refunded;
//   - the same, refunded by hand at the gateway: settled, left alone;
//   - a charge younger than the grace period: left alone (in flight);
//   - a charge refunded in part by hand: reported for a person, not
//     refunded in full on top;
//   - a completed order charged a second time: critical, not touched;
//   - a compensated order refunded again by hand: critical, not touched;
//   - completed and compensated orders: no finding.
func TestReconcile(t *testing.T) {
	s := newReconcileStack(t)
	ctx := context.Background()
	orders := map[string]map[string]string{
		"rc-lost":          {"payment": "decline"},
		"rc-hand":          {"payment": "decline"},
		"rc-young":         {"payment": "decline"},
		"rc-partial":       {"payment": "decline"},
		"rc-double-charge": nil,
		"rc-double-refund": {"inventory": "out_of_stock"},
		"rc-ok":            nil,
		"rc-compensated":   {"inventory": "out_of_stock"},
	}
	var ids []string
	for id, sim := range orders {
		s.publishOrder(reconcileOrder(id, sim))
		ids = append(ids, id)
	}
	st := s.waitSettled(ids, 30*time.Second)
	want := map[string]schema.Status{
		"rc-lost": schema.StatusCompensated, "rc-hand": schema.StatusCompensated, "rc-young": schema.StatusCompensated,
		"rc-partial":       schema.StatusCompensated,
		"rc-double-charge": schema.StatusCompleted, "rc-ok": schema.StatusCompleted,
		"rc-double-refund": schema.StatusCompensated, "rc-compensated": schema.StatusCompensated,
	}
	for id, w := range want {
		if st[id] != w {
			t.Fatalf("order %s is %s, want %s", id, st[id], w)
		}
	}
	hourAgo := time.Now().Add(-time.Hour).UTC()
	charge := func(order, key string, at time.Time) sim.Effect {
		return s.gatewayApply(sim.Effect{IdempotencyKey: key, OrderID: order, Kind: "charge", AmountCents: 4200, Currency: "EUR", Time: at})
	}
	lost := charge("rc-lost", "lost-charge", hourAgo)
	absent := charge("rc-absent", "absent-charge", hourAgo)
	charge("rc-old-orphan", "old-orphan-charge", time.Now().Add(-100*time.Hour).UTC())
	charge("rc-hand", "hand-charge", hourAgo)
	s.gatewayApply(sim.Effect{IdempotencyKey: "console-refund-1", OrderID: "rc-hand", Kind: "refund", AmountCents: 4200, Currency: "EUR", Time: hourAgo})
	charge("rc-young", "young-charge", time.Now().UTC())
	charge("rc-partial", "partial-charge", hourAgo)
	s.gatewayApply(sim.Effect{IdempotencyKey: "console-refund-3", OrderID: "rc-partial", Kind: "refund", AmountCents: 1000, Currency: "EUR", Time: hourAgo})
	charge("rc-double-charge", "second-charge", hourAgo)
	s.gatewayApply(sim.Effect{IdempotencyKey: "console-refund-2", OrderID: "rc-double-refund", Kind: "refund", AmountCents: 4200, Currency: "EUR", Time: hourAgo})

	opts := reconcile.Options{Since: 200 * time.Hour, Grace: 10 * time.Minute}
	rep, err := reconcile.Scan(ctx, s.env.JS, opts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := findingsByKey(rep)
	wantKeys := []string{
		"charged_not_refunded rc-absent", "charged_not_refunded rc-lost",
		"double_charge rc-double-charge", "double_refund rc-double-refund",
		"charged_not_refunded rc-old-orphan", "charged_not_refunded rc-partial",
	}
	if strings.Join(reconcileKeys(got), "|") != strings.Join(sortedCopy(wantKeys), "|") {
		t.Fatalf("findings %v, want %v", reconcileKeys(got), wantKeys)
	}
	if f := got["charged_not_refunded rc-lost"]; !f.Fixable || f.Critical || f.ChargeID != lost.Ref || f.AmountCents != 4200 || f.Status != schema.StatusCompensated {
		t.Errorf("lost charge: %+v", f)
	}
	if f := got["charged_not_refunded rc-absent"]; !f.Fixable || f.ChargeID != absent.Ref || f.Status != "" {
		t.Errorf("charge without a workflow: %+v", f)
	}
	if f := got["charged_not_refunded rc-old-orphan"]; f.Fixable || f.Critical || !strings.Contains(f.Action, "may have been archived") {
		t.Errorf("a charge older than OrphanWithin with no workflow: %+v", f)
	}
	if f := got["charged_not_refunded rc-partial"]; f.Fixable || f.Critical || f.RefundedCents != 1000 || !strings.Contains(f.Action, "refunded in part") {
		t.Errorf("a charge refunded in part by hand: %+v", f)
	}
	for _, k := range wantKeys[2:4] {
		if f := got[k]; !f.Critical || f.Fixable {
			t.Errorf("%s: want critical and not fixable: %+v", k, f)
		}
	}
	if rep.Critical() != 2 {
		t.Errorf("critical %d, want 2", rep.Critical())
	}
	before := s.paymentLines()

	// The fix: a reconciliation workflow refunds through the participant.
	fix := func(at time.Time) reconcile.Report {
		t.Helper()
		id, err := reconcile.StartFix(ctx, s.env.JS, reconcile.Params{Options: opts, Fix: true}, "test", at)
		if err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		rep, fin, err := reconcile.Await(actx, s.env.JS, id)
		if err != nil {
			t.Fatal(err)
		}
		if fin.Status != schema.StatusCompleted {
			t.Fatalf("reconciliation %s ended %s: %s %s", id, fin.Status, fin.Reason, fin.Error)
		}
		return rep
	}
	rep = fix(time.Now())
	got = findingsByKey(rep)
	for _, k := range wantKeys[:2] {
		if a := got[k].Action; !strings.HasPrefix(a, "refunded re_") {
			t.Errorf("%s: action %q, want refunded", k, a)
		}
	}
	after := s.paymentLines()
	added := ledgerDiff(after, before)
	wantAdded := []string{
		fmt.Sprintf("rc-absent refund 4200 %s refund.%s", sim.Ref("re", "refund."+absent.Ref), absent.Ref),
		fmt.Sprintf("rc-lost refund 4200 %s refund.%s", sim.Ref("re", "refund."+lost.Ref), lost.Ref),
	}
	if strings.Join(added, "|") != strings.Join(wantAdded, "|") {
		t.Fatalf("the fix wrote %q to the ledger, want %q", added, wantAdded)
	}

	// A second run finds only the critical ones and writes nothing.
	rep = fix(time.Now().Add(time.Second))
	if k := reconcileKeys(findingsByKey(rep)); strings.Join(k, "|") != strings.Join(sortedCopy(wantKeys[2:]), "|") {
		t.Errorf("second run: findings %v, want %v", k, sortedCopy(wantKeys[2:]))
	}
	if again := s.paymentLines(); strings.Join(again, "\n") != strings.Join(after, "\n") {
		t.Errorf("the second run changed the ledger: %q", ledgerDiff(again, after))
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// ledgerDiff is what a has and b has not (both sorted).
func ledgerDiff(a, b []string) []string {
	in := map[string]int{}
	for _, x := range b {
		in[x]++
	}
	var out []string
	for _, x := range a {
		if in[x] > 0 {
			in[x]--
			continue
		}
		out = append(out, x)
	}
	return out
}

// TestReconcileSchedule runs the reconciliation on a schedule, with two
// processes firing the runs and both starting the chain: every slot starts
// one reconciliation, the lost charge is refunded once however many run,
// each run's history stays short, and `jetflow schedule` (schedule.List)
// shows the next run and the last one with its result.
func TestReconcileSchedule(t *testing.T) {
	s := newReconcileStack(t)
	ctx := context.Background()
	s.publishOrder(reconcileOrder("rs-lost", map[string]string{"payment": "decline"}))
	s.waitSettled([]string{"rs-lost"}, 30*time.Second)
	lost := s.gatewayApply(sim.Effect{IdempotencyKey: "rs-lost-charge", OrderID: "rs-lost", Kind: "charge", AmountCents: 4200, Currency: "EUR", Time: time.Now().Add(-time.Hour).UTC()})

	sc := schedule.Schedule{
		Name: "reconcile", Spec: "@every 2s", WorkflowType: reconcile.WorkflowType,
		Input: reconcile.Params{Options: reconcile.Options{Grace: time.Minute}, Fix: true},
	}
	for range 2 { // two processes
		nc, js := s.connect(natsauth.Reconcile)
		sched, err := schedule.New(js, sc)
		if err != nil {
			t.Fatal(err)
		}
		cfg := participants.Config{NC: nc, JS: js, Logger: testLogger(), AckWait: s.ackWait}
		s.run(func(ctx context.Context) error { return participants.Run(ctx, cfg, sched.Service()) })
		if err := sched.Ensure(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	var runs []orchestrator.Summary
	natstest.Eventually(t, 60*time.Second, func() bool {
		page, err := orchestrator.ListPage(ctx, s.env.JS, orchestrator.ListOptions{Type: reconcile.WorkflowType, Status: schema.StatusCompleted})
		if err != nil {
			t.Fatal(err)
		}
		runs = page.Workflows
		return len(runs) >= 3
	}, "fewer than 3 scheduled reconciliations completed")
	refunds := 0
	for _, line := range s.paymentLines() {
		if strings.HasPrefix(line, "rs-lost refund ") {
			refunds++
			if !strings.HasSuffix(line, " refund."+lost.Ref) {
				t.Errorf("refund not keyed on the charge: %s", line)
			}
		}
	}
	if refunds != 1 {
		t.Errorf("%d refunds of the lost charge after %d runs, want 1", refunds, len(runs))
	}
	for _, r := range runs {
		if !strings.HasPrefix(r.ID, streams.ReservedIDPrefix+"reconcile-") {
			t.Errorf("scheduled reconciliation %s: not a derived id", r.ID)
		}
	}
	var list []schedule.Info
	natstest.Eventually(t, 30*time.Second, func() bool {
		var err error
		if list, err = schedule.List(ctx, s.env.JS, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		return len(list) == 1 && list[0].LastStatus == schema.StatusCompleted
	}, "schedule list: %+v", list)
	in := list[0]
	if in.Name != "reconcile" || in.Spec != "@every 2s" || in.Type != reconcile.WorkflowType ||
		!in.NextRun.After(in.LastRun) || in.LastWorkflow != schedule.TargetID("reconcile", in.LastRun) ||
		!strings.Contains(in.LastResult, `"orders"`) {
		t.Errorf("schedule list: %+v", in)
	}
	d := s.describe(schedule.RunID("reconcile", in.LastRun))
	if d.Status != schema.StatusCompleted || len(d.History) > 12 {
		t.Errorf("run %s: %s with %d events, want completed in a short history", d.ID, d.Status, len(d.History))
	}
}

// TestReconcileRefundFailsForGood: with the payment gateway too slow for
// every attempt, the fix's refund runs out of attempts and the run ends in
// the manual queue naming the order, its report (the report query) saying
// what failed, and nothing was refunded; the next run, with the gateway
// back, refunds the charge once.
func TestReconcileRefundFailsForGood(t *testing.T) {
	s := newStack(t)
	s.workflows = func(r *workflow.Registry) {
		fulfillment.Register(r, fulfillment.Config{Steps: fastSteps, Compensation: fastCompensation})
		reconcile.Register(r, reconcile.Config{Refund: fastCompensation})
	}
	s.orchestrator()
	s.reconcileService()
	s.faults.Latency = time.Minute // longer than every attempt's 2s
	slow := s.participant(payment.Name)
	ctx := context.Background()
	lost := s.gatewayApply(sim.Effect{IdempotencyKey: "rf-charge", OrderID: "rf-1", Kind: "charge", AmountCents: 700, Currency: "EUR", Time: time.Now().Add(-time.Hour).UTC()})
	params := reconcile.Params{Options: reconcile.Options{Grace: time.Minute}, Fix: true}
	run := func(at time.Time) (reconcile.Report, *schema.WorkflowFinished) {
		t.Helper()
		id, err := reconcile.StartFix(ctx, s.env.JS, params, "test", at)
		if err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		rep, fin, err := reconcile.Await(actx, s.env.JS, id)
		if err != nil {
			t.Fatal(err)
		}
		return rep, fin
	}
	refunds := func() []string {
		var out []string
		for _, line := range s.paymentLines() {
			if strings.Contains(line, " refund ") {
				out = append(out, line)
			}
		}
		return out
	}
	rep, fin := run(time.Now())
	if fin.Status != schema.StatusManual || !strings.Contains(fin.Reason, "1 refund(s) failed: orders rf-1") {
		t.Fatalf("run against a gateway that never answers in time ended %s: %q", fin.Status, fin.Reason)
	}
	if len(rep.Findings) != 1 || !strings.HasPrefix(rep.Findings[0].Action, "manual: refund failed") {
		t.Fatalf("report of the failed run: %+v", rep.Findings)
	}
	if got := refunds(); len(got) != 0 {
		t.Fatalf("the failed run refunded: %q", got)
	}

	slow.stop(t)
	s.faults.Latency = 0
	s.participant(payment.Name)
	rep, fin = run(time.Now().Add(time.Second))
	if fin.Status != schema.StatusCompleted || len(rep.Findings) != 1 || !strings.HasPrefix(rep.Findings[0].Action, "refunded ") {
		t.Fatalf("second run ended %s: %+v", fin.Status, rep.Findings)
	}
	if got := refunds(); len(got) != 1 || !strings.HasSuffix(got[0], " refund."+lost.Ref) {
		t.Errorf("refunds %q, want one keyed on %s", got, lost.Ref)
	}
}

// TestScheduleChangeEndsTheOldChain: a run the old spec of a schedule left
// pending (overdue after an outage, say) starts nothing when it fires
// under a new spec, neither its target nor its successor, so only the new
// spec's chain goes on.
func TestScheduleChangeEndsTheOldChain(t *testing.T) {
	s := newStack(t)
	s.workflows = func(r *workflow.Registry) {
		fulfillment.Register(r, fulfillment.Config{Steps: fastSteps, Compensation: fastCompensation})
		schedule.Register(r)
		workflow.Register(r, "test.tick", func(ctx workflow.Context, _ struct{}) (string, error) { return workflow.WorkflowID(ctx), nil })
	}
	s.orchestrator()
	ctx := context.Background()
	h := streams.NewHistory(s.env.NC, s.env.JS)
	exists := func(id string) bool {
		_, err := orchestrator.Describe(ctx, h, id)
		if err != nil && !errors.Is(err, streams.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	overdue := time.Now().Add(-time.Second).Truncate(time.Second).UTC()
	if _, err := orchestrator.StartDerived(ctx, s.env.JS, schedule.RunType, schedule.RunID("tick", overdue),
		schedule.Run{Name: "tick", Spec: "@every 1h", Type: "test.tick", At: overdue}, "test"); err != nil {
		t.Fatal(err)
	}
	nc, js := s.connect(natsauth.Orchestrator)
	sched, err := schedule.New(js, schedule.Schedule{Name: "tick", Spec: "@every 2s", WorkflowType: "test.tick"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := participants.Config{NC: nc, JS: js, Logger: testLogger(), AckWait: s.ackWait}
	s.run(func(ctx context.Context) error { return participants.Run(ctx, cfg, sched.Service()) })
	if err := sched.Ensure(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	var end string
	natstest.Eventually(t, 30*time.Second, func() bool {
		d := s.describe(schedule.RunID("tick", overdue))
		for _, e := range d.History {
			if e.Type == string(schema.KindWorkflowFinished) {
				end = string(e.Data)
			}
		}
		return d.Status.Terminal()
	}, "the old spec's run did not end")
	if !strings.Contains(end, `schedule \"tick\" is now \"@every 2s\", not \"@every 1h\"`) {
		t.Errorf("the old spec's run ended: %s", end)
	}
	if exists(schedule.TargetID("tick", overdue)) {
		t.Errorf("the old spec's run started its target")
	}
	if exists(schedule.RunID("tick", mustParseSpec(t, "@every 1h").Next(overdue))) {
		t.Errorf("the old spec's run started a successor")
	}
	natstest.Eventually(t, 30*time.Second, func() bool {
		page, err := orchestrator.ListPage(ctx, s.env.JS, orchestrator.ListOptions{Type: "test.tick", Status: schema.StatusCompleted})
		return err == nil && len(page.Workflows) >= 2
	}, "the new spec's chain did not run")
}

func mustParseSpec(t *testing.T, s string) schedule.Spec {
	t.Helper()
	v, err := schedule.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
