package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

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
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	c.register(fs, true)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage(fs, "want one workflow ID, got %q", pos)
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
	d, err := orchestrator.Describe(ctx, streams.NewHistory(nc, js), pos[0])
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(d)
	}
	fmt.Printf("workflow  %s (%s)\nstatus    %s\n", d.ID, d.Type, d.Status)
	if d.Reason != "" {
		fmt.Printf("reason    %s\n", d.Reason)
	} else if d.Error != "" {
		fmt.Printf("error     %s\n", d.Error)
	}
	fmt.Printf("started   %s\nupdated   %s (%s later)\n", d.StartedAt.Format(time.RFC3339Nano), d.UpdatedAt.Format(time.RFC3339Nano), d.UpdatedAt.Sub(d.StartedAt).Round(time.Millisecond))
	for _, w := range d.Waiting {
		fmt.Printf("waiting   %s\n", w)
	}
	for _, t := range d.Timers {
		fmt.Printf("timer     #%d %s, due %s (in %s), key %s.%s\n", t.ID, t.Duration, t.Due.Format(time.RFC3339), time.Until(t.Due).Round(time.Second), streams.TimersBucket, t.Key)
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
		}
		if e.Type == string(schema.KindWorkflowFinished) || e.Type == string(schema.KindWorkflowBlocked) {
			detail = strings.TrimPrefix(e.Subject, "wf."+d.ID+".")
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

func runList(ctx context.Context, args []string) error {
	var c common
	var status string
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	c.register(fs, true)
	fs.StringVar(&status, "status", "", "only workflows in this status: running, completed, compensated, manual, blocked, failed, cancelled, terminated, resolved")
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
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	nc, js, err := connect(ctx, &c, "jetflow list", natsauth.Operator, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	list, err := orchestrator.List(ctx, js, schema.Status(status))
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(list)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\n", s.ID, s.Status)
	}
	fmt.Fprintf(tw, "(%s)\n", count(len(list), "workflow", "workflows"))
	return tw.Flush()
}

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
