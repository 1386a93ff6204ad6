package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/notification"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

var alice = orchestrator.Request{Identity: "alice@ops-1", Reason: "test"}

// waitStatus polls until workflow id has status want.
func (s *stack) waitStatus(id string, want schema.Status) *orchestrator.Description {
	s.t.Helper()
	var d *orchestrator.Description
	natstest.Eventually(s.t, time.Minute, func() bool {
		var err error
		d, err = orchestrator.Describe(context.Background(), streams.NewHistory(s.env.NC, s.env.JS), id)
		return err == nil && d.Status == want
	}, "%s did not reach %s: %s", id, want, func() string {
		if d == nil {
			return "not started"
		}
		return string(d.Status) + " " + d.Reason
	}())
	return d
}

// listed reports whether id is among the workflows List returns for status.
func (s *stack) listed(id string, status schema.Status) bool {
	s.t.Helper()
	list, err := orchestrator.List(context.Background(), s.env.JS, status)
	if err != nil {
		s.t.Fatal(err)
	}
	in := false
	for _, w := range list {
		in = in || w.ID == id
	}
	// The paged list reads the index, which follows the history by
	// milliseconds: it agrees with List once it caught up.
	natstest.Eventually(s.t, 10*time.Second, func() bool {
		paged := false
		opts := orchestrator.ListOptions{Status: status, Limit: 1000}
		for {
			page, err := orchestrator.ListPage(context.Background(), s.env.JS, opts)
			if err != nil {
				s.t.Fatal(err)
			}
			for _, w := range page.Workflows {
				paged = paged || w.ID == id
			}
			if page.Next == "" {
				return paged == in
			}
			opts.Cursor = page.Next
		}
	}, fmt.Sprintf("ListPage(%s) disagrees with List on %s (List: %v)", status, id, in))
	return in
}

// participantWith starts reference participant name with wrap applied to
// the handler of action.
func (s *stack) participantWith(name, action string, wrap func(participants.Handler) participants.Handler) *part {
	nc, js := s.connect(natsauth.Participant(name))
	svc, err := reference.Service(context.Background(), js, streams.Topology{}, name, s.faults)
	if err != nil {
		s.t.Fatal(err)
	}
	svc.Handlers[action] = wrap(svc.Handlers[action])
	cfg := participants.Config{NC: nc, JS: js, Logger: testLogger(), AckWait: s.ackWait}
	return s.run(func(ctx context.Context) error { return participants.Run(ctx, cfg, svc) })
}

// TestRetryManualOrderEndsCompensatedWithOneRefund: the gateway fails the
// order's refund 12 times (more than the 4 attempts of a compensation),
// and on its last 4 failures it has made the refund and lost the answer.
// Each manual end is retried; once the fault clears the order ends
// compensated, with exactly one refund in the payment ledger.
func TestRetryManualOrderEndsCompensatedWithOneRefund(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	for _, n := range []string{"inventory", "shipping", "notification"} {
		s.participant(n)
	}
	var calls atomic.Int32
	s.participantWith("payment", payment.Refund.Action, func(h participants.Handler) participants.Handler {
		return participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			n := calls.Add(1)
			switch {
			case n <= 8:
				return nil, participants.Retryable("gateway_error", errors.New("gateway down"))
			case n <= 12: // refunded, then the answer is lost
				if _, err := h.Handle(ctx, cmd); err != nil {
					return nil, err
				}
				return nil, participants.Retryable("gateway_error", errors.New("answer lost"))
			}
			return h.Handle(ctx, cmd)
		})
	})
	o := order("retry-", 1, map[string]string{"shipping": "fail"})
	s.publishOrder(o)
	id := o.OrderID

	var seqs []uint64
	for round := 1; ; round++ {
		natstest.Eventually(t, time.Minute, func() bool {
			st := s.statuses()[id]
			return st == schema.StatusManual || st == schema.StatusCompensated
		}, "order %s did not end (round %d)", id, round)
		if s.statuses()[id] == schema.StatusCompensated {
			break
		}
		if !s.listed(id, schema.StatusManual) {
			t.Fatalf("round %d: manual order not in List(manual)", round)
		}
		if round > 3 {
			t.Fatalf("still manual after %d retries (%d refund calls)", round-1, calls.Load())
		}
		seq, err := orchestrator.Retry(context.Background(), s.env.JS, id, alice)
		if err != nil {
			t.Fatalf("round %d: retry: %v", round, err)
		}
		seqs = append(seqs, seq)
	}
	if len(seqs) != 3 {
		t.Fatalf("compensated after %d retries, want 3 (4 failed attempts per command, 12 failures)", len(seqs))
	}
	if got := calls.Load(); got != 13 {
		t.Errorf("refund handler called %d times, want 13", got)
	}
	if s.listed(id, schema.StatusManual) || !s.listed(id, schema.StatusCompensated) {
		t.Error("compensated order still listed as manual")
	}
	k := kinds(s.ledgers()[id])
	if k["refund"] != 1 || k["charge"] != 1 || k["reserve"] != k["release"] {
		t.Fatalf("ledger %v: want one charge, one refund, every reservation released", k)
	}
	// Each run's end is on a subject of its own, and the retries are in
	// the history with who asked.
	d := s.describe(id)
	var ends, refunds []string
	retries := 0
	for _, e := range d.History {
		switch {
		case e.Type == string(schema.KindWorkflowFinished):
			ends = append(ends, strings.TrimPrefix(e.Subject, "wf."+id+"."))
		case e.Type == string(schema.KindCommand) && e.Step == "payment.refund":
			refunds = append(refunds, e.Subject)
		case e.Type == string(schema.KindRetryRequested):
			retries++
			if e.Operator != alice.Identity {
				t.Errorf("retry by %q, want %q", e.Operator, alice.Identity)
			}
		}
	}
	if len(ends) != 4 || ends[0] != "done.manual" || !strings.HasPrefix(ends[3], "done.compensated.") {
		t.Errorf("ends %v: want done.manual, two done.manual.<seq>, done.compensated.<seq>", ends)
	}
	if retries != 3 || len(refunds) != 4 {
		t.Errorf("%d retries and refund commands %v: want 3 and 4 (one per run, each a new command)", retries, refunds)
	}
	if _, err := orchestrator.Retry(context.Background(), s.env.JS, id, alice); !errors.Is(err, orchestrator.ErrNotApplicable) {
		t.Fatalf("retry of a compensated order: %v, want ErrNotApplicable", err)
	}
}

// TestResolveLeavesTheManualQueue: a manual order resolved by a person ends
// resolved, with who and why in its history, and leaves List(manual).
func TestResolveLeavesTheManualQueue(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	s.participants()
	o := order("resolve-", 1, map[string]string{"shipping": "fail", "refund": "fail_always"})
	s.publishOrder(o)
	id := o.OrderID
	s.waitStatus(id, schema.StatusManual)
	if !s.listed(id, schema.StatusManual) {
		t.Fatal("manual order not in List(manual)")
	}
	if _, err := orchestrator.Resolve(context.Background(), s.env.JS, id, orchestrator.Request{Identity: "alice@ops-1"}); err == nil || !strings.Contains(err.Error(), "reason is required") {
		t.Fatalf("resolve without a reason: %v", err)
	}
	seq, err := orchestrator.Resolve(context.Background(), s.env.JS, id, orchestrator.Request{Identity: "alice@ops-1", Reason: "refunded by bank transfer"})
	if err != nil {
		t.Fatal(err)
	}
	d := s.waitStatus(id, schema.StatusResolved)
	if s.listed(id, schema.StatusManual) || !s.listed(id, schema.StatusResolved) {
		t.Fatal("resolved order still in the manual queue")
	}
	if d.Reason != "refunded by bank transfer" {
		t.Errorf("reason %q", d.Reason)
	}
	found := false
	for _, e := range d.History {
		if e.Seq == seq {
			found = e.Type == string(schema.KindResolveRequested) && e.Operator == "alice@ops-1" && e.Reason == "refunded by bank transfer"
		}
		if e.Seq > seq && e.Type == string(schema.KindCommand) {
			t.Errorf("command %s after the resolve", e.Subject)
		}
	}
	if !found {
		t.Errorf("resolve request not at history seq %d with who and why", seq)
	}
	if _, err := orchestrator.Resolve(context.Background(), s.env.JS, id, alice); !errors.Is(err, orchestrator.ErrNotApplicable) {
		t.Fatalf("second resolve: %v, want ErrNotApplicable", err)
	}
}

// stepThenSignal runs one notification step, then waits for signal "go".
func stepThenSignal(ctx workflow.Context, id string) (string, error) {
	if _, err := workflow.Execute[notification.NotifyResult](ctx, notification.Notify, notification.NotifyRequest{OrderID: id, Template: "hello"}); err != nil {
		return "", err
	}
	if _, err := workflow.WaitSignal[string](ctx, "go"); err != nil {
		return "", err
	}
	return "done", nil
}

// divergent is a broken deployment of stepThenSignal: its first step is
// another one.
func divergent(ctx workflow.Context, id string) (string, error) {
	_, err := workflow.Execute[payment.ChargeResult](ctx, payment.Charge, payment.ChargeRequest{OrderID: id})
	return "", err
}

// TestResumeBlockedWorkflowWithFixedCode: a workflow blocked by code that
// diverges from its history stays blocked when resumed on that code (with
// the new attempt recorded), and completes when resumed on fixed code,
// with no other event to wake it.
func TestResumeBlockedWorkflowWithFixedCode(t *testing.T) {
	const wfType = "verbs.step-then-signal"
	s := newStack(t)
	s.participant("notification")
	deploy := func(fn func(workflow.Context, string) (string, error)) {
		s.workflows = func(r *workflow.Registry) {
			fulfillment.Register(r, fulfillment.Config{Steps: fastSteps, Compensation: fastCompensation})
			workflow.Register(r, wfType, fn)
		}
	}
	deploy(stepThenSignal)
	good := s.orchestrator()
	ctx := context.Background()
	if _, err := orchestrator.StartAs(ctx, s.env.JS, wfType, "resume-1", "resume-1", alice); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, func() bool {
		d := s.describe("resume-1")
		return len(d.History) >= 3 && len(d.Waiting) == 0
	}, "the step did not complete")
	good.stop(t)

	// The broken deployment: the signal wakes it, and it blocks.
	deploy(divergent)
	bad := s.orchestrator()
	s.publish(streams.SignalSubject("go", "resume-1"), []byte(`"now"`), nil)
	s.waitStatus("resume-1", schema.StatusBlocked)
	if _, err := orchestrator.Cancel(ctx, s.env.JS, "resume-nope", alice); !errors.Is(err, streams.ErrNotFound) {
		t.Fatalf("cancel of an unknown workflow: %v, want ErrNotFound", err)
	}

	// Resumed on the same broken code: blocked again, recorded after the
	// resume.
	seq, err := orchestrator.Resume(ctx, s.env.JS, "resume-1", alice)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, func() bool {
		for _, e := range s.describe("resume-1").History {
			if e.Seq > seq && e.Type == string(schema.KindWorkflowBlocked) {
				return true
			}
		}
		return false
	}, "no blocked event after the resume on broken code")
	if st := s.describe("resume-1").Status; st != schema.StatusBlocked {
		t.Fatalf("status %s after a resume on broken code, want blocked", st)
	}
	bad.stop(t)

	// The fix is deployed; nothing wakes the workflow until it is resumed.
	deploy(stepThenSignal)
	s.orchestrator()
	if _, err := orchestrator.Resume(ctx, s.env.JS, "resume-1", alice); err != nil {
		t.Fatal(err)
	}
	s.waitStatus("resume-1", schema.StatusCompleted)
	if _, err := orchestrator.Resume(ctx, s.env.JS, "resume-1", alice); !errors.Is(err, orchestrator.ErrNotApplicable) || !strings.Contains(err.Error(), "is completed: resume applies to blocked workflows") {
		t.Fatalf("resume of a completed workflow: %v", err)
	}
}

// TestCancelOrderWaitingForPickup: a cancelled order that waits for the
// carrier releases its stock, cancels the shipment, refunds, and ends
// cancelled; its pickup deadline is cancelled and leaves the timers bucket.
func TestCancelOrderWaitingForPickup(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	s.participants()
	o := order("cancel-", 1, map[string]string{"pickup": "never"})
	s.publishOrder(o)
	id := o.OrderID
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(id) }, "order %s not waiting for pickup", id)
	ctx := context.Background()
	seq, err := orchestrator.Cancel(ctx, s.env.JS, id, orchestrator.Request{Identity: "alice@ops-1", Reason: "customer asked"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := orchestrator.Cancel(ctx, s.env.JS, id, alice); !errors.Is(err, orchestrator.ErrNotApplicable) || !strings.Contains(err.Error(), "cancel requested at history seq") {
		t.Fatalf("second cancel: %v, want ErrNotApplicable naming the first", err)
	}
	d := s.waitStatus(id, schema.StatusCancelled)
	if !strings.Contains(d.Error, "cancelled by alice@ops-1: customer asked") {
		t.Errorf("end error %q", d.Error)
	}
	k := kinds(s.ledgers()[id])
	if k["charge"] != 1 || k["refund"] != 1 || k["reserve"] != 1 || k["release"] != 1 || k["shipment"] != 1 || k["cancel"] != 1 {
		t.Fatalf("ledger %v: want the charge refunded, the stock released, the shipment cancelled", k)
	}
	var comps []string
	timerCancelled := false
	for _, e := range d.History {
		if e.Seq > seq && e.Compensation {
			comps = append(comps, e.Step)
		}
		if e.Seq > seq && e.Type == string(schema.KindTimerCancelled) {
			timerCancelled = true
		}
	}
	if strings.Join(comps, ",") != "shipping.cancel,inventory.release,payment.refund" {
		t.Errorf("compensations after the cancel %v", comps)
	}
	if !timerCancelled {
		t.Error("pickup deadline not cancelled in the history")
	}
	kv, err := s.env.JS.KeyValue(ctx, streams.TimersBucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		for k := range keys.Keys() {
			if strings.HasPrefix(k, id+".") {
				return false
			}
		}
		return true
	}, "the pickup deadline of %s is still in the timers bucket", id)
	if _, err := orchestrator.Cancel(ctx, s.env.JS, id, alice); !errors.Is(err, orchestrator.ErrNotApplicable) || err.Error() != "workflow "+id+" is cancelled: cancel applies to running or blocked workflows" {
		t.Fatalf("cancel of a cancelled order: %v", err)
	}
}

// TestTerminateSendsNoFurtherCommand: a terminated order ends terminated at
// once: no command after the terminate, nothing compensated, its pending
// timer gone from the bucket.
func TestTerminateSendsNoFurtherCommand(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	s.participants()
	o := order("term-", 1, map[string]string{"pickup": "never"})
	s.publishOrder(o)
	id := o.OrderID
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(id) }, "order %s not waiting for pickup", id)
	ctx := context.Background()
	seq, err := orchestrator.Terminate(ctx, s.env.JS, id, orchestrator.Request{Identity: "bob@ops-2", Reason: "duplicate order"})
	if err != nil {
		t.Fatal(err)
	}
	d := s.waitStatus(id, schema.StatusTerminated)
	if d.Reason != "duplicate order" {
		t.Errorf("reason %q", d.Reason)
	}
	// A signal after the end changes nothing.
	s.publish(streams.SignalSubject("carrier.picked_up", id), []byte(`{}`), nil)
	kv, err := s.env.JS.KeyValue(ctx, streams.TimersBucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		for k := range keys.Keys() {
			if strings.HasPrefix(k, id+".") {
				return false
			}
		}
		return true
	}, "the pickup deadline of %s is still in the timers bucket", id)
	for _, e := range s.history(id) {
		if e.Seq > seq && (e.Value.Kind() == schema.KindCommand || e.Value.Kind() == schema.KindTimerStarted) {
			t.Errorf("%s after the terminate (seq %d)", e.Subject, seq)
		}
	}
	if k := kinds(s.ledgers()[id]); k["refund"] != 0 || k["release"] != 0 || k["cancel"] != 0 {
		t.Errorf("ledger %v: a terminated order is not compensated", k)
	}
	if _, err := orchestrator.Terminate(ctx, s.env.JS, id, alice); !errors.Is(err, orchestrator.ErrNotApplicable) {
		t.Fatalf("second terminate: %v", err)
	}
}

// TestVerbsRefuseWhereTheyDoNotApply: each verb on a state it does not
// apply to is refused with ErrNotApplicable and a reason naming the state;
// nothing is appended.
func TestVerbsRefuseWhereTheyDoNotApply(t *testing.T) {
	s := newStack(t)
	s.workflows = func(r *workflow.Registry) {
		fulfillment.Register(r, fulfillment.Config{Steps: fastSteps, Compensation: fastCompensation})
		workflow.Register(r, "verbs.gives-up", func(workflow.Context, string) (string, error) {
			return "", &workflow.ManualError{Reason: "needs a person"}
		})
	}
	s.orchestrator()
	s.participants()
	if _, err := orchestrator.Start(context.Background(), s.env.JS, "verbs.gives-up", "refuse-manual", "", "test"); err != nil {
		t.Fatal(err)
	}
	s.waitStatus("refuse-manual", schema.StatusManual)
	done := order("refuse-", 1, nil)
	waiting := order("refuse-", 2, map[string]string{"pickup": "never"})
	s.publishOrder(done)
	s.publishOrder(waiting)
	s.waitStatus(done.OrderID, schema.StatusCompleted)
	natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(waiting.OrderID) }, "not waiting for pickup")
	ctx := context.Background()
	type verb func(context.Context, jetstream.JetStream, string, orchestrator.Request) (uint64, error)
	for _, tc := range []struct {
		name string
		verb verb
		id   string
		want string
	}{
		{"cancel a completed order", orchestrator.Cancel, done.OrderID, "is completed: cancel applies to running or blocked workflows"},
		{"terminate a completed order", orchestrator.Terminate, done.OrderID, "is completed: terminate applies to running or blocked workflows"},
		{"retry a completed order", orchestrator.Retry, done.OrderID, "is completed: retry applies to manual workflows"},
		{"retry a running order", orchestrator.Retry, waiting.OrderID, "is running: retry applies to manual workflows"},
		{"resolve a running order", orchestrator.Resolve, waiting.OrderID, "is running: resolve applies to manual or blocked workflows"},
		{"resume a running order", orchestrator.Resume, waiting.OrderID, "is running: resume applies to blocked workflows"},
		{"retry a manual workflow whose code returned", orchestrator.Retry, "refuse-manual", "is manual and its code has returned (needs a person): nothing to retry; resolve it once settled"},
		{"cancel a manual workflow", orchestrator.Cancel, "refuse-manual", "is manual: cancel applies to running or blocked workflows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.history(tc.id))
			_, err := tc.verb(ctx, s.env.JS, tc.id, alice)
			if !errors.Is(err, orchestrator.ErrNotApplicable) || err.Error() != "workflow "+tc.id+" "+tc.want {
				t.Fatalf("got %v, want ErrNotApplicable %q", err, tc.want)
			}
			if after := len(s.history(tc.id)); after != before {
				t.Fatalf("history grew from %d to %d events", before, after)
			}
		})
	}
	if _, err := orchestrator.Retry(ctx, s.env.JS, "refuse-none", alice); !errors.Is(err, streams.ErrNotFound) {
		t.Fatalf("retry of an unknown workflow: %v", err)
	}
	if _, err := orchestrator.Cancel(ctx, s.env.JS, "bad id", alice); err == nil {
		t.Fatal("invalid id accepted")
	}
}

// TestVerbsWithRolePermissions: on a server enforcing the role
// permissions, the operator role cancels and terminates orders, every part
// runs on its own role, and the cancelled order is compensated.
func TestVerbsWithRolePermissions(t *testing.T) {
	s := newAuthStack(t)
	s.orchestrator()
	s.participants()
	cancelled := order("auth-verbs-", 1, map[string]string{"pickup": "never"})
	terminated := order("auth-verbs-", 2, map[string]string{"pickup": "never"})
	s.publishOrder(cancelled)
	s.publishOrder(terminated)
	for _, o := range []string{cancelled.OrderID, terminated.OrderID} {
		natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(o) }, "order %s not waiting for pickup", o)
	}
	_, js, _ := s.env.ConnectAs(t, natsauth.Operator)
	ctx := context.Background()
	if _, err := orchestrator.Cancel(ctx, js, cancelled.OrderID, alice); err != nil {
		t.Fatalf("cancel as operator: %v", err)
	}
	if _, err := orchestrator.Terminate(ctx, js, terminated.OrderID, alice); err != nil {
		t.Fatalf("terminate as operator: %v", err)
	}
	s.waitStatus(cancelled.OrderID, schema.StatusCancelled)
	s.waitStatus(terminated.OrderID, schema.StatusTerminated)
	if k := kinds(s.ledgers()[cancelled.OrderID]); k["refund"] != 1 || k["release"] != 1 || k["cancel"] != 1 {
		t.Fatalf("cancelled order's ledger %v", k)
	}
	// A client may not act as an operator.
	_, cjs, _ := s.env.ConnectAs(t, natsauth.Client)
	short, stop := context.WithTimeout(ctx, 3*time.Second)
	defer stop()
	if _, err := orchestrator.Retry(short, cjs, cancelled.OrderID, alice); err == nil {
		t.Fatal("a client's retry was accepted")
	}
}

// A charge command waiting in the stream while its order is cancelled is
// not run when the payment participant comes up: the participant looks
// the step's cancellation up on its first delivery too, and answers it
// cancelled. Nothing is charged; the order settles the cancelled charge
// by its key all the same (its outcome was unknown to it), which blocks
// it for good, and ends cancelled once the participant has answered.
func TestCancelledStepWaitingInTheStreamIsNotRun(t *testing.T) {
	s := newStack(t)
	s.orchestrator()
	for _, n := range reference.Names {
		if n != "payment" {
			s.participant(n)
		}
	}
	o := order("cancel-queued-", 1, map[string]string{"pickup": "never"})
	s.publishOrder(o)
	id := o.OrderID
	charge := streams.CommandSubject(id, 1, "payment", "charge")
	natstest.Eventually(t, time.Minute, func() bool {
		for _, ev := range s.history(id) {
			if ev.Subject == charge {
				return true
			}
		}
		return false
	}, "charge of %s not recorded", id)
	if _, err := orchestrator.Cancel(context.Background(), s.env.JS, id, alice); err != nil {
		t.Fatal(err)
	}
	s.participant("payment")
	s.waitStatus(id, schema.StatusCancelled)
	result := streams.ResultSubject(id, 1, "payment", "charge")
	var res *schema.Result
	natstest.Eventually(t, time.Minute, func() bool {
		for _, ev := range s.history(id) {
			if r, ok := ev.Value.(*schema.Result); ok && ev.Subject == result {
				res = r
				return true
			}
		}
		return false
	}, "the waiting charge of %s was never answered", id)
	if res.Error == nil || res.Error.Kind != participants.KindCancelled {
		t.Fatalf("charge answered %+v, want a cancelled failure", res)
	}
	if k, _ := s.payments(id); k["charge"] != 0 || k["refund"] != 0 || k[sim.KindBlocked] != 1 {
		t.Fatalf("payment ledger %v: want no charge, no refund, the charge's key blocked", k)
	}
}
