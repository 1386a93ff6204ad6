// Package reconcile is the payment reconciliation job: an independent
// backstop that does not trust the engine. It compares what the payment
// gateway did (its ledger, jetflow_ledger_payment) with what the order
// workflows ended in (their histories), and finds:
//
//   - charged_not_refunded: an order charged, neither completed nor
//     refunded, whose workflow ended (failed, compensated, cancelled,
//     terminated) or does not exist (for a charge younger than
//     OrphanWithin); fixable by refunding the charge through the payment
//     participant. An order whose workflow is manual
//     or resolved is reported and left to the person who holds it; a
//     running or blocked one, and a charge younger than the grace period,
//     is in flight and not looked at.
//   - double_charge: an order charged more than once (critical, never
//     fixed automatically).
//   - double_refund: an order refunded more often, or for more, than it
//     was charged (critical, never fixed automatically).
//
// A refund made by hand at the gateway counts: an order whose charge was
// refunded outside the engine is settled, and a hand refund on top of the
// engine's is a double refund.
//
// Scan only reads. The fix is the durable workflow WorkflowType: its steps
// are the scan and one payment.refund command per fixable finding, so a
// crash mid-fix resumes where the history says it stopped, and the
// gateway keys every refund on the charge it refunds ("refund.<charge>"),
// so no run, retry or second run of the job can refund a charge twice.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Classes of finding.
const (
	// ClassNotRefunded is a charge neither kept by a completed order nor
	// refunded.
	ClassNotRefunded = "charged_not_refunded"
	// ClassDoubleCharge is an order charged more than once.
	ClassDoubleCharge = "double_charge"
	// ClassDoubleRefund is an order refunded more often or for more than
	// it was charged.
	ClassDoubleRefund = "double_refund"
)

// Defaults of Options.
const (
	DefaultSince = 24 * time.Hour
	DefaultGrace = 15 * time.Minute
	// DefaultMaxFixes bounds the refunds one run makes; the rest wait for
	// the next run.
	DefaultMaxFixes = 500
	// DefaultOrphanWithin is Options.OrphanWithin by default: well inside
	// the default history retention of a week.
	DefaultOrphanWithin = 72 * time.Hour
)

// Options select what a scan looks at.
type Options struct {
	// Since is how far back the ledger is read: orders with an effect in
	// [now-Since, now] are reconciled, with all their effects. Default 24h.
	Since time.Duration `msgpack:"since" json:"since"`
	// Grace is how old a charge must be before it is judged: a younger
	// one may belong to an order still compensating. Default 15m.
	Grace time.Duration `msgpack:"grace" json:"grace"`
	// MaxFixes is the most fixable findings one run refunds. Default
	// DefaultMaxFixes.
	MaxFixes int `msgpack:"max_fixes,omitempty" json:"max_fixes,omitempty"`
	// OrphanWithin is how old a charge whose order has no workflow may be
	// and still be refunded: an older one may belong to an order whose
	// history was archived and removed, so it is left to a person.
	// Default DefaultOrphanWithin; keep it below the history retention.
	OrphanWithin time.Duration `msgpack:"orphan_within,omitempty" json:"orphan_within,omitempty"`
}

func (o Options) withDefaults() Options {
	if o.Since <= 0 {
		o.Since = DefaultSince
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.MaxFixes <= 0 {
		o.MaxFixes = DefaultMaxFixes
	}
	if o.OrphanWithin <= 0 {
		o.OrphanWithin = DefaultOrphanWithin
	}
	return o
}

// Validate refuses options that make no sense, naming the value.
func (o Options) Validate() error {
	var errs []error
	if o.Since < 0 {
		errs = append(errs, fmt.Errorf("since %s: must not be negative", o.Since))
	}
	if o.Grace < 0 {
		errs = append(errs, fmt.Errorf("grace %s: must not be negative", o.Grace))
	}
	if o.MaxFixes < 0 {
		errs = append(errs, fmt.Errorf("max fixes %d: must not be negative", o.MaxFixes))
	}
	if o.OrphanWithin < 0 {
		errs = append(errs, fmt.Errorf("orphan within %s: must not be negative", o.OrphanWithin))
	}
	return errors.Join(errs...)
}

// Finding is one inconsistency between the ledger and the workflows.
type Finding struct {
	Class    string `msgpack:"class" json:"class"`
	Critical bool   `msgpack:"critical,omitempty" json:"critical,omitempty"`
	OrderID  string `msgpack:"order_id" json:"order_id"`
	// Status is the order workflow's status; "" when there is none.
	Status schema.Status `msgpack:"status,omitempty" json:"status,omitempty"`
	// ChargeID is the charge to refund (charged_not_refunded).
	ChargeID string `msgpack:"charge_id,omitempty" json:"charge_id,omitempty"`
	// AmountCents is the amount to refund (charged_not_refunded).
	AmountCents int64  `msgpack:"amount_cents,omitempty" json:"amount_cents,omitempty"`
	Currency    string `msgpack:"currency,omitempty" json:"currency,omitempty"`
	// ChargedCents and RefundedCents are the order's totals in the ledger.
	ChargedCents  int64 `msgpack:"charged_cents" json:"charged_cents"`
	RefundedCents int64 `msgpack:"refunded_cents" json:"refunded_cents"`
	// Charges and Refunds are the gateway's references of them.
	Charges []string `msgpack:"charges,omitempty" json:"charges,omitempty"`
	Refunds []string `msgpack:"refunds,omitempty" json:"refunds,omitempty"`
	// Fixable says a refund settles it.
	Fixable bool `msgpack:"fixable,omitempty" json:"fixable,omitempty"`
	// Action is what was done or is to be done about it.
	Action string `msgpack:"action" json:"action"`
}

// Report is the outcome of a scan, and of a fix.
type Report struct {
	From time.Time `msgpack:"from" json:"from"`
	To   time.Time `msgpack:"to" json:"to"`
	// Orders is how many orders the ledger shows in the window.
	Orders   int       `msgpack:"orders" json:"orders"`
	Findings []Finding `msgpack:"findings" json:"findings"`
	// Deferred is how many fixable findings were left for the next run
	// (more than MaxFixes).
	Deferred int `msgpack:"deferred,omitempty" json:"deferred,omitempty"`
	// Omitted is how many findings were left out of Findings to keep the
	// report within a message (Truncate); critical ones are kept first.
	Omitted int `msgpack:"omitted,omitempty" json:"omitted,omitempty"`
}

// MaxReported is the most findings a reconciliation workflow's report
// carries: it is recorded in the history as a step result, which must fit
// in one message.
const MaxReported = 1000

// Truncate keeps the first n findings (critical first, then fixable
// ones, as Scan sorts them) and counts the others in Omitted.
func (r *Report) Truncate(n int) {
	if len(r.Findings) > n {
		r.Omitted += len(r.Findings) - n
		r.Findings = r.Findings[:n]
	}
}

// Critical is the number of critical findings.
func (r Report) Critical() int {
	n := 0
	for _, f := range r.Findings {
		if f.Critical {
			n++
		}
	}
	return n
}

// Scan reads the payment ledger and the order workflows and returns what
// does not add up, as of now. It writes nothing. Orders whose ledger entries
// all lie before now-Since are not looked at: the ledger must keep at least
// that window (and the histories too; see docs/ARCHITECTURE.md,
// "Reconciliation").
func Scan(ctx context.Context, js jetstream.JetStream, opts Options, now time.Time) (Report, error) {
	if err := opts.Validate(); err != nil {
		return Report{}, err
	}
	opts = opts.withDefaults()
	from := now.Add(-opts.Since)
	effects, err := sim.List(ctx, js, payment.Name, "")
	if err != nil {
		return Report{}, fmt.Errorf("reconcile: read the payment ledger: %w", err)
	}
	byOrder := map[string][]sim.Effect{}
	inWindow := map[string]bool{}
	for _, e := range effects {
		byOrder[e.OrderID] = append(byOrder[e.OrderID], e)
		if !e.Time.Before(from) && !e.Time.After(now) {
			inWindow[e.OrderID] = true
		}
	}
	rep := Report{From: from.UTC(), To: now.UTC(), Orders: len(inWindow), Findings: []Finding{}}
	var suspects []*order
	for id := range inWindow {
		o := settle(id, byOrder[id])
		switch {
		case len(o.charges) > 1:
			rep.Findings = append(rep.Findings, o.finding(ClassDoubleCharge, true, "none: charged twice; a person decides which charge to refund"))
		case o.refundCount > len(o.charges) || o.refunded > o.charged:
			rep.Findings = append(rep.Findings, o.finding(ClassDoubleRefund, true, "none: refunded more than charged; a person recovers it"))
		case o.open != nil && now.Sub(o.open.Time) >= opts.Grace:
			suspects = append(suspects, o)
		}
	}
	if err := statuses(ctx, js, suspects); err != nil {
		return Report{}, err
	}
	for _, o := range suspects {
		f := o.finding(ClassNotRefunded, false, "")
		f.ChargeID, f.AmountCents, f.Currency = o.open.Ref, o.open.AmountCents, o.open.Currency
		switch o.status {
		case schema.StatusCompleted, schema.StatusRunning, schema.StatusBlocked:
			continue // kept by a fulfilled order, or in flight
		case schema.StatusManual:
			f.Action = "none: the order is in the manual queue; its retry refunds the same charge once"
		case schema.StatusResolved:
			f.Action = "none: an operator resolved the order by hand"
		case "":
			if now.Sub(o.open.Time) > opts.OrphanWithin {
				f.Action = "none: no workflow, and the charge is older than " + opts.OrphanWithin.String() + " (its history may have been archived); a person checks"
				break
			}
			f.Fixable = true
			f.Action = "refund " + f.ChargeID
		default: // ended without completing, or no workflow
			f.Fixable = true
			f.Action = "refund " + f.ChargeID
		}
		if f.Fixable && o.partial {
			f.Fixable = false
			f.Action = "none: refunded in part outside the engine; a person settles the rest"
		}
		rep.Findings = append(rep.Findings, f)
	}
	sort.Slice(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if a.Critical != b.Critical {
			return a.Critical
		}
		if a.Fixable != b.Fixable {
			return a.Fixable
		}
		if a.Class != b.Class {
			return a.Class < b.Class
		}
		return a.OrderID < b.OrderID
	})
	n := 0
	for i := range rep.Findings {
		if f := &rep.Findings[i]; f.Fixable {
			if n++; n > opts.MaxFixes {
				f.Fixable, f.Action = false, "deferred to the next run"
				rep.Deferred++
			}
		}
	}
	return rep, nil
}

// order is what the ledger says of one order.
type order struct {
	id                string
	charges           []sim.Effect // distinct charges, by reference
	refunds           []sim.Effect
	charged, refunded int64
	refundCount       int
	// open is a charge no refund accounts for; nil when none.
	open *sim.Effect
	// partial is set when a refund made outside the engine matches no
	// charge's amount: a partial refund, which a full refund would exceed.
	partial bool
	status  schema.Status
}

// settle folds an order's effects. A settled authorization is a charge
// (its authorization alone moves no money); a void moves none either. A
// refund the payment participant made is keyed on its charge
// ("refund.<charge>"); any other refund (one made by hand at the gateway)
// accounts for a charge of the same amount that no keyed refund did.
func settle(id string, effects []sim.Effect) *order {
	o := &order{id: id}
	byRef := map[string]bool{}
	keyed := map[string]bool{}
	var loose []sim.Effect
	for _, e := range effects {
		switch e.Kind {
		case "charge", "settle":
			if !byRef[e.Ref] {
				byRef[e.Ref] = true
				o.charges = append(o.charges, e)
				o.charged += e.AmountCents
			}
		case "refund":
			o.refunds = append(o.refunds, e)
			o.refunded += e.AmountCents
			o.refundCount++
			if ch, ok := strings.CutPrefix(e.IdempotencyKey, "refund."); ok && isCharge(effects, ch) {
				keyed[ch] = true
			} else {
				loose = append(loose, e)
			}
		}
	}
	for i := range o.charges {
		c := &o.charges[i]
		if keyed[c.Ref] {
			continue
		}
		matched := false
		for j, r := range loose {
			if r.AmountCents == c.AmountCents {
				loose = append(loose[:j], loose[j+1:]...)
				matched = true
				break
			}
		}
		if !matched && o.open == nil {
			o.open = c
		}
	}
	o.partial = len(loose) > 0
	return o
}

// isCharge reports whether ref is a charge among effects.
func isCharge(effects []sim.Effect, ref string) bool {
	for _, e := range effects {
		if (e.Kind == "charge" || e.Kind == "settle") && e.Ref == ref {
			return true
		}
	}
	return false
}

func (o *order) finding(class string, critical bool, action string) Finding {
	f := Finding{Class: class, Critical: critical, OrderID: o.id, Status: o.status,
		ChargedCents: o.charged, RefundedCents: o.refunded, Action: action}
	for _, c := range o.charges {
		f.Charges = append(f.Charges, c.Ref)
		f.Currency = c.Currency
	}
	for _, r := range o.refunds {
		f.Refunds = append(f.Refunds, r.Ref)
	}
	return f
}

// statuses fills in the workflow status of each order, "" for an order
// with no workflow, reading the histories a few at a time.
func statuses(ctx context.Context, js jetstream.JetStream, orders []*order) error {
	h := streams.NewHistory(js.Conn(), js)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 8)
	)
	for _, o := range orders {
		if streams.ValidID(o.id) != nil {
			continue // no workflow can have this ID
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			d, err := orchestrator.Describe(ctx, h, o.id)
			switch {
			case errors.Is(err, streams.ErrNotFound):
			case err != nil:
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("reconcile: status of order %s: %w", o.id, err)
				}
				mu.Unlock()
			default:
				o.status = d.Status
			}
		}()
	}
	wg.Wait()
	return first
}
