package participants_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// paymentService runs the payment participant with its handlers counted.
func (h *harness) paymentService(cfg participants.Config) (charges, refunds *atomic.Int32) {
	h.t.Helper()
	charges, refunds = new(atomic.Int32), new(atomic.Int32)
	svc := payment.Service(h.system(payment.Name), sim.Faults{})
	svc.Handlers[payment.Charge.Action] = counted(svc.Handlers[payment.Charge.Action], charges)
	svc.Handlers[payment.Refund.Action] = counted(svc.Handlers[payment.Refund.Action], refunds)
	h.run(cfg, svc)
	return charges, refunds
}

func chargeCmd(t *testing.T, id, simulate string) schema.Command {
	return command(t, id, payment.Name, payment.Charge.Action, payment.ChargeRequest{
		OrderID: "order-" + id, CustomerID: "cust-1", AmountCents: 4200, Currency: "EUR", Simulate: simulate,
	})
}

func refundCmd(t *testing.T, id, simulate string) schema.Command {
	return command(t, id, payment.Name, payment.Refund.Action, payment.RefundRequest{
		OrderID: "order-" + id, ChargeID: "ch_1", AmountCents: 4200, Currency: "EUR", Simulate: simulate,
	})
}

func TestSuccessPublishesOneResultAndOneEffect(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	charges, _ := h.paymentService(participants.Config{})

	c := chargeCmd(t, "wf-ok", "")
	seq := h.send(c, "cmd-wf-ok-1")
	res := h.result("wf-ok")
	h.waitAcked(payment.Name, seq)

	if res.Error != nil {
		t.Fatalf("result error %+v, want success", res.Error)
	}
	if res.WorkflowID != "wf-ok" || res.CommandID != 1 || res.Service != "payment" || res.Action != "charge" || res.Attempts != 1 {
		t.Fatalf("result header %+v", res)
	}
	out := decode[payment.ChargeResult](t, res.Output)
	if out.AmountCents != 4200 || out.Currency != "EUR" || !strings.HasPrefix(out.ChargeID, "ch_") {
		t.Fatalf("output %+v", out)
	}
	if got := len(h.results("wf-ok")); got != 1 {
		t.Fatalf("%d results, want 1", got)
	}
	effs := h.effects(payment.Name, "order-wf-ok")
	if len(effs) != 1 || effs[0].Kind != "charge" || effs[0].AmountCents != 4200 || effs[0].Ref != out.ChargeID || effs[0].IdempotencyKey != c.IdempotencyKey {
		t.Fatalf("ledger %+v", effs)
	}
	if n := charges.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
}

func TestDuplicateCommandIsNotRerun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	charges := new(atomic.Int32)
	svc := payment.Service(h.system(payment.Name), sim.Faults{})
	svc.Handlers[payment.Charge.Action] = counted(svc.Handlers[payment.Charge.Action], charges)
	stop := h.run(participants.Config{}, svc)

	c := chargeCmd(t, "wf-dup", "")
	seq := h.send(c, "cmd-wf-dup-1")
	first := h.result("wf-dup")
	h.waitAcked(payment.Name, seq)

	// A second delivery of the same command: the service's consumer is
	// recreated from the start of the stream, as after an operator deleted
	// it. (The history stream refuses a second message on the subject.)
	stop()
	if err := h.env.JS.DeleteConsumer(h.ctx, streams.HistoryStream, streams.ParticipantConsumerPrefix+payment.Name); err != nil {
		t.Fatal(err)
	}
	h.run(participants.Config{}, svc)
	h.waitAcked(payment.Name, seq)

	// The result in the history is the command's record: the redelivery
	// is acked without running the handler, and the result is unchanged.
	if again := h.results("wf-dup"); len(again) != 1 || fmt.Sprint(*again[0]) != fmt.Sprint(*first) {
		t.Fatalf("results %+v, want the first %+v alone", again, *first)
	}
	if n := charges.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	if effs := h.effects(payment.Name, ""); len(effs) != 1 {
		t.Fatalf("ledger %+v, want one charge", effs)
	}
	if got := len(h.results("wf-dup")); got != 1 {
		t.Fatalf("%d results in history, want 1", got)
	}
}

func TestRetryWithBackoffThenSuccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, refunds := h.paymentService(participants.Config{})

	h.send(refundCmd(t, "wf-retry", "fail_n:2"), "cmd-wf-retry-1")
	res := h.result("wf-retry")
	if res.Error != nil || res.Attempts != 3 {
		t.Fatalf("result %+v (error %+v), want success after 3 attempts", res, res.Error)
	}
	if out := decode[payment.RefundResult](t, res.Output); !strings.HasPrefix(out.RefundID, "re_") {
		t.Fatalf("output %+v", out)
	}
	if n := refunds.Load(); n != 3 {
		t.Fatalf("handler ran %d times, want 3", n)
	}
	if effs := h.effects(payment.Name, "order-wf-retry"); len(effs) != 1 || effs[0].Kind != "refund" || effs[0].AmountCents != 4200 {
		t.Fatalf("ledger %+v", effs)
	}
}

func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, refunds := h.paymentService(participants.Config{})

	c := refundCmd(t, "wf-exh", "fail_always")
	c.Retry.MaxAttempts = 3
	h.send(c, "cmd-wf-exh-1")
	res := h.result("wf-exh")
	if res.Error == nil || res.Error.Kind != "gateway_error" || !strings.Contains(res.Error.Message, "after 3 attempts") {
		t.Fatalf("result error %+v, want gateway_error after 3 attempts", res.Error)
	}
	if res.Attempts != 3 || len(res.Output) != 0 {
		t.Fatalf("result %+v", res)
	}
	if n := refunds.Load(); n != 3 {
		t.Fatalf("handler ran %d times, want 3", n)
	}
	if effs := h.effects(payment.Name, ""); len(effs) != 0 {
		t.Fatalf("ledger %+v, want empty", effs)
	}
}

func TestNonRetryableFailsAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	charges, _ := h.paymentService(participants.Config{})

	h.send(chargeCmd(t, "wf-decline", "decline"), "cmd-wf-decline-1")
	// A retryable kind the policy lists as non-retryable fails at once too.
	c := chargeCmd(t, "wf-listed", "fail")
	c.Retry.NonRetryable = []string{"gateway_error"}
	h.send(c, "cmd-wf-listed-1")

	res := h.result("wf-decline")
	if res.Error == nil || res.Error.Kind != "declined" || res.Attempts != 1 {
		t.Fatalf("result %+v error %+v, want declined at attempt 1", res, res.Error)
	}
	res = h.result("wf-listed")
	if res.Error == nil || res.Error.Kind != "gateway_error" || res.Attempts != 1 || strings.Contains(res.Error.Message, "after") {
		t.Fatalf("result %+v error %+v, want gateway_error at attempt 1", res, res.Error)
	}
	if n := charges.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
	if effs := h.effects(payment.Name, ""); len(effs) != 0 {
		t.Fatalf("ledger %+v, want empty", effs)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	charges, _ := h.paymentService(participants.Config{})

	c := chargeCmd(t, "wf-timeout", "timeout")
	c.StartToClose = 100 * time.Millisecond
	c.Retry.MaxAttempts = 2
	h.send(c, "cmd-wf-timeout-1")
	res := h.result("wf-timeout")
	if res.Error == nil || res.Error.Kind != "timeout" || res.Attempts != 2 || !strings.Contains(res.Error.Message, "after 2 attempts") {
		t.Fatalf("result %+v error %+v, want timeout after 2 attempts", res, res.Error)
	}
	if n := charges.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
	if effs := h.effects(payment.Name, ""); len(effs) != 0 {
		t.Fatalf("ledger %+v, want empty", effs)
	}
}

func TestCrashAfterEffect(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	charges, _ := h.paymentService(participants.Config{AckWait: time.Second})

	start := time.Now()
	h.send(chargeCmd(t, "wf-crash", "crash_after_effect"), "cmd-wf-crash-1")
	res := h.result("wf-crash")
	if res.Error != nil || res.Attempts != 2 {
		t.Fatalf("result %+v error %+v, want success at attempt 2", res, res.Error)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("answered after %v: the crashed attempt was not left for AckWait", el)
	}
	effs := h.effects(payment.Name, "")
	if len(effs) != 1 || effs[0].Kind != "charge" {
		t.Fatalf("ledger %+v, want exactly one charge", effs)
	}
	if out := decode[payment.ChargeResult](t, res.Output); out.ChargeID != effs[0].Ref {
		t.Fatalf("charge id %q, ledger %q", out.ChargeID, effs[0].Ref)
	}
	if n := charges.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
	if got := len(h.results("wf-crash")); got != 1 {
		t.Fatalf("%d results, want 1", got)
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	charges, _ := h.paymentService(participants.Config{})

	type poison struct {
		msg    *nats.Msg
		seq    uint64
		reason string
	}
	var poisons []*poison
	add := func(id, action string, body []byte, hdr map[string]string, reason string) {
		m := nats.NewMsg(streams.CommandSubject(id, 1, payment.Name, action))
		m.Data = body
		for k, v := range hdr {
			m.Header.Set(k, v)
		}
		poisons = append(poisons, &poison{msg: m, reason: reason})
	}
	cmdHdr := map[string]string{schema.HeaderKind: "command", schema.HeaderSchema: "1"}
	add("wf-garbage", "charge", []byte("\xc1 not msgpack"), cmdHdr, "decode")

	res := schema.Result{WorkflowID: "wf-kind", CommandID: 1}
	body, _, _ := schema.Encode(&res)
	add("wf-kind", "charge", body, map[string]string{schema.HeaderKind: "result", schema.HeaderSchema: "1"}, "kind")

	good := chargeCmd(t, "wf-future", "")
	body, _, _ = schema.Encode(&good)
	add("wf-future", "charge", body, map[string]string{schema.HeaderKind: "command", schema.HeaderSchema: "99"}, "newer schema")

	noReply := chargeCmd(t, "wf-noreply", "")
	noReply.ReplyTo = "somewhere.else"
	body, _, _ = schema.Encode(&noReply)
	add("wf-noreply", "charge", body, cmdHdr, "reply_to")

	unknown := command(t, "wf-unknown", payment.Name, "teleport", map[string]string{"to": "mars"})
	body, _, _ = schema.Encode(&unknown)
	add("wf-unknown", "teleport", body, cmdHdr, "no handler")

	badKey := chargeCmd(t, "wf-badkey", "")
	badKey.IdempotencyKey = "bad key!"
	body, _, _ = schema.Encode(&badKey)
	add("wf-badkey", "charge", body, cmdHdr, "idempotency key")

	// Published under one workflow, naming another: answering it would
	// forge a failure into the workflow the body names.
	victim := chargeCmd(t, "wf-victim", "")
	body, _, _ = schema.Encode(&victim)
	add("wf-misrouted", "charge", body, cmdHdr, "does not belong on subject")

	for i, p := range poisons {
		p.msg.Header.Set(jetstream.MsgIDHeader, "poison-"+strconv.Itoa(i))
		p.seq = h.publish(p.msg)
	}
	// The consumer keeps serving.
	h.send(chargeCmd(t, "wf-after", ""), "cmd-wf-after-1")
	if res := h.result("wf-after"); res.Error != nil {
		t.Fatalf("command after the poison failed: %+v", res.Error)
	}

	var dls []*jetstream.RawStreamMsg
	natstest.Eventually(t, within, func() bool {
		dls = h.deadLetters()
		return len(dls) == len(poisons)
	}, "%d dead letters", len(poisons))
	bySeq := map[string]*jetstream.RawStreamMsg{}
	for _, dl := range dls {
		if dl.Subject != streams.DeadLetterSubject("cmd.payment") {
			t.Errorf("dead letter on %s", dl.Subject)
		}
		bySeq[dl.Header.Get(schema.HeaderSourceSeq)] = dl
	}
	for _, p := range poisons {
		dl := bySeq[strconv.FormatUint(p.seq, 10)]
		if dl == nil {
			t.Errorf("no dead letter for %s (%s)", p.msg.Subject, p.reason)
			continue
		}
		if got := dl.Header.Get(schema.HeaderSourceSubject); got != p.msg.Subject {
			t.Errorf("source subject %q, want %q", got, p.msg.Subject)
		}
		if reason := dl.Header.Get(schema.HeaderReason); !strings.Contains(reason, p.reason) {
			t.Errorf("reason %q, want it to mention %q", reason, p.reason)
		}
		if string(dl.Data) != string(p.msg.Data) {
			t.Errorf("dead letter body differs from the original for %s", p.reason)
		}
	}

	// An unknown action (and a bad key) still answers the workflow.
	for id, kind := range map[string]string{"wf-unknown": "unknown_command", "wf-badkey": "invalid_command"} {
		res := h.result(id)
		if res.Error == nil || res.Error.Kind != kind || res.Attempts != 1 {
			t.Errorf("%s: result %+v error %+v, want %s", id, res, res.Error, kind)
		}
	}
	for _, id := range []string{"wf-garbage", "wf-kind", "wf-future", "wf-noreply", "wf-misrouted", "wf-victim"} {
		if got := h.results(id); len(got) != 0 {
			t.Errorf("%s: unexpected results %+v", id, got)
		}
	}
	if n := charges.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1 (only the good command)", n)
	}
	h.waitAcked(payment.Name, poisons[len(poisons)-1].seq+1)
}

// TestResultInTheHistoryIsTheRecord: a command whose result subject holds
// a result is not run, whatever the idempotency bucket holds, and a
// command that runs writes nothing to the bucket: the history's
// write-once result is its idempotency record.
func TestResultInTheHistoryIsTheRecord(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var calls atomic.Int32
	h.run(participants.Config{}, participants.Service{Name: "rec", Handlers: map[string]participants.Handler{
		"do": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			calls.Add(1)
			return "fresh", nil
		}),
	}})

	// A result stored before the command is delivered (an earlier attempt
	// answered it) stands; the handler does not run.
	done := command(t, "wf-done", "rec", "do", nil)
	recorded := schema.Result{WorkflowID: "wf-done", CommandID: 1, Service: "rec", Action: "do", Attempts: 7}
	recorded.Output, _ = schema.EncodeRaw("recorded")
	m, err := streams.NewMsg(done.ReplyTo, &recorded)
	if err != nil {
		t.Fatal(err)
	}
	if stored, err := streams.PublishFirst(h.ctx, h.env.JS, m); err != nil || !stored {
		t.Fatalf("store the earlier result: stored %v, %v", stored, err)
	}
	seq := h.send(done, "cmd-wf-done")
	h.waitAcked("rec", seq)
	if res := h.results("wf-done"); len(res) != 1 || res[0].Attempts != 7 || decode[string](t, res[0].Output) != "recorded" {
		t.Fatalf("results %+v, want the recorded one alone", res)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times for an answered command, want 0", n)
	}

	// A fresh command runs once and its result is published; the
	// idempotency bucket takes no write.
	fresh := command(t, "wf-fresh", "rec", "do", nil)
	h.send(fresh, "cmd-wf-fresh")
	if res := h.result("wf-fresh"); res.Error != nil || decode[string](t, res.Output) != "fresh" {
		t.Fatalf("result %+v, want the handler's", res)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	s, err := h.env.JS.Stream(h.ctx, "KV_"+streams.IdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 0 {
		t.Fatalf("%d idempotency-bucket writes, want none", info.State.LastSeq)
	}
}

func TestHeartbeatKeepsLongHandlerAlive(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var calls atomic.Int32
	h.run(participants.Config{AckWait: time.Second}, participants.Service{Name: "slow", Handlers: map[string]participants.Handler{
		"work": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			calls.Add(1)
			// The work takes 2.5 AckWaits.
			select {
			case <-time.After(2500 * time.Millisecond):
				return "ok", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}),
	}})
	h.send(command(t, "wf-slow", "slow", "work", nil), "cmd-wf-slow")
	res := h.result("wf-slow")
	if res.Error != nil || res.Attempts != 1 {
		t.Fatalf("result %+v error %+v, want success at attempt 1", res, res.Error)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

func TestRetryAfterAndErrorKinds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var mu sync.Mutex
	var times []time.Time
	h.run(participants.Config{}, participants.Service{Name: "kinds", Handlers: map[string]participants.Handler{
		"later": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
			if cmd.Attempt == 1 {
				return nil, participants.RetryAfter(300*time.Millisecond, participants.Retryable("busy", errors.New("try later")))
			}
			return cmd.Attempt, nil
		}),
		"later-fail": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			return nil, participants.RetryAfter(10*time.Millisecond, participants.Retryable("busy", errors.New("try later")))
		}),
		"plain": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			return nil, errors.New("boom")
		}),
		"panic": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			panic("oops")
		}),
		"final": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			return nil, fmt.Errorf("wrapped: %w", participants.NonRetryable("invalid_card", nil))
		}),
	}})

	later := command(t, "wf-later", "kinds", "later", nil)
	later.Retry.InitialInterval = time.Hour // only RetryAfter can bring attempt 2 in time
	h.send(later, "cmd-wf-later")
	laterFail := command(t, "wf-later-fail", "kinds", "later-fail", nil)
	laterFail.Retry.InitialInterval = time.Hour
	laterFail.Retry.MaxAttempts = 2
	h.send(laterFail, "cmd-wf-later-fail")
	for _, a := range []string{"plain", "panic", "final"} {
		c := command(t, "wf-"+a, "kinds", a, nil)
		c.Retry.MaxAttempts = 1
		h.send(c, "cmd-wf-"+a)
	}

	res := h.result("wf-later")
	if res.Error != nil || res.Attempts != 2 || decode[int](t, res.Output) != 2 {
		t.Fatalf("later: result %+v error %+v", res, res.Error)
	}
	mu.Lock()
	gap := times[1].Sub(times[0])
	mu.Unlock()
	if gap < 250*time.Millisecond || gap > 5*time.Second {
		t.Fatalf("second attempt %v after the first, want about 300ms", gap)
	}
	res = h.result("wf-later-fail")
	if res.Error == nil || res.Error.Kind != "busy" || res.Attempts != 2 {
		t.Fatalf("later-fail: result %+v error %+v, want busy after 2 attempts", res, res.Error)
	}
	for action, kind := range map[string]string{"plain": "error", "panic": "panic", "final": "invalid_card"} {
		res := h.result("wf-" + action)
		if res.Error == nil || res.Error.Kind != kind || res.Attempts != 1 {
			t.Errorf("%s: result %+v error %+v, want kind %s", action, res, res.Error, kind)
		}
	}
	if res := h.result("wf-plain"); !strings.Contains(res.Error.Message, "after 1 attempt: boom") {
		t.Errorf("plain: message %q", res.Error.Message)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	h.run(participants.Config{Concurrency: 2}, participants.Service{Name: "gate", Handlers: map[string]participants.Handler{
		"pass": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			select {
			case <-release:
				return "ok", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}),
	}})
	const n = 5
	for i := range n {
		id := fmt.Sprintf("wf-gate-%d", i)
		h.send(command(t, id, "gate", "pass", nil), "cmd-"+id)
	}
	for i := range n {
		natstest.Eventually(t, within, func() bool { return inFlight.Load() == min(2, int32(n-i)) }, "handlers in flight")
		release <- struct{}{}
	}
	for i := range n {
		if res := h.result(fmt.Sprintf("wf-gate-%d", i)); res.Error != nil || res.Attempts != 1 {
			t.Fatalf("result %d: %+v", i, res)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak concurrency %d, want 2", p)
	}
}

func TestStopHandsCommandOver(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	running := make(chan struct{}, 1)
	stop := h.run(participants.Config{}, participants.Service{Name: "handover", Handlers: map[string]participants.Handler{
		"job": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			running <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}),
	}})
	h.send(command(t, "wf-handover", "handover", "job", nil), "cmd-wf-handover")
	select {
	case <-running:
	case <-time.After(within):
		t.Fatal("handler did not start")
	}
	stop() // fails the test unless Run returns nil
	if got := h.results("wf-handover"); len(got) != 0 {
		t.Fatalf("stopping published %+v", got)
	}

	h.run(participants.Config{}, participants.Service{Name: "handover", Handlers: map[string]participants.Handler{
		"job": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			return "second", nil
		}),
	}})
	res := h.result("wf-handover")
	if res.Error != nil || res.Attempts != 2 || decode[string](t, res.Output) != "second" {
		t.Fatalf("result %+v error %+v, want the second instance's at attempt 2", res, res.Error)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if err := participants.Run(ctx, participants.Config{}, participants.Service{Name: "x"}); err == nil {
		t.Error("Run without a connection succeeded")
	}
	if err := participants.Run(ctx, participants.Config{}, participants.Service{Name: "bad.name"}); err == nil {
		t.Error("Run with an invalid service name succeeded")
	}
}
