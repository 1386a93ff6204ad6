package test

import (
	"context"
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
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestAuthReconcile runs the reconciliation under the permissions of
// deploy/nats-server.conf: the scan and the schedule run as the reconcile
// role, a `jetflow reconcile --fix` (StartFix and Await) as the operator.
// A lost charge is refunded once by the operator's run, another by the
// scheduled one, and neither connection meets a permission violation.
func TestAuthReconcile(t *testing.T) {
	s := newAuthStack(t)
	s.workflows = func(r *workflow.Registry) {
		fulfillment.Register(r, fulfillment.Config{Steps: fastSteps, Compensation: fastCompensation})
		reconcile.Register(r, reconcile.Config{Refund: fastCompensation})
		schedule.Register(r)
	}
	s.orchestrator()
	s.participants()
	ctx := context.Background()
	rnc, rjs, rv := s.env.ConnectAs(t, natsauth.Reconcile)
	cfg := participants.Config{NC: rnc, JS: rjs, Logger: testLogger(), AckWait: s.ackWait}
	s.run(func(ctx context.Context) error { return participants.Run(ctx, cfg, reconcile.Service(rjs)) })

	lostCharge := func(order string) sim.Effect {
		s.publishOrder(reconcileOrder(order, map[string]string{"payment": "decline"}))
		if st := s.waitSettled([]string{order}, 30*time.Second); st[order] != schema.StatusCompensated {
			t.Fatalf("order %s is %s, want compensated", order, st[order])
		}
		return s.gatewayApply(sim.Effect{IdempotencyKey: order + "-charge", OrderID: order, Kind: "charge", AmountCents: 4200, Currency: "EUR", Time: time.Now().Add(-time.Hour).UTC()})
	}
	refunds := func(order string) int {
		n := 0
		for _, line := range s.paymentLines() {
			if strings.HasPrefix(line, order+" refund ") {
				n++
			}
		}
		return n
	}

	// jetflow reconcile --fix, with the operator's credentials.
	cli := lostCharge("ra-cli")
	_, ojs, ov := s.env.ConnectAs(t, natsauth.Operator)
	p := reconcile.Params{Options: reconcile.Options{Grace: time.Minute}, Fix: true}
	id, err := reconcile.StartFix(ctx, ojs, p, "cli", time.Now())
	if err != nil {
		t.Fatalf("start the fix as operator: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rep, fin, err := reconcile.Await(wctx, ojs, id)
	if err != nil {
		t.Fatalf("await the fix as operator: %v", err)
	}
	if fin.Status != schema.StatusCompleted {
		t.Fatalf("fix %s ended %s: %s", id, fin.Status, fin.Reason)
	}
	if f, ok := findingsByKey(rep)[reconcile.ClassNotRefunded+" ra-cli"]; !ok || f.ChargeID != cli.Ref || !strings.HasPrefix(f.Action, "refunded ") {
		t.Errorf("the fix's report on ra-cli: %+v (found %v)", f, ok)
	}
	if n := refunds("ra-cli"); n != 1 {
		t.Errorf("ra-cli refunded %d times, want 1", n)
	}

	// The scheduled reconciliation, fired by the reconcile role.
	lostCharge("ra-scheduled")
	sched, err := schedule.New(rjs, schedule.Schedule{Name: "reconcile", Spec: "@every 2s", WorkflowType: reconcile.WorkflowType, Input: p})
	if err != nil {
		t.Fatal(err)
	}
	s.run(func(ctx context.Context) error { return participants.Run(ctx, cfg, sched.Service()) })
	if err := sched.Ensure(ctx, time.Now()); err != nil {
		t.Fatalf("start the schedule as the reconcile role: %v", err)
	}
	natstest.Eventually(t, 60*time.Second, func() bool {
		page, err := orchestrator.ListPage(ctx, s.env.JS, orchestrator.ListOptions{Type: reconcile.WorkflowType, Status: schema.StatusCompleted})
		if err != nil {
			t.Fatal(err)
		}
		scheduled := 0
		for _, w := range page.Workflows {
			if w.ID != id {
				scheduled++
			}
		}
		return scheduled >= 2 && refunds("ra-scheduled") > 0
	}, "no scheduled reconciliation refunded ra-scheduled")
	if n := refunds("ra-scheduled"); n != 1 {
		t.Errorf("ra-scheduled refunded %d times, want 1", n)
	}
	if n := refunds("ra-cli"); n != 1 {
		t.Errorf("ra-cli refunded %d times after the scheduled runs, want 1", n)
	}
	for role, v := range map[string]*natstest.Violations{natsauth.Reconcile: rv, natsauth.Operator: ov} {
		if all := v.All(); len(all) > 0 {
			t.Errorf("%s: permission violations: %v", role, all)
		}
	}
	if dl := s.deadLetters(streams.DeadLetterPrefix + ".>"); len(dl) > 0 {
		t.Errorf("dead letters under auth: %v", dl)
	}
}

// TestAuthReconcileRoleCannotForge: the reconcile role, which may start
// workflows and answer its own services' commands, is refused a result of
// another service (a payment refund or charge), a command, a history
// event of the orchestrator, a write to the payment ledger, and the pull
// of another service's commands.
func TestAuthReconcileRoleCannotForge(t *testing.T) {
	s := newAuthStack(t)
	rec := s.attacker(natsauth.Reconcile)
	res := func(svc, action string) *schema.Result {
		return &schema.Result{WorkflowID: "o-victim", CommandID: 3, Service: svc, Action: action, Output: raw(t, payment.RefundResult{RefundID: "re-forged"}), Attempts: 1}
	}
	for _, subject := range []string{
		streams.ResultSubject("o-victim", 3, "payment", "refund"),
		streams.ResultSubject("o-victim", 1, "payment", "charge"),
		streams.ResultSubject("o-victim", 2, "inventory", "reserve"),
	} {
		parts := strings.Split(subject, ".")
		rec.forge(encoded(t, subject, res(parts[4], parts[5])))
	}
	rec.forge(encoded(t, streams.CommandSubject("o-victim", 4, "payment", "refund"), &schema.Command{WorkflowID: "o-victim", ID: 4, Service: "payment", Action: "refund"}))
	rec.forge(encoded(t, "wf.o-victim.done.completed", &schema.WorkflowFinished{Status: schema.StatusCompleted}))
	for _, subject := range []string{
		"$KV." + streams.LedgerBucketPrefix + payment.Name + ".forged",
		"$JS.API.CONSUMER.MSG.NEXT." + streams.HistoryStreams()[0] + "." + streams.ParticipantConsumerPrefix + "payment",
	} {
		if err := rec.nc.Publish(subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		_ = rec.nc.Flush()
		natstest.Eventually(t, 10*time.Second, func() bool { return rec.v.Has(subject) },
			"reconcile: no permission violation for %s (reported: %v)", subject, rec.v.All())
	}
}

// TestReconcileServicesNamed: the services the reconcile role may run are
// the reconciliation's scan and the schedules' fire, by their names.
func TestReconcileServicesNamed(t *testing.T) {
	want := []string{reconcile.ServiceName, schedule.ServiceName}
	if strings.Join(natsauth.ReconcileServices, ",") != strings.Join(want, ",") {
		t.Fatalf("natsauth.ReconcileServices %v, want %v", natsauth.ReconcileServices, want)
	}
}

// TestAuthReconcileReadsTheArchive: the reconcile role may read archived
// histories (the scan's Describe of an order whose history is gone, or
// never was, looks in the archive), and meets no permission violation.
func TestAuthReconcileReadsTheArchive(t *testing.T) {
	s := newAuthStack(t)
	ctx := context.Background()
	rec := &schema.ArchivedHistory{WorkflowID: "ar-1", Type: fulfillment.WorkflowType, Status: schema.StatusCompleted,
		Ended: time.Now().UTC(), ArchivedAt: time.Now().UTC(), StartSeq: 1, LastSeq: 3, Parts: 1}
	if _, _, err := streams.NewHistory(s.env.NC, s.env.JS).WriteArchive(ctx, rec); err != nil {
		t.Fatalf("write the archive record as admin: %v", err)
	}
	rnc, rjs, rv := s.env.ConnectAs(t, natsauth.Reconcile)
	h := streams.NewHistory(rnc, rjs)
	got, err := h.Archived(ctx, "ar-1")
	if err != nil || got == nil || got.Status != schema.StatusCompleted {
		t.Fatalf("archived ar-1 as reconcile: %+v, %v; violations %v", got, err, rv.All())
	}
	if got, err := h.Archived(ctx, "ar-never"); err != nil || got != nil {
		t.Fatalf("archived ar-never as reconcile: %+v, %v; violations %v", got, err, rv.All())
	}
	if vs := rv.All(); len(vs) > 0 {
		t.Errorf("permission violations of the reconcile role: %v", vs)
	}
}
