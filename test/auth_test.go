package test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/shipping"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestAuthPipeline runs the order mix with every part on its own role:
// the orchestrator, each participant, the payment gateway, the carrier and
// the order publisher connect with their own nkey to a server that enforces
// deploy/nats-server.conf, and every order ends as it should.
func TestAuthPipeline(t *testing.T) {
	s := newAuthStack(t)
	s.participants()
	s.orchestrator()
	orders, want, ids := s.mix("o-", 40)
	st := s.waitSettled(ids, 4*time.Minute)
	counts := map[schema.Status]int{}
	for _, id := range ids {
		counts[st[id]]++
		if st[id] != want[id] {
			t.Errorf("%s: status %s, want %s (simulate %v)", id, st[id], want[id], orders[id].Simulate)
		}
	}
	if counts[schema.StatusCompleted] == 0 || counts[schema.StatusCompensated] == 0 {
		t.Errorf("outcomes %v: want completed and compensated orders", counts)
	}
	s.checkInvariants(orders, st)
	if dl := s.deadLetters(streams.DeadLetterPrefix + ".>"); len(dl) > 0 {
		t.Errorf("dead letters under auth: %v", dl)
	}
}

// attacker is a connection of one role trying what it must not.
type attacker struct {
	s    *stack
	role string
	nc   *nats.Conn
	v    *natstest.Violations
}

func (s *stack) attacker(role string) *attacker {
	nc, _, v := s.env.ConnectAs(s.t, role)
	return &attacker{s: s, role: role, nc: nc, v: v}
}

// forge publishes m as the attacker and asserts that the server refused
// it: a permission violation for its subject, and no message on the
// subject in any stream.
func (a *attacker) forge(m *nats.Msg) {
	t := a.s.t
	t.Helper()
	// A history subject as it is published: with its partition in a
	// partitioned history.
	m.Subject = streams.PublishSubject(m.Subject)
	if err := a.nc.PublishMsg(m); err != nil {
		t.Fatalf("%s: publish %s: %v", a.role, m.Subject, err)
	}
	_ = a.nc.Flush()
	natstest.Eventually(t, 10*time.Second, func() bool { return a.v.Has(m.Subject) },
		"%s: no permission violation for %s (reported: %v)", a.role, m.Subject, a.v.All())
	a.s.assertAbsent(m.Subject)
}

// assertAbsent fails unless no stream holds a message on subject.
func (s *stack) assertAbsent(subject string) {
	s.t.Helper()
	ctx := context.Background()
	name, err := s.env.JS.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return
	}
	if err != nil {
		s.t.Fatalf("stream of %s: %v", subject, err)
	}
	str, err := s.env.JS.Stream(ctx, name)
	if err != nil {
		s.t.Fatal(err)
	}
	if m, err := str.GetLastMsgForSubject(ctx, streams.StoredSubject(subject)); !errors.Is(err, jetstream.ErrMsgNotFound) {
		s.t.Fatalf("%s holds a message on %s (seq %v, err %v)", name, subject, seqOf(m), err)
	}
}

func seqOf(m *jetstream.RawStreamMsg) any {
	if m == nil {
		return nil
	}
	return m.Sequence
}

func encoded(t *testing.T, subject string, v schema.Kinded) *nats.Msg {
	t.Helper()
	m, err := streams.NewMsg(subject, v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func raw(t *testing.T, v any) schema.Raw {
	t.Helper()
	r, err := schema.EncodeRaw(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// chargeOf returns the recorded charge of order id.
func (s *stack) chargeOf(id string) payment.ChargeResult {
	s.t.Helper()
	for _, ev := range s.history(id) {
		if r, ok := ev.Value.(*schema.Result); ok && r.Service == "payment" && r.Action == "charge" {
			var c payment.ChargeResult
			if err := schema.DecodeRaw(r.Output, &c); err != nil {
				s.t.Fatal(err)
			}
			return c
		}
	}
	s.t.Fatalf("%s: no charge in the history", id)
	return payment.ChargeResult{}
}

// TestAuthForgedEventsRefused attempts each forgery of issue 8 with the
// client's credentials (and, where a participant could be the attacker, a
// participant's): the server refuses every one, no stream holds it, and
// the orders end as they would have without it.
func TestAuthForgedEventsRefused(t *testing.T) {
	s := newAuthStack(t)
	s.participants()
	s.orchestrator()
	client := s.attacker(natsauth.Client)
	inventory := s.attacker(natsauth.Participant("inventory"))
	pay := s.attacker(natsauth.Participant("payment"))

	t.Run("refund command on a completed order", func(t *testing.T) {
		o := order("o-refund-", 1, nil)
		s.publishOrder(o)
		s.waitSettled([]string{o.OrderID}, time.Minute)
		c := s.chargeOf(o.OrderID)
		for _, a := range []*attacker{client, inventory, pay} {
			cmd := schema.Command{
				WorkflowID: o.OrderID, ID: 98, Service: "payment", Action: "refund",
				Input:          raw(t, payment.RefundRequest{OrderID: o.OrderID, ChargeID: c.ChargeID, AmountCents: c.AmountCents, Currency: c.Currency}),
				IdempotencyKey: o.OrderID + "-98-" + a.role, ReplyTo: streams.ResultSubject(o.OrderID, 98, "payment", "refund"),
				StartToClose: 5 * time.Second, Retry: schema.RetryPolicy{MaxAttempts: 1},
			}
			a.forge(encoded(t, streams.CommandSubject(o.OrderID, 98, "payment", "refund"), &cmd))
		}
		// The next order goes through the payment participant after the
		// forgeries: had one reached it, its refund would be in the ledger.
		next := order("o-refund-next-", 2, nil)
		s.publishOrder(next)
		s.waitSettled([]string{next.OrderID}, time.Minute)
		if k := kinds(s.ledgers()[o.OrderID]); k["refund"] != 0 || k["charge"] != 1 {
			t.Errorf("%s: ledger %v, want one charge and no refund", o.OrderID, k)
		}
	})

	t.Run("charge result for a charge that never happened", func(t *testing.T) {
		o := order("o-charge-", 3, map[string]string{"payment": "decline"})
		for _, a := range []*attacker{client, inventory} {
			res := schema.Result{
				WorkflowID: o.OrderID, CommandID: 1, Service: "payment", Action: "charge", Attempts: 1,
				Output: raw(t, payment.ChargeResult{ChargeID: "ch-forged", AmountCents: o.AmountCents, Currency: o.Currency, Status: "settled"}),
			}
			a.forge(encoded(t, streams.ResultSubject(o.OrderID, 1, "payment", "charge"), &res))
		}
		s.publishOrder(o)
		if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompensated {
			t.Errorf("%s: %s, want compensated (the gateway declined)", o.OrderID, st[o.OrderID])
		}
		if k := kinds(s.ledgers()[o.OrderID]); k["charge"] != 0 || k["shipment"] != 0 {
			t.Errorf("%s: ledger %v, want no charge and no shipment", o.OrderID, k)
		}
	})

	t.Run("done.compensated on a running order", func(t *testing.T) {
		o := order("o-done-", 4, map[string]string{"pickup": "2s"})
		s.publishOrder(o)
		natstest.Eventually(t, time.Minute, func() bool { return s.waitingForPickup(o.OrderID) }, "%s does not wait for its pickup", o.OrderID)
		for _, a := range []*attacker{client, pay} {
			m := encoded(t, streams.DoneSubject(o.OrderID, string(schema.StatusCompensated)),
				&schema.WorkflowFinished{Status: schema.StatusCompensated, Error: "forged"})
			m.Header.Set(schema.HeaderStatus, string(schema.StatusCompensated))
			a.forge(m)
		}
		if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
			t.Errorf("%s: %s, want completed", o.OrderID, st[o.OrderID])
		}
		if k := kinds(s.ledgers()[o.OrderID]); k["refund"] != 0 || k["charge"] != 1 {
			t.Errorf("%s: ledger %v, want one charge and no refund", o.OrderID, k)
		}
	})

	t.Run("start squatting an order id", func(t *testing.T) {
		o := order("o-squat-", 5, nil)
		squat := o
		squat.AmountCents = 1
		for _, a := range []*attacker{client, inventory} {
			m := encoded(t, streams.StartSubject(o.OrderID), &schema.WorkflowStarted{
				WorkflowID: o.OrderID, Type: fulfillment.WorkflowType, Input: raw(t, squat), Source: "forged",
			})
			a.forge(m)
		}
		s.publishOrder(o)
		if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
			t.Errorf("%s: %s, want completed", o.OrderID, st[o.OrderID])
		}
		if c := s.chargeOf(o.OrderID); c.AmountCents != o.AmountCents {
			t.Errorf("%s: charged %d, want the real order's %d", o.OrderID, c.AmountCents, o.AmountCents)
		}
	})

	t.Run("junk on a future timer fire", func(t *testing.T) {
		o := order("o-fired-", 6, map[string]string{"pickup": "1s"})
		for n := 1; n <= 8; n++ {
			m := nats.NewMsg(streams.FiredSubject(o.OrderID, n))
			m.Data = []byte("\xc1junk")
			client.forge(m)
		}
		s.publishOrder(o)
		if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
			t.Errorf("%s: %s, want completed", o.OrderID, st[o.OrderID])
		}
	})

	t.Run("payment.settled from anyone but the gateway", func(t *testing.T) {
		id := "o-settle-1"
		body := []byte(`{"charge_id":"ch-forged","amount_cents":1,"currency":"EUR"}`)
		subject := streams.SignalSubject(payment.SettledSignal, id)
		for _, role := range []string{natsauth.Client, natsauth.Carrier, natsauth.Operator, natsauth.Participant("payment"), natsauth.Orchestrator} {
			a := s.attacker(role)
			m := nats.NewMsg(subject)
			m.Data = body
			a.forge(m)
			// Nor through a callback scheduled in the gateway's stream.
			sm := nats.NewMsg(streams.CallbackAtSubject(payment.Name, id, payment.SettledSignal))
			sm.Header.Set("Nats-Schedule", "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
			sm.Header.Set("Nats-Schedule-Target", streams.CallbackDueSubject(payment.Name, id, payment.SettledSignal))
			sm.Data = body
			a.forge(sm)
		}
		// The gateway may.
		_, gw, _ := s.env.ConnectAs(t, natsauth.PaymentGateway)
		if _, err := gw.Publish(context.Background(), subject, body); err != nil {
			t.Fatalf("gateway: %v", err)
		}
	})
}

// TestAuthParticipantCannotActAsAnother: a participant publishes results of
// its own service only, and pulls only its own commands.
func TestAuthParticipantCannotActAsAnother(t *testing.T) {
	s := newAuthStack(t)
	pay := s.attacker(natsauth.Participant("payment"))
	res := schema.Result{WorkflowID: "o-x", CommandID: 2, Service: "inventory", Action: "reserve", Attempts: 1}
	pay.forge(encoded(t, streams.ResultSubject("o-x", 2, "inventory", "reserve"), &res))
	pay.forge(nats.NewMsg(streams.DeadLetterSubject("cmd.inventory")))
	pay.forge(nats.NewMsg("$KV." + streams.IdempotencyBucket + ".inventory.o-x-2"))

	// Pulling another participant's commands, or creating its consumer.
	next := "$JS.API.CONSUMER.MSG.NEXT." + streams.HistoryStreams()[0] + "." + streams.ParticipantConsumerPrefix + "inventory"
	pay.forge(nats.NewMsg(next))
	op := s.attacker(natsauth.Operator)
	op.forge(nats.NewMsg(next))
	// The callbacks streams are work queues, where an acknowledgement
	// removes: only the calling party's forwarder consumes them.
	// Nor may any role change such a stream but the orchestrator, which
	// makes it.
	cbs := streams.CallbacksStream(payment.Name)
	for _, role := range []string{natsauth.Operator, natsauth.Carrier, natsauth.Participant("payment"), natsauth.Client, natsauth.Orchestrator, natsauth.Reconcile} {
		a := s.attacker(role)
		a.forge(nats.NewMsg("$JS.API.CONSUMER.CREATE." + cbs + ".peek"))
		a.forge(nats.NewMsg("$JS.API.CONSUMER.CREATE." + cbs + ".peek.callback.payment.at.>"))
		a.forge(nats.NewMsg("$JS.API.CONSUMER.DURABLE.CREATE." + cbs + ".peek"))
		a.forge(nats.NewMsg("$JS.API.CONSUMER.MSG.NEXT." + cbs + ".peek"))
		a.forge(nats.NewMsg("$JS.API.CONSUMER.MSG.NEXT." + cbs + "." + streams.CallbackConsumer))
		a.forge(nats.NewMsg("$JS.FC." + cbs + ".peek.1"))
		a.forge(nats.NewMsg("$JS.ACK." + cbs + ".peek.1.1.1.0.0"))
		a.forge(nats.NewMsg("$JS.ACK." + cbs + "." + streams.CallbackConsumer + ".1.1.1.0.0"))
		if role != natsauth.Orchestrator {
			a.forge(nats.NewMsg("$JS.API.STREAM.UPDATE." + cbs))
			a.forge(nats.NewMsg("$JS.API.STREAM.CREATE." + cbs))
		}
	}
	// The orchestrator makes and updates the streams and buckets of
	// streams.Ensure, and no other: not a participant's ledger, not a
	// stream of the account's own.
	orch := s.attacker(natsauth.Orchestrator)
	for _, name := range []string{"KV_" + streams.LedgerBucketPrefix + payment.Name, "ORDERS_OF_ANOTHER_APP", "KV_another_bucket"} {
		orch.forge(nats.NewMsg("$JS.API.STREAM.UPDATE." + name))
		orch.forge(nats.NewMsg("$JS.API.STREAM.CREATE." + name))
	}
	// The destructive API, to every role but admin.
	for _, role := range []string{natsauth.Orchestrator, natsauth.Operator, natsauth.Client, natsauth.Participant("payment")} {
		a := s.attacker(role)
		a.forge(nats.NewMsg("$JS.API.STREAM.DELETE." + streams.HistoryStreams()[0]))
		purged := streams.HistoryStreams()[0]
		if role == natsauth.Orchestrator {
			// Its archiver purges the history (TestArchiveUnderRolePermissions);
			// no other stream.
			purged = streams.DeadLetterStream
		}
		a.forge(nats.NewMsg("$JS.API.STREAM.PURGE." + purged))
		a.forge(nats.NewMsg("$JS.API.CONSUMER.DELETE." + streams.HistoryStreams()[0] + "." + streams.OrchestratorConsumer))
	}
}

// TestAuthInboxesArePrivate: no role can subscribe to another's replies
// (request answers, publish acks, pull deliveries all come on inboxes).
func TestAuthInboxesArePrivate(t *testing.T) {
	s := newAuthStack(t)
	roles := []string{natsauth.Orchestrator, natsauth.Participant("payment"), natsauth.Client, natsauth.Operator, natsauth.Carrier, natsauth.PaymentGateway}
	for _, role := range roles {
		nc, _, v := s.env.ConnectAs(t, role)
		var targets []string
		for _, other := range roles {
			if other != role {
				targets = append(targets, natsauth.InboxPrefix(other)+".>")
			}
		}
		targets = append(targets, "_INBOX.>", ">")
		for _, subj := range targets {
			if _, err := nc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			_ = nc.Flush()
			natstest.Eventually(t, 10*time.Second, func() bool { return v.Has(subj) },
				"%s subscribed to %s without a violation (reported %v)", role, subj, v.All())
		}
	}
}

// TestConnectErrorHidesPassword: a refused or failed connection never
// prints the password of its URL.
func TestConnectErrorHidesPassword(t *testing.T) {
	env := natstest.RunAuth(t)
	url := env.Server.ClientURL()
	withPass := strings.Replace(url, "nats://", "nats://alice:s3cr3t-pw@", 1)
	closed := "nats://bob:an0ther-pw@127.0.0.1:" + strconv.Itoa(freeClosedPort(t))
	for _, u := range []string{withPass, closed} {
		_, err := streams.Connect(u, "test", nats.MaxReconnects(0), nats.Timeout(2*time.Second))
		if err == nil {
			t.Fatalf("%s: connected", streams.RedactURL(u))
		}
		if strings.Contains(err.Error(), "s3cr3t-pw") || strings.Contains(err.Error(), "an0ther-pw") {
			t.Errorf("error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), "***@") {
			t.Errorf("error %q does not name the (redacted) URL", err)
		}
	}
}

func freeClosedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestAuthScheduledSignalFromTheWrongSchedule: nats-server v2.15.2 does
// not check a scheduled message's target (Nats-Schedule-Target) against
// the scheduler's permissions, so the carrier, allowed to schedule its own
// pickups (callback.shipping.at.<id>.carrier.>), can aim one at the due
// subject of a payment.settled in its callbacks stream (the target must be
// a subject of the same stream). The server sets Nats-Scheduler to the
// schedule's subject; the carrier's forwarder sends a due callback only
// when that is callback.shipping.at.<id>.<name>, so the forged settlement
// is never sent (the carrier may not send it anyway), and the order keeps
// waiting for the gateway's.
func TestAuthScheduledSignalFromTheWrongSchedule(t *testing.T) {
	s := newAuthStack(t)
	s.participants()
	s.orchestrator()
	o := order("o-sched-", 7, map[string]string{"payment": "pending_then_settle:1h"})
	s.publishOrder(o)
	h := streams.NewHistory(s.env.NC, s.env.JS)
	natstest.Eventually(t, time.Minute, func() bool {
		d, err := orchestrator.Describe(context.Background(), h, o.OrderID)
		return err == nil && len(d.Timers) == 1
	}, "%s does not wait for its settlement", o.OrderID)
	c := s.chargeOf(o.OrderID)

	ctx := context.Background()
	_, carrier, _ := s.env.ConnectAs(t, natsauth.Carrier)
	body := []byte(`{"order_id":"` + o.OrderID + `","charge_id":"` + c.ChargeID + `","amount_cents":` + strconv.FormatInt(c.AmountCents, 10) + `,"currency":"EUR"}`)
	m := nats.NewMsg(streams.CallbackAtSubject(shipping.Name, o.OrderID, "carrier.picked_up"))
	m.Header.Set("Nats-Schedule", "@at "+time.Now().Add(300*time.Millisecond).UTC().Format(time.RFC3339Nano))
	m.Header.Set("Nats-Schedule-Target", streams.CallbackDueSubject(shipping.Name, o.OrderID, payment.SettledSignal))
	m.Data = body
	// The limit: the server accepts it.
	if _, err := carrier.PublishMsg(ctx, m); err != nil {
		t.Fatalf("the server refused the carrier's schedule (the limit is gone: tighten the docs): %v", err)
	}
	// The forged callback falls due, and the carrier's forwarder takes it
	// into the dead letters with its reason.
	var reasons []string
	natstest.Eventually(t, time.Minute, func() bool {
		reasons = s.deadLetters(streams.DeadLetterSubject(streams.CallbackOrigin(shipping.Name)))
		return len(reasons) > 0
	}, "the forged callback was not dead-lettered")
	if !strings.Contains(reasons[0], "must come from "+streams.CallbackAtSubject(shipping.Name, o.OrderID, payment.SettledSignal)) {
		t.Errorf("dead letter reason %q", reasons[0])
	}
	sigs, err := s.env.JS.Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	if sm, err := sigs.GetLastMsgForSubject(ctx, streams.SignalSubject(payment.SettledSignal, o.OrderID)); err == nil {
		t.Fatalf("the forged settlement was sent: %s", sm.Data)
	}
	for _, ev := range s.history(o.OrderID) {
		if sig, ok := ev.Value.(*schema.Signal); ok {
			t.Errorf("%s: signal %s recorded from %s", o.OrderID, sig.Name, sig.Source)
		}
	}
	if st := s.statuses()[o.OrderID]; st != schema.StatusRunning {
		t.Errorf("%s: %s, want running (waiting for the gateway)", o.OrderID, st)
	}
}

// TestAuthPushConsumerCannotWriteHistory: consumer creation is the one
// permitted request whose effect is a publish the server makes on the
// creator's behalf (a push consumer's deliver subject is not checked
// against the creator's permissions). The operator creates a push consumer
// delivering orders onto a history subject: the delivery happens, and no
// stream stores it, so consumer creation cannot forge a history event.
func TestAuthPushConsumerCannotWriteHistory(t *testing.T) {
	s := newAuthStack(t)
	_, cjs, _ := s.env.ConnectAs(t, natsauth.Client)
	if _, err := cjs.Publish(context.Background(), streams.OrderCreated, []byte(`{"order_id":"o-push"}`)); err != nil {
		t.Fatal(err)
	}
	// As a history event is published (in a partitioned history, on its
	// partition's subject).
	target := streams.PublishSubject(streams.DoneSubject("o-push", string(schema.StatusCompensated)))
	nc, _, v := s.env.ConnectAs(t, natsauth.Operator)
	sub, err := nc.SubscribeSync(target)
	if err != nil {
		t.Fatal(err)
	}
	req := `{"stream_name":"` + streams.OrdersStream + `","config":{"name":"push","deliver_subject":"` + target + `","ack_policy":"none","deliver_policy":"all"}}`
	if _, err := nc.Request("$JS.API.CONSUMER.CREATE."+streams.OrdersStream+".push", []byte(req), 5*time.Second); err != nil {
		t.Fatalf("create push consumer: %v (%v)", err, v.All())
	}
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no delivery on %s: %v", target, err)
	}
	s.assertAbsent(target)
}
