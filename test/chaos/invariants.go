// Package chaos is jetflow's fault-injection suite: it runs nats-server, the
// orchestrator and the participants as separate processes, breaks them
// (kill -9 at named fault points and at random moments, SIGSTOP past the
// ack wait, server and cluster-node kills, poison messages, a full store),
// and then checks what the engine promises from the simulated systems'
// ledgers and the workflow histories alone, never from the engine's own
// counters.
//
// Check is the invariant checker; the tests and the soak (`make chaos`) use
// it, and so can any other test that drives reference orders.
package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Expected is one order a run published and what the checker may assume
// about it.
type Expected struct {
	Order fulfillment.Order
	// Want is the final status the order's simulate settings lead to
	// (fulfillment.MixedOrder says which); "" accepts any final status.
	Want schema.Status
	// Acked is set when JetStream acknowledged the order.created publish:
	// such an order must have a history. An order that was never acked may
	// or may not exist.
	Acked bool
}

// Report is what Check found. Every slice lists one problem per entry,
// prefixed with the workflow ID.
type Report struct {
	// Orders is the number of orders checked.
	Orders int
	// Outcomes counts the orders by the status their history ends in
	// (running for those without an end).
	Outcomes map[schema.Status]int
	// DoubleEffects are effects a simulated system applied more than once
	// for one order (two charges, two reservations, ...).
	DoubleEffects []string
	// Stuck are orders whose history has no end (running or blocked).
	Stuck []string
	// Lost are acknowledged orders without a history.
	Lost []string
	// Outages are orders that ended other than their simulate settings say
	// because a step's retries ran out on an infrastructure error (kind
	// "error" or "timeout": the simulated system or JetStream unreachable
	// for longer than the step's retry policy lasts) — and were then
	// compensated correctly. That is the saga doing its job, not a broken
	// promise, but a run should show how often it happens.
	Outages []string
	// Violations are every other broken promise: money kept or missing,
	// something left reserved or shipped, a gap or a repeat in a history's
	// decision numbering, a replay that decides differently, an outcome the
	// order's simulate settings do not lead to, a manual end without a
	// reason.
	Violations []string
}

// OK reports whether no promise was broken.
func (r *Report) OK() bool {
	return len(r.DoubleEffects) == 0 && len(r.Stuck) == 0 && len(r.Lost) == 0 && len(r.Violations) == 0
}

// Problems lists every problem, at most max (0: all).
func (r *Report) Problems(max int) []string {
	var out []string
	add := func(kind string, items []string) {
		for _, s := range items {
			out = append(out, kind+": "+s)
		}
	}
	add("double effect", r.DoubleEffects)
	add("stuck", r.Stuck)
	add("lost", r.Lost)
	add("violation", r.Violations)
	if max > 0 && len(out) > max {
		out = append(out[:max], fmt.Sprintf("... and %d more", len(out)-max))
	}
	return out
}

// String is a one-line summary.
func (r *Report) String() string {
	return fmt.Sprintf("orders %d, outcomes %v, double effects %d, stuck %d, lost %d, other violations %d, outcomes changed by an outage %d",
		r.Orders, r.Outcomes, len(r.DoubleEffects), len(r.Stuck), len(r.Lost), len(r.Violations), len(r.Outages))
}

// effectKinds are the ledger kinds the reference participants write; each
// may happen at most once per order in the reference workflow.
var effectKinds = []string{"charge", "authorize", "settle", "void", "refund", "reserve", "release", "shipment", "cancel", "notify"}

// Check verifies, for every order, from the ledgers of the simulated
// systems and the workflow histories only:
//
//   - no effect happened twice: each order charged at most once, reserved,
//     shipped, refunded, released, cancelled, notified at most once;
//   - money: charged (charge + settle) minus refunded equals the order's
//     amount if the order completed and is zero if it was compensated; an
//     order in manual must say why (and a failed refund must be named);
//   - nothing reserved or shipped remains for a compensated order, and a
//     completed one holds exactly one reservation and one shipment;
//   - every acknowledged order has a history (not lost), and every history
//     ends in completed, compensated or manual (not stuck);
//   - the status matches what the order's simulate settings lead to;
//   - no gap in any history: the decisions (commands, markers, timer starts
//     and cancels) are numbered 1..n with no hole and no repeat, each result
//     answers a recorded command with the same step, at most one end event
//     and no decision after it;
//   - replaying the history without its end event through the workflow code
//     (fulfillment.Register) decides the same end, with nothing new to send.
func Check(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, orders []Expected) (*Report, error) {
	rep := &Report{Orders: len(orders), Outcomes: map[schema.Status]int{}}
	ledger := map[string][]sim.Effect{}
	for _, sys := range reference.Names {
		effects, err := sim.List(ctx, js, sys, "")
		if err != nil {
			return nil, fmt.Errorf("ledger %s: %w", sys, err)
		}
		for _, e := range effects {
			ledger[e.OrderID] = append(ledger[e.OrderID], e)
		}
	}
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	hist := streams.NewHistory(nc, js)

	type result struct {
		status     schema.Status
		reason     string
		failure    *schema.Result // the first forward step that failed for good
		lost       bool
		violations []string
		err        error
	}
	results := make([]result, len(orders))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range orders {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			evs, err := hist.Read(ctx, orders[i].Order.OrderID, 0)
			if err != nil {
				results[i].err = err
				return
			}
			st, reason, lost, v := checkHistory(reg, orders[i].Order.OrderID, evs)
			results[i] = result{status: st, reason: reason, failure: firstFailure(evs), lost: lost, violations: v}
		}(i)
	}
	wg.Wait()

	for i, exp := range orders {
		id := exp.Order.OrderID
		res := results[i]
		if res.err != nil {
			return nil, fmt.Errorf("read history of %s: %w", id, res.err)
		}
		if res.lost {
			if exp.Acked {
				rep.Lost = append(rep.Lost, id+": order.created acknowledged, no workflow started")
			}
			continue
		}
		rep.Outcomes[res.status]++
		rep.Violations = append(rep.Violations, res.violations...)
		if !res.status.Terminal() {
			rep.Stuck = append(rep.Stuck, fmt.Sprintf("%s: %s", id, res.status))
			continue
		}
		if exp.Want != "" && res.status != exp.Want {
			msg := fmt.Sprintf("%s: ended %s, its simulate settings %v lead to %s", id, res.status, exp.Order.Simulate, exp.Want)
			if f := res.failure; f != nil && f.Error != nil && (f.Error.Kind == "error" || f.Error.Kind == "timeout") {
				rep.Outages = append(rep.Outages, fmt.Sprintf("%s: %s.%s failed for good: %s: %s", msg, f.Service, f.Action, f.Error.Kind, f.Error.Message))
			} else {
				rep.Violations = append(rep.Violations, msg)
			}
		}
		if res.status == schema.StatusManual && exp.Order.Simulate["refund"] == "fail_always" && !strings.Contains(res.reason, "payment.refund") {
			rep.Violations = append(rep.Violations, fmt.Sprintf("%s: manual, but the reason %q does not name the refund that failed", id, res.reason))
		}
		dbl, v := checkLedger(exp.Order, res.status, ledger[id])
		rep.DoubleEffects = append(rep.DoubleEffects, dbl...)
		rep.Violations = append(rep.Violations, v...)
	}
	sort.Strings(rep.DoubleEffects)
	sort.Strings(rep.Stuck)
	sort.Strings(rep.Lost)
	sort.Strings(rep.Violations)
	sort.Strings(rep.Outages)
	return rep, nil
}

// firstFailure returns the first failed result of a forward step (not a
// compensation) in a history, or nil.
func firstFailure(evs []streams.Event) *schema.Result {
	comp := map[int]bool{}
	for _, ev := range evs {
		switch v := ev.Value.(type) {
		case *schema.Command:
			comp[v.ID] = v.Compensation
		case *schema.Result:
			if v.Error != nil && !comp[v.CommandID] {
				return v
			}
		}
	}
	return nil
}

// checkLedger checks one finished order's effects.
func checkLedger(o fulfillment.Order, status schema.Status, effects []sim.Effect) (doubles, violations []string) {
	id := o.OrderID
	k := map[string]int{}
	var balance int64
	for _, e := range effects {
		k[e.Kind]++
		switch e.Kind {
		case "charge", "settle":
			balance += e.AmountCents
		case "refund":
			balance -= e.AmountCents
		}
	}
	for _, kind := range effectKinds {
		if k[kind] > 1 {
			doubles = append(doubles, fmt.Sprintf("%s: %s applied %d times", id, kind, k[kind]))
		}
	}
	bad := func(format string, args ...any) {
		violations = append(violations, fmt.Sprintf("%s: %s: ", id, status)+fmt.Sprintf(format, args...))
	}
	switch status {
	case schema.StatusCompleted:
		if balance != o.AmountCents {
			bad("charged minus refunded is %d, the order is %d", balance, o.AmountCents)
		}
		if k["reserve"] != 1 || k["shipment"] != 1 || k["release"] != 0 || k["cancel"] != 0 {
			bad("ledgers %v, want one reservation and one shipment, nothing undone", k)
		}
	case schema.StatusCompensated, schema.StatusCancelled:
		if balance > 0 {
			bad("money kept: charged minus refunded is %d", balance)
		} else if balance < 0 {
			bad("refunded more than charged: charged minus refunded is %d", balance)
		}
		if k["reserve"] != k["release"] || k["shipment"] != k["cancel"] {
			bad("something left reserved or shipped: %v", k)
		}
	case schema.StatusManual:
		// A person must look: the money may be kept because the refund
		// failed. The reason is checked with the history.
		if balance != 0 && balance == o.AmountCents && o.Simulate["refund"] == "" {
			bad("money kept although no refund was made to fail: %v", k)
		}
	}
	return doubles, violations
}

// checkHistory checks one workflow's history and returns its status and
// the reason of its end, or lost when it has no start event.
func checkHistory(reg *workflow.Registry, id string, evs []streams.Event) (schema.Status, string, bool, []string) {
	var v []string
	bad := func(format string, args ...any) { v = append(v, id+": "+fmt.Sprintf(format, args...)) }
	var (
		start    *schema.WorkflowStarted
		finished *schema.WorkflowFinished
		doneSeq  uint64
		dones    int
		blocked  bool
		ids      = map[int]string{} // decision number → what
		commands = map[int]*schema.Command{}
		replay   []workflow.Event
	)
	for _, ev := range evs {
		if ev.DecodeErr != nil {
			bad("undecodable event #%d on %s: %v", ev.Seq, ev.Subject, ev.DecodeErr)
			continue
		}
		decision := func(n int, what string) {
			if prev, dup := ids[n]; dup {
				bad("decision %d recorded twice: %s and %s (#%d)", n, prev, what, ev.Seq)
			}
			ids[n] = what
			if dones > 0 {
				bad("%s (#%d) decided after the end", what, ev.Seq)
			}
		}
		switch x := ev.Value.(type) {
		case *schema.WorkflowStarted:
			if start != nil {
				bad("second start event #%d", ev.Seq)
			}
			start = x
		case *schema.Command:
			decision(x.ID, fmt.Sprintf("command %s.%s", x.Service, x.Action))
			commands[x.ID] = x
		case *schema.Marker:
			decision(x.ID, "marker "+x.Name)
		case *schema.TimerStarted:
			decision(x.ID, "timer start")
		case *schema.TimerCancelled:
			decision(x.ID, fmt.Sprintf("cancel of timer %d", x.TimerID))
		case *schema.StepCancelled:
			decision(x.ID, fmt.Sprintf("cancel of step %d", x.CommandID))
		case *schema.Result:
			c := commands[x.CommandID]
			if c == nil {
				bad("result #%d answers command %d, which is not recorded before it", ev.Seq, x.CommandID)
			} else if c.Service != x.Service || c.Action != x.Action {
				bad("result #%d for command %d is %s.%s, the command is %s.%s", ev.Seq, x.CommandID, x.Service, x.Action, c.Service, c.Action)
			}
		case *schema.WorkflowFinished:
			dones++
			if dones > 1 {
				bad("second end event #%d (%s after %s)", ev.Seq, x.Status, finished.Status)
				continue
			}
			finished, doneSeq = x, ev.Seq
			continue // replayed without its end
		case *schema.WorkflowBlocked:
			blocked = true
		}
		replay = append(replay, workflow.Event{Seq: ev.Seq, Time: ev.Time, Value: ev.Value})
	}
	if start == nil {
		return "", "", true, v
	}
	for n := 1; n <= len(ids); n++ {
		if _, ok := ids[n]; !ok {
			bad("gap in the decision numbering: %d decisions, number %d missing", len(ids), n)
			break
		}
	}
	status := schema.StatusRunning
	if blocked {
		status = schema.StatusBlocked
	}
	if finished == nil {
		return status, "", false, v
	}
	status = finished.Status
	if status == schema.StatusManual && strings.TrimSpace(finished.Reason) == "" {
		bad("manual without a reason")
	}
	fn, ok := reg.Lookup(start.Type)
	if !ok {
		bad("workflow type %q is not the reference workflow: not replayed", start.Type)
		return status, finished.Reason, false, v
	}
	out := workflow.Replay(fn, id, replay, nil)
	switch {
	case out.Blocked != nil:
		bad("replay of the history blocks: %s", out.Blocked.Reason)
	case out.Finished == nil:
		bad("replay does not finish; it would send %d new decisions", len(out.Decisions))
	case out.Finished.Status != status || len(out.Decisions) != 0:
		bad("replay decides %s with %d new decisions; the history ends %s (#%d)", out.Finished.Status, len(out.Decisions), status, doneSeq)
	case out.Finished.Reason != finished.Reason:
		bad("replay gives the reason %q; the history says %q", out.Finished.Reason, finished.Reason)
	}
	return status, finished.Reason, false, v
}
