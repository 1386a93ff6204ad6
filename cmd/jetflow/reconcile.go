package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/reconcile"
	"github.com/jetflow-io/jetflow/orchestrator/schedule"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
)

// exitCritical is the exit status of `jetflow reconcile` when it found
// critical inconsistencies (charged twice, refunded twice).
const exitCritical = 3

// reconcileScheduleName is the name of the daily reconciliation schedule.
const reconcileScheduleName = "reconcile"

// ensureEvery is how often a process that runs schedules starts a chain
// that is missing (the first run of a schedule, or one broken).
const ensureEvery = 10 * time.Minute

// startReconcile runs, beside an orchestrator, the scan step of the
// reconciliation workflow and the schedule that starts it on spec with
// --fix (spec "" runs neither).
func startReconcile(ctx context.Context, wg *sync.WaitGroup, nc *nats.Conn, js jetstream.JetStream, log *slog.Logger, e *engineFlags, spec string, errs chan<- error) error {
	if spec == "" {
		return nil
	}
	parsed, err := schedule.Parse(spec)
	if err != nil {
		return fmt.Errorf("--reconcile-schedule: %w", err)
	}
	sched, err := schedule.New(js, schedule.Schedule{
		Name: reconcileScheduleName, Spec: spec, WorkflowType: reconcile.WorkflowType,
		Input: reconcile.Params{Options: reconcile.Options{Since: scheduledSince(parsed, time.Now())}, Fix: true},
	})
	if err != nil {
		return fmt.Errorf("--reconcile-schedule: %w", err)
	}
	cfg := participants.Config{NC: nc, JS: js, Logger: log.With("component", "reconcile"), AckWait: e.ackWait, Metrics: e.obs.metrics}
	for _, svc := range []participants.Service{reconcile.Service(js), sched.Service()} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- supervise(ctx, log, func(ctx context.Context) error { return participants.Run(ctx, cfg, svc) })
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = sched.Keep(ctx, ensureEvery, func(err error) { log.Warn("schedule: start the next run", "err", err) })
	}()
	log.Info("reconciliation scheduled", "spec", spec, "workflow", reconcile.WorkflowType)
	return nil
}

// scheduledSince is how far back a scheduled reconciliation looks: at least
// DefaultSince, and the longest gap between two runs of spec (over the
// next few) plus twice the grace, so that a charge too young for one run
// is still in the next run's window.
func scheduledSince(spec schedule.Spec, now time.Time) time.Duration {
	since := reconcile.DefaultSince
	t := spec.Next(now)
	for range 8 {
		n := spec.Next(t)
		if n.IsZero() {
			break
		}
		since = max(since, n.Sub(t)+2*reconcile.DefaultGrace)
		t = n
	}
	return since
}

func runReconcile(ctx context.Context, args []string) error {
	var c common
	var p reconcile.Params
	var wait time.Duration
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	c.register(fs, true)
	fs.DurationVar(&p.Since, "since", reconcile.DefaultSince, "reconcile the orders with a payment ledger entry this recent")
	fs.DurationVar(&p.Grace, "grace", reconcile.DefaultGrace, "leave charges younger than this alone (their order may still be compensating)")
	fs.DurationVar(&p.OrphanWithin, "orphan-within", reconcile.DefaultOrphanWithin, "refund a charge whose order has no workflow only while it is this recent (an older one may be of an archived order; keep it below the history retention)")
	fs.BoolVar(&p.Fix, "fix", false, "refund what can be refunded, through a reconciliation workflow (an orchestrator with --reconcile-schedule and the payment participant must run)")
	fs.DurationVar(&wait, "wait", 5*time.Minute, "with --fix, how long to wait for the reconciliation workflow to end")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return errUsage(fs, "want no arguments; got %q", pos)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"since", p.Since}, {"grace", p.Grace}, {"orphan-within", p.OrphanWithin}, {"wait", wait}} {
		if err := positive(d.name, d.v); err != nil {
			return err
		}
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	// The operator's credentials: the scan reads, and --fix starts a
	// workflow and reads its end, as `jetflow start` and `jetflow show` do.
	nc, js, err := connect(ctx, &c, "jetflow reconcile", natsauth.Operator, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	var rep reconcile.Report
	var fin *schema.WorkflowFinished
	id := ""
	if p.Fix {
		if id, err = reconcile.StartFix(ctx, js, p, "cli", time.Now()); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		if rep, fin, err = reconcile.Await(wctx, js, id); err != nil {
			return err
		}
	} else if rep, err = reconcile.Scan(ctx, js, p.Options, time.Now()); err != nil {
		return err
	}
	if asJSON {
		out := struct {
			WorkflowID string `json:"workflow_id,omitempty"`
			Status     string `json:"status,omitempty"`
			Reason     string `json:"reason,omitempty"`
			reconcile.Report
		}{WorkflowID: id, Report: rep}
		if fin != nil {
			out.Status, out.Reason = string(fin.Status), fin.Reason
		}
		if err := printJSON(out); err != nil {
			return err
		}
	} else {
		printReport(rep, id, fin)
	}
	if n := rep.Critical(); n > 0 {
		fmt.Fprintf(os.Stderr, "jetflow reconcile: %s\n", count(n, "critical finding", "critical findings"))
		os.Exit(exitCritical)
	}
	if fin != nil && fin.Status != schema.StatusCompleted {
		return fmt.Errorf("reconciliation %s ended %s: %s", id, fin.Status, fin.Reason)
	}
	return nil
}

// printReport prints a report as a table: class, order, status, amounts,
// what was done.
func printReport(rep reconcile.Report, id string, fin *schema.WorkflowFinished) {
	if id != "" {
		status := "?"
		if fin != nil {
			status = string(fin.Status)
		}
		fmt.Printf("reconciliation %s: %s\n", id, status)
	}
	fmt.Printf("ledger window %s to %s: %s\n", rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), count(rep.Orders, "order", "orders"))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tCLASS\tORDER\tWORKFLOW\tCHARGED\tREFUNDED\tACTION")
	for _, f := range rep.Findings {
		sev, status := "fix", string(f.Status)
		if f.Critical {
			sev = "CRITICAL"
		} else if !f.Fixable {
			sev = "manual"
		}
		if status == "" {
			status = "absent"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sev, f.Class, f.OrderID, status,
			money(f.ChargedCents, f.Currency, len(f.Charges)), money(f.RefundedCents, f.Currency, len(f.Refunds)), f.Action)
	}
	tw.Flush()
	fmt.Printf("(%s, %s", count(len(rep.Findings), "finding", "findings"), count(rep.Critical(), "critical", "critical"))
	if rep.Deferred > 0 {
		fmt.Printf(", %d deferred to the next run", rep.Deferred)
	}
	fmt.Println(")")
}

// money is "129.99 EUR in 2" (an amount and the number of entries).
func money(cents int64, currency string, n int) string {
	s := fmt.Sprintf("%d.%02d %s", cents/100, cents%100, currency)
	if n > 1 {
		s += fmt.Sprintf(" (%d)", n)
	}
	return s
}

func runSchedule(ctx context.Context, args []string) error {
	var c common
	var since time.Duration
	fs := flag.NewFlagSet("schedule", flag.ContinueOnError)
	c.register(fs, true)
	fs.DurationVar(&since, "since", 50*time.Hour, "look at the schedule runs started this recently (two periods of the longest schedule)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return errUsage(fs, "want no arguments; got %q", pos)
	}
	if err := positive("since", since); err != nil {
		return err
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	nc, js, err := connect(ctx, &c, "jetflow schedule", natsauth.Operator, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	list, err := schedule.List(ctx, js, time.Now().Add(-since))
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(list)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSPEC\tWORKFLOW TYPE\tNEXT RUN\tLAST RUN\tLAST WORKFLOW\tSTATUS\tRESULT")
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, s := range list {
		result := s.LastResult
		if len(result) > 80 {
			result = result[:77] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Spec, s.Type, at(s.NextRun), at(s.LastRun), s.LastWorkflow, s.LastStatus, result)
	}
	fmt.Fprintf(tw, "(%s)\n", count(len(list), "schedule", "schedules"))
	return tw.Flush()
}

// devReconcileDefault makes `jetflow dev` reconcile daily at 03:00 UTC
// unless told otherwise.
func devReconcileDefault(fs *flag.FlagSet) {
	f := fs.Lookup("reconcile-schedule")
	f.DefValue = "0 3 * * *"
	_ = f.Value.Set(f.DefValue)
}
