// Package test holds jetflow's end-to-end tests: a real embedded
// nats-server, the real orchestrator, the reference workflow and the four
// reference participants with their simulated systems, driven through the
// public entry (order.created) and checked from the ledgers and histories.
package test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// fastSteps and fastCompensation keep retries short so a test run takes
// seconds; the policies are otherwise the production ones.
var (
	fastSteps = workflow.StepOptions{
		StartToClose: 2 * time.Second,
		Retry:        workflow.RetryPolicy{InitialInterval: 10 * time.Millisecond, BackoffCoefficient: 2, MaxInterval: 50 * time.Millisecond, MaxAttempts: 3},
	}
	fastCompensation = workflow.StepOptions{
		StartToClose: 2 * time.Second,
		Retry:        workflow.RetryPolicy{InitialInterval: 10 * time.Millisecond, BackoffCoefficient: 2, MaxInterval: 50 * time.Millisecond, MaxAttempts: 4},
	}
)

func testLogger() *slog.Logger {
	if os.Getenv("JETFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// stack is a test deployment: one server, orchestrators and participants
// that can be started and stopped independently.
type stack struct {
	t   *testing.T
	env *natstest.Env
	// workflows registers the workflow code an orchestrator runs; the
	// reference workflow by default.
	workflows func(*workflow.Registry)
	ackWait   time.Duration
	faults    sim.Faults
	// callbackAttempts bounds the simulated systems' callback sends
	// (reference.CallbackAttempts); zero: the default.
	callbackAttempts int
	clock            orchestrator.Clock
	// maxDeliver of the orchestrators' consumers; zero: the defaults.
	maxDeliver orchestrator.MaxDeliver
	// maxPendingSignals is the orchestrators' cap on waiting signals
	// (default when 0).
	maxPendingSignals int
	parts             []*part
	// auth: the server enforces the role permissions and every part
	// connects with its own role (newAuthStack).
	auth bool
	// metrics, when set, is the registry every part reports to.
	metrics *metrics.Metrics
	// retention of the orchestrators: 0 keeps finished workflows.
	retention time.Duration
	// affinity turns the orchestrators' affinity on (Config.Affinity).
	affinity bool
	// explained counts the workflows logHistory logged.
	explained int
}

func newStack(t *testing.T) *stack { return newStackOn(t, natstest.RunJetStream(t)) }

// newAuthStack is newStack on a server that enforces the role permissions
// of deploy/nats-server.conf: the orchestrator, each participant, the
// payment gateway, the carrier and the order publisher connect with their
// own role's nkey; s.env.NC and s.env.JS are admin, for inspection.
func newAuthStack(t *testing.T) *stack {
	s := newStackOn(t, natstest.RunAuth(t))
	s.auth = true
	return s
}

func newStackOn(t *testing.T, env *natstest.Env) *stack {
	return &stack{
		t: t, env: env,
		workflows: func(r *workflow.Registry) {
			fulfillment.Register(r, fulfillment.Config{Steps: fastSteps, Compensation: fastCompensation})
		},
		ackWait: 2 * time.Second,
	}
}

// connect opens a connection for a part of the system as role: with its
// credentials on an auth stack, a plain one otherwise.
func (s *stack) connect(role string) (*nats.Conn, jetstream.JetStream) {
	if !s.auth {
		return natstest.Connect(s.t, s.env.Server)
	}
	nc, js, _ := s.env.ConnectAs(s.t, role)
	return nc, js
}

// part is a running component; stop cancels it and waits until it returned.
type part struct {
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	reported bool
}

func (p *part) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	select {
	case <-p.done:
		if p.err != nil && !p.reported {
			p.reported = true
			t.Errorf("component returned: %v", p.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("component did not stop within 30s")
	}
}

func (s *stack) run(fn func(ctx context.Context) error) *part {
	ctx, cancel := context.WithCancel(context.Background())
	p := &part{cancel: cancel, done: make(chan struct{})}
	s.parts = append(s.parts, p)
	go func() { p.err = fn(ctx); close(p.done) }()
	s.t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// restart stops every component and the nats-server, then starts the
// server again on the same data directory: a full outage and recovery.
func (s *stack) restart() {
	s.t.Helper()
	for _, p := range s.parts {
		p.stop(s.t)
	}
	s.parts = nil
	dir := s.env.Dir
	s.env.Stop()
	s.env = natstest.RunJetStreamIn(s.t, dir)
}

// orchestrator starts an orchestrator on its own connection: a fresh
// process state against the same streams.
func (s *stack) orchestrator() *part {
	nc, js := s.connect(natsauth.Orchestrator)
	reg := workflow.NewRegistry()
	s.workflows(reg)
	var late []orchestrator.LateSignalRoute
	if _, ok := reg.Lookup(fulfillment.LateSettlementType); ok {
		late = fulfillment.LateSignals()
	}
	o, err := orchestrator.New(orchestrator.Config{
		NC: nc, JS: js, Registry: reg, Intake: fulfillment.Intake(), LateSignals: late,
		SignalRules: fulfillment.SignalRules(), MaxPendingSignals: s.maxPendingSignals,
		Logger: testLogger(), AckWait: s.ackWait, Clock: s.clock, TimerSweep: time.Second,
		MaxDeliver: s.maxDeliver, Metrics: s.metrics, Retention: s.retention, Affinity: s.affinity,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return s.run(o.Run)
}

// participant starts one reference participant on its own connection.
func (s *stack) participant(name string) *part {
	nc, js := s.connect(natsauth.Participant(name))
	var opts []reference.Option
	if role := natsauth.CallbackRole(name); role != "" && s.auth {
		_, cb := s.connect(role)
		opts = append(opts, reference.CallbacksVia(cb))
	}
	if s.callbackAttempts > 0 {
		opts = append(opts, reference.CallbackAttempts(s.callbackAttempts))
	}
	svc, err := reference.Service(context.Background(), js, streams.Topology{}, name, s.faults, opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg := participants.Config{NC: nc, JS: js, Logger: testLogger(), AckWait: s.ackWait, Metrics: s.metrics}
	return s.run(func(ctx context.Context) error { return participants.Run(ctx, cfg, svc) })
}

func (s *stack) participants() []*part {
	var ps []*part
	for _, n := range reference.Names {
		ps = append(ps, s.participant(n))
	}
	return ps
}

// publishOrder publishes an order as JSON on order.created, as `nats pub` does.
func (s *stack) publishOrder(o fulfillment.Order) {
	s.t.Helper()
	body, err := json.Marshal(o)
	if err != nil {
		s.t.Fatal(err)
	}
	if s.auth {
		_, js := s.connect(natsauth.Client)
		if _, err := js.Publish(context.Background(), streams.OrderCreated, body); err != nil {
			s.t.Fatalf("publish order as client: %v", err)
		}
		return
	}
	s.publish(streams.OrderCreated, body, nil)
}

func (s *stack) publish(subject string, body []byte, h nats.Header) {
	s.t.Helper()
	// A history subject goes where a hand publisher sends it: to its
	// partition in a partitioned history.
	m := &nats.Msg{Subject: streams.PublishSubject(subject), Data: body, Header: h}
	if _, err := s.env.JS.PublishMsg(context.Background(), m); err != nil {
		s.t.Fatalf("publish %s: %v", subject, err)
	}
}

// statuses returns the status of every workflow.
func (s *stack) statuses() map[string]schema.Status {
	s.t.Helper()
	list, err := orchestrator.List(context.Background(), s.env.JS, "")
	if err != nil {
		s.t.Fatalf("list: %v", err)
	}
	out := make(map[string]schema.Status, len(list))
	for _, w := range list {
		out[w.ID] = w.Status
	}
	return out
}

// waitSettled polls until every ID has one of the final statuses.
func (s *stack) waitSettled(ids []string, within time.Duration) map[string]schema.Status {
	s.t.Helper()
	var st map[string]schema.Status
	natstest.Eventually(s.t, within, func() bool {
		st = s.statuses()
		for _, id := range ids {
			if !st[id].Terminal() && st[id] != schema.StatusBlocked {
				return false
			}
		}
		return true
	}, "workflows did not settle: %s", func() string { return summarize(st, ids) }())
	return st
}

func summarize(st map[string]schema.Status, ids []string) string {
	counts := map[schema.Status]int{}
	var stuck []string
	for _, id := range ids {
		counts[st[id]]++
		if !st[id].Terminal() && len(stuck) < 5 {
			stuck = append(stuck, id)
		}
	}
	return fmt.Sprintf("%v, e.g. %v", counts, stuck)
}

func (s *stack) describe(id string) *orchestrator.Description {
	s.t.Helper()
	d, err := orchestrator.Describe(context.Background(), streams.NewHistory(s.env.NC, s.env.JS), id)
	if err != nil {
		s.t.Fatalf("describe %s: %v", id, err)
	}
	return d
}

// ledgers reads every simulated system's effects, grouped by order.
func (s *stack) ledgers() map[string][]sim.Effect {
	s.t.Helper()
	out := map[string][]sim.Effect{}
	for _, sys := range reference.Names {
		effects, err := sim.List(context.Background(), s.env.JS, sys, "")
		if err != nil {
			s.t.Fatalf("ledger %s: %v", sys, err)
		}
		for _, e := range effects {
			out[e.OrderID] = append(out[e.OrderID], e)
		}
	}
	return out
}

// paymentBalance returns what the payment gateway kept of order id
// (charged and settled minus refunded) and its ledger's kinds.
func paymentBalance(t *testing.T, js jetstream.JetStream, id string) (int64, map[string]int) {
	t.Helper()
	effects, err := sim.List(context.Background(), js, payment.Name, id)
	if err != nil {
		t.Fatal(err)
	}
	var b int64
	for _, e := range effects {
		switch e.Kind {
		case "charge", "settle":
			b += e.AmountCents
		case "refund":
			b -= e.AmountCents
		}
	}
	return b, kinds(effects)
}

func kinds(effects []sim.Effect) map[string]int {
	out := map[string]int{}
	for _, e := range effects {
		out[e.Kind]++
	}
	return out
}

// deadLetterList returns the dead letters on subject, in stream order.
func (s *stack) deadLetterList(subject string) []jetstream.Msg {
	s.t.Helper()
	ctx := context.Background()
	cons, err := s.env.JS.OrderedConsumer(ctx, streams.DeadLetterStream, jetstream.OrderedConsumerConfig{FilterSubjects: deadLetterFilters(subject)})
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []jetstream.Msg
	for n := info.NumPending; n > 0; n-- {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// deadLetters returns the reasons of the dead letters on subject and below
// it (a signal's is on dlq.signal.<seq>), sorted.
func (s *stack) deadLetters(subject string) []string {
	s.t.Helper()
	var reasons []string
	for _, m := range s.deadLetterList(subject) {
		reasons = append(reasons, m.Headers().Get(schema.HeaderReason))
	}
	sort.Strings(reasons)
	return reasons
}

// checkInvariants verifies, from the ledgers and histories only, what the
// engine promises for a set of settled orders:
//   - each order charged at most once, and charged minus refunded equals the
//     amount exactly when it completed;
//   - nothing left reserved or shipped for an order that did not complete;
//   - no step issued twice in any history, compensations in reverse order.
func (s *stack) checkInvariants(orders map[string]fulfillment.Order, st map[string]schema.Status) {
	s.t.Helper()
	led := s.ledgers()
	for id, o := range orders {
		k := kinds(led[id])
		if k["charge"] > 1 {
			s.t.Errorf("%s: charged %d times", id, k["charge"])
		}
		var balance int64
		for _, e := range led[id] {
			switch e.Kind {
			case "charge":
				balance += e.AmountCents
			case "refund":
				balance -= e.AmountCents
			}
		}
		completed := st[id] == schema.StatusCompleted
		if completed && (balance != o.AmountCents || k["reserve"] != 1 || k["shipment"] != 1) {
			s.t.Errorf("%s completed but ledgers say balance %d of %d, %v", id, balance, o.AmountCents, k)
		}
		if !completed && st[id] != schema.StatusManual {
			if balance != 0 {
				s.t.Errorf("%s %s with money kept: balance %d", id, st[id], balance)
				s.logHistory(id)
			}
			if k["reserve"] != k["release"] || k["shipment"] != k["cancel"] {
				s.t.Errorf("%s %s with something left reserved or shipped: %v", id, st[id], k)
				s.logHistory(id)
			}
		}
		s.checkHistory(id)
	}
}

// maxExplained bounds how many wrongly ended workflows one test logs.
const maxExplained = 5

// logHistory logs the history of workflow id and its effects in the
// simulated systems, for a workflow that ended wrongly: which step failed,
// how, and what the systems did regardless is what tells an engine defect
// from a step that ran out of its StartToClose. The first maxExplained
// calls of a test log; the others do nothing.
func (s *stack) logHistory(id string) {
	s.t.Helper()
	if s.explained >= maxExplained {
		return
	}
	s.explained++
	d := s.describe(id)
	var b strings.Builder
	fmt.Fprintf(&b, "history of %s (%s):\n", id, d.Status)
	for _, e := range d.History {
		fmt.Fprintf(&b, "  #%d %s %s %s", e.Seq, e.Time.Format("15:04:05.000"), e.Type, e.Step)
		if e.Compensation {
			b.WriteString(" (compensation)")
		}
		if e.Attempts > 0 {
			fmt.Fprintf(&b, " after %d attempts", e.Attempts)
		}
		if e.Error != "" {
			fmt.Fprintf(&b, ": %s", e.Error)
		}
		b.WriteString("\n")
	}
	for _, e := range s.ledgers()[id] {
		fmt.Fprintf(&b, "  effect %s %s %d at %s\n", e.System, e.Kind, e.AmountCents, e.Time.Format("15:04:05.000"))
	}
	s.t.Log(b.String())
}

// checkHistory asserts that no command was issued twice and that the
// compensations undo the completed steps in reverse order.
func (s *stack) checkHistory(id string) {
	s.t.Helper()
	d := s.describe(id)
	seen := map[string]int{}
	var forward, comps []string
	for _, e := range d.History {
		if e.Type != string(schema.KindCommand) {
			continue
		}
		key := e.Step
		if e.Compensation {
			key += "(c)"
			comps = append(comps, e.Step)
		} else if e.Step != "notification.notify" {
			forward = append(forward, e.Step)
		}
		seen[key]++
		if seen[key] > 1 {
			s.t.Errorf("%s: %s issued %d times", id, key, seen[key])
		}
	}
	undo := map[string]string{"payment.charge": "payment.refund", "inventory.reserve": "inventory.release", "shipping.create": "shipping.cancel"}
	var want []string
	for i := len(forward) - 1; i >= 0; i-- {
		if d.Status != schema.StatusCompleted && forwardToUndo(d, forward[i]) {
			want = append(want, undo[forward[i]])
		}
	}
	if d.Status != schema.StatusCompleted && strings.Join(comps, ",") != strings.Join(want, ",") {
		s.t.Errorf("%s: compensations %v, want %v (reverse of the completed steps)", id, comps, want)
	}
}

// forwardToUndo reports whether a forward step is compensated when its
// order fails: it succeeded, or it failed or was cancelled with its effect
// unknown (workflow.UnknownOutcome, fulfillment.SettleTimedOutSteps).
func forwardToUndo(d *orchestrator.Description, step string) bool {
	for _, e := range d.History {
		if e.Type == string(schema.KindCommand) && e.Step == step {
			for _, c := range d.History {
				if c.Step == fmt.Sprintf("cancel step #%d", e.CommandID) {
					return true
				}
			}
		}
		if e.Type != string(schema.KindResult) || e.Step != step {
			continue
		}
		kind, _, _ := strings.Cut(e.Error, ": ")
		if _, unknown := workflow.UnknownOutcome(&workflow.StepError{Kind: kind, Key: "k.1"}); e.Error == "" || unknown {
			return true
		}
	}
	return false
}

// mix publishes n orders of the deterministic mix and returns them with
// the status each must reach.
func (s *stack) mix(prefix string, n int) (map[string]fulfillment.Order, map[string]schema.Status, []string) {
	orders := map[string]fulfillment.Order{}
	want := map[string]schema.Status{}
	var ids []string
	for i := 0; i < n; i++ {
		o, w := fulfillment.MixedOrder(prefix, i)
		orders[o.OrderID], want[o.OrderID] = o, w
		ids = append(ids, o.OrderID)
	}
	js := s.env.JS
	if s.auth {
		_, js = s.connect(natsauth.Client)
	}
	var wg sync.WaitGroup
	for _, chunk := range [][]string{ids[:n/2], ids[n/2:]} {
		wg.Add(1)
		go func(chunk []string) {
			defer wg.Done()
			for _, id := range chunk {
				body, _ := json.Marshal(orders[id])
				if _, err := js.Publish(context.Background(), streams.OrderCreated, body); err != nil {
					s.t.Errorf("publish: %v", err)
				}
			}
		}(chunk)
	}
	wg.Wait()
	return orders, want, ids
}

// deadLetterFilters matches the dead letters on subject and below it (a
// signal's are on dlq.signal.<seq>).
func deadLetterFilters(subject string) []string {
	if strings.HasSuffix(subject, ">") {
		return []string{subject}
	}
	return []string{subject, subject + ".>"}
}
