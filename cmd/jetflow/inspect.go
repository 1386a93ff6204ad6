package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runShow(ctx context.Context, args []string) error {
	var c common
	var run int
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	c.register(fs, true)
	fs.IntVar(&run, "run", 0, "the run to show, of a workflow that continued as new (1 the first; default the current run)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage(fs, "want one workflow ID, got %q", pos)
	}
	if run < 0 {
		return errUsage(fs, "--run %d: want a run number from 1", run)
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	nc, js, err := connect(ctx, &c, "jetflow show", natsauth.Operator, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	d, err := orchestrator.DescribeRun(ctx, streams.NewHistory(nc, js), pos[0], run)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(d)
	}
	fmt.Printf("workflow  %s (%s)\nstatus    %s\n", d.ID, d.Type, d.Status)
	printRuns(d)
	if d.Archived {
		fmt.Printf("archived  %s (read-only: its history is in %s)\n", d.ArchivedAt.Format(time.RFC3339Nano), streams.ArchiveStream)
	}
	if d.Reason != "" {
		fmt.Printf("reason    %s\n", d.Reason)
	} else if d.Error != "" {
		fmt.Printf("error     %s\n", d.Error)
	}
	fmt.Printf("started   %s\nupdated   %s (%s later)\n", d.StartedAt.Format(time.RFC3339Nano), d.UpdatedAt.Format(time.RFC3339Nano), d.UpdatedAt.Sub(d.StartedAt).Round(time.Millisecond))
	for _, w := range d.Steps {
		fmt.Printf("waiting   %s\n", waitingLine(w, time.Now()))
	}
	for _, t := range d.Timers {
		fmt.Printf("timer     #%d %s, due %s (in %s), key %s.%s\n", t.ID, t.Duration, t.Due.Format(time.RFC3339), time.Until(t.Due).Round(time.Second), streams.TimersBucket, t.Key)
	}
	if d.Parent != nil {
		if d.Parent.Run > 1 {
			fmt.Printf("parent    %s (its run %d, decision #%d)\n", d.Parent.WorkflowID, d.Parent.Run, d.Parent.Decision)
		} else {
			fmt.Printf("parent    %s (its decision #%d)\n", d.Parent.WorkflowID, d.Parent.Decision)
		}
	}
	for _, k := range d.Children {
		fmt.Printf("child     #%d %s (%s) %s\n", k.Decision, k.WorkflowID, k.Type, k.Status)
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tEVENT\tSTEP\tDETAIL")
	for _, e := range d.History {
		step := e.Step
		if e.CommandID > 0 {
			step = fmt.Sprintf("#%d %s", e.CommandID, e.Step)
		}
		if e.Compensation {
			step += " (compensation)"
		}
		detail := e.Error
		if detail == "" && e.Type == string(schema.KindResult) {
			detail = "ok"
			if e.Attempts > 1 {
				detail = fmt.Sprintf("ok after %d attempts", e.Attempts)
			}
		}
		if e.Type == string(schema.KindWorkflowFinished) || e.Type == string(schema.KindWorkflowBlocked) {
			detail = strings.TrimPrefix(e.Subject, "wf."+historyID(d)+".")
		}
		if e.Operator != "" {
			// An operator's request, or the end one asked for: who and why.
			detail = strings.TrimSpace(detail + " by " + e.Operator)
			if e.Reason != "" {
				detail += ": " + e.Reason
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format("15:04:05.000"), e.Type, step, detail)
	}
	return tw.Flush()
}

// waitingLine is a waiting step for show: what was sent when, and its
// last failed attempt with the next retry.
func waitingLine(w orchestrator.WaitingStep, now time.Time) string {
	line := fmt.Sprintf("#%d %s", w.CommandID, w.Step)
	if w.Compensation {
		line += " (compensation)"
	}
	line += ", sent " + w.SentAt.Local().Format("15:04:05.000")
	if w.FailedAttempts == 0 {
		return line + ", no attempt failed"
	}
	line += fmt.Sprintf("; attempt %d failed at %s: %s: %s", w.FailedAttempts, w.LastFailedAt.Local().Format("15:04:05.000"), w.LastErrorKind, oneLine(w.LastError))
	switch wait := w.NextRetry.Sub(now).Round(time.Second); {
	case wait > 0:
		line += fmt.Sprintf("; attempt %d due %s (in %s)", w.FailedAttempts+1, w.NextRetry.Local().Format("15:04:05"), wait)
	default:
		line += fmt.Sprintf("; attempt %d due since %s", w.FailedAttempts+1, w.NextRetry.Local().Format("15:04:05"))
	}
	return line
}

func runList(ctx context.Context, args []string) error {
	var c common
	var status, wfType, since, until, cursor string
	var limit int
	var archived bool
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	c.register(fs, true)
	fs.BoolVar(&archived, "archived", false, "list archived workflows (finished past --retention), in the order they were archived; --since and --until bound when they were archived")
	fs.StringVar(&status, "status", "", "only workflows in this status: running, blocked, or a final status (completed, compensated, manual, ...)")
	fs.StringVar(&wfType, "type", "", "only workflows of this type")
	fs.StringVar(&since, "since", "", "only workflows started at or after this time (RFC 3339, or a duration ago such as 2h)")
	fs.StringVar(&until, "until", "", "only workflows started at or before this time (RFC 3339, or a duration ago)")
	fs.IntVar(&limit, "limit", orchestrator.DefaultListLimit, fmt.Sprintf("most workflows in a page (1 to %d)", orchestrator.MaxListLimit))
	fs.StringVar(&cursor, "cursor", "", "the next-page cursor a previous list printed")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errUsage(fs, "unexpected arguments %q", pos)
	}
	if status != "" && !schema.Status(status).Valid() {
		return fmt.Errorf("--status %q: want running, completed, compensated, manual, blocked, failed, cancelled, terminated or resolved", status)
	}
	if limit < 1 || limit > orchestrator.MaxListLimit {
		return fmt.Errorf("--limit %d: want 1 to %d", limit, orchestrator.MaxListLimit)
	}
	now := time.Now()
	opts := orchestrator.ListOptions{Status: schema.Status(status), Type: wfType, Limit: limit, Cursor: cursor}
	if opts.Since, err = parseWhen("--since", since, now); err != nil {
		return err
	}
	if opts.Until, err = parseWhen("--until", until, now); err != nil {
		return err
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	nc, js, err := connect(ctx, &c, "jetflow list", natsauth.Operator, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	if archived {
		if status != "" || wfType != "" {
			return errUsage(fs, "--archived lists every archived workflow: --status and --type do not apply")
		}
		return listArchived(ctx, js, opts, asJSON)
	}
	page, err := orchestrator.ListPage(ctx, js, opts)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(page)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTARTED\tUPDATED\tSTATUS\tREASON")
	for _, s := range page.Workflows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Type, s.StartedAt.Local().Format(time.DateTime), s.UpdatedAt.Local().Format(time.DateTime), s.Status, streams.Clip(oneLine(s.Reason), 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch n := len(page.Workflows); {
	case page.Next == "" && n == 1:
		fmt.Println("(1 workflow, last page)")
	case page.Next == "":
		fmt.Printf("(%d workflows, last page)\n", n)
	default:
		fmt.Printf("(%d workflows) next page: --cursor %s\n", n, page.Next)
	}
	return nil
}

// listArchived prints a page of archived workflows.
func listArchived(ctx context.Context, js jetstream.JetStream, opts orchestrator.ListOptions, asJSON bool) error {
	q := orchestrator.ArchivedQuery{Since: opts.Since, Until: opts.Until, Limit: opts.Limit}
	if opts.Cursor != "" {
		n, err := strconv.ParseUint(opts.Cursor, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("--cursor %q: not a cursor of list --archived (a positive number)", opts.Cursor)
		}
		q.Cursor = n
	}
	page, err := orchestrator.ListArchived(ctx, js, q)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(page)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tENDED\tARCHIVED")
	for _, w := range page.Workflows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", w.ID, w.Type, w.Status, w.Ended.Local().Format(time.DateTime), w.ArchivedAt.Local().Format(time.DateTime))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.Next == 0 {
		fmt.Printf("(%d archived, last page)\n", len(page.Workflows))
	} else {
		fmt.Printf("(%d archived) next page: --archived --cursor %d\n", len(page.Workflows), page.Next)
	}
	return nil
}

// parseWhen reads a --since/--until value: RFC 3339, or a duration before
// now ("2h"); "" is no bound.
func parseWhen(flagName, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (90m)", flagName, v)
}

// oneLine folds a multi-line reason into one line for a table cell.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// systems are the simulated external systems with a ledger.
var systems = []string{"payment", "inventory", "shipping", "notification"}

func runLedger(ctx context.Context, args []string) error {
	var c common
	var order string
	fs := flag.NewFlagSet("ledger", flag.ContinueOnError)
	c.register(fs, true)
	fs.StringVar(&order, "order", "", "only effects of this order ID")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !contains(systems, pos[0]) {
		return errUsage(fs, "want one system: %s; got %q", strings.Join(systems, ", "), pos)
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	nc, js, err := connect(ctx, &c, "jetflow ledger", natsauth.Operator, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	effects, err := sim.List(ctx, js, pos[0], order)
	if err != nil {
		return err
	}
	if asJSON {
		if effects == nil {
			effects = []sim.Effect{}
		}
		return printJSON(effects)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tORDER\tKIND\tAMOUNT\tREF\tIDEMPOTENCY KEY")
	for _, e := range effects {
		amount := ""
		if e.AmountCents != 0 || e.Kind == "charge" || e.Kind == "refund" {
			amount = fmt.Sprintf("%d.%02d %s", e.AmountCents/100, e.AmountCents%100, e.Currency)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Format("15:04:05.000"), e.OrderID, e.Kind, amount, e.Ref, e.IdempotencyKey)
	}
	fmt.Fprintf(tw, "(%s)\n", count(len(effects), "effect", "effects"))
	return tw.Flush()
}

// count is "1 effect", "2 effects".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runDecode turns one msgpack body into JSON, for
// `nats stream view JETFLOW_HISTORY --translate 'jetflow decode'`.
func runDecode(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errUsage(fs, "unexpected arguments %q: decode reads one body from stdin", pos)
	}
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	out, err := schema.ToJSON(body)
	if err != nil {
		// Not msgpack: pass it through, so JSON bodies (order.created) still show.
		_, err = os.Stdout.Write(body)
		return err
	}
	_, err = fmt.Println(string(out))
	return err
}

// historyID is the history ID of the run d describes.
func historyID(d *orchestrator.Description) string {
	if d.RunID != "" {
		return d.RunID
	}
	return d.ID
}

// printRuns prints the run shown and every run of a workflow that
// continued as new.
func printRuns(d *orchestrator.Description) {
	if d.Run == 0 {
		return
	}
	fmt.Printf("run       %d of %d (history wf.%s.>)\n", d.Run, len(d.Runs), historyID(d))
	for _, r := range d.Runs {
		mark := " "
		if r.Run == d.Run {
			mark = "*"
		}
		fmt.Printf("runs     %s#%d %s %s (show %s --run %d)\n", mark, r.Run, r.RunID, r.Status, d.ID, r.Run)
	}
}
