package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/schema"
)

// verbCommands are the operator verbs' entries of the commands table.
func verbCommands() []command {
	return []command{
		{"start", "TYPE ID [JSON]", "start a workflow (idempotent: an ID starts once)", runStart},
		{"cancel", "ID | --status S [--type T]", "cancel workflows: their code compensates and they end cancelled", verbRunner(schema.VerbCancel, orchestrator.Cancel)},
		{"terminate", "ID | --status S [--type T]", "end workflows now: no further command, nothing compensated", verbRunner(schema.VerbTerminate, orchestrator.Terminate)},
		{"retry", "ID | --status manual [--type T]", "re-send a manual workflow's failed compensations, with fresh attempts", verbRunner(schema.VerbRetry, orchestrator.Retry)},
		{"resolve", "ID | --status S [--type T] --reason R", "record that a person settled a manual (or blocked) workflow", verbRunner(schema.VerbResolve, orchestrator.Resolve)},
		{"resume", "ID | --status blocked [--type T]", "make a blocked workflow decide now with the current code", verbRunner(schema.VerbResume, orchestrator.Resume)},
	}
}

// verbFlags are the flags the verbs share.
type verbFlags struct {
	common
	reason, identity string
}

func (v *verbFlags) register(fs *flag.FlagSet) {
	v.common.register(fs, true)
	fs.StringVar(&v.reason, "reason", "", "why, recorded in the history with the verb")
	fs.StringVar(&v.identity, "identity", defaultIdentity(), "who acts, recorded in the history with the verb")
}

func (v *verbFlags) request() orchestrator.Request {
	return orchestrator.Request{Reason: v.reason, Identity: v.identity}
}

// defaultIdentity is $USER@hostname.
func defaultIdentity() string {
	name := os.Getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	host, _ := os.Hostname()
	switch {
	case name == "":
		return host
	case host == "":
		return name
	}
	return name + "@" + host
}

func runStart(ctx context.Context, args []string) error {
	var v verbFlags
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	v.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || len(pos) > 3 {
		return errors.New("usage: jetflow start TYPE WORKFLOW_ID [JSON] [--reason R] [--identity I] [--output json]")
	}
	wfType, id := pos[0], pos[1]
	asJSON, err := v.json()
	if err != nil {
		return err
	}
	var body []byte
	if len(pos) == 3 {
		body = []byte(pos[2])
	}
	input, err := orchestrator.JSONInput(body)
	if err != nil {
		return err
	}
	if wfType == fulfillment.WorkflowType {
		// An order started by hand passes the intake's checks.
		o, err := fulfillment.ParseOrder(body, nil)
		if err != nil {
			return err
		}
		if o.OrderID != id {
			return fmt.Errorf("order_id %q differs from the workflow ID %q", o.OrderID, id)
		}
	}
	nc, js, err := connect(ctx, &v.common, "jetflow start", natsauth.Operator, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	started, err := orchestrator.StartAs(ctx, js, wfType, id, input, v.request())
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(map[string]any{"workflow_id": id, "type": wfType, "started": started})
	}
	if started {
		fmt.Printf("started %s (%s)\n", id, wfType)
	} else {
		fmt.Printf("%s was started before: nothing done (a workflow ID starts once)\n", id)
	}
	return nil
}

// verbFunc is the signature of the orchestrator's verbs.
type verbFunc func(context.Context, jetstream.JetStream, string, orchestrator.Request) (uint64, error)

// verbOutcome is one workflow's line of a verb's output.
type verbOutcome struct {
	Verb       string `json:"verb"`
	WorkflowID string `json:"workflow_id"`
	// Seq is the history sequence of the recorded request.
	Seq   uint64 `json:"seq,omitempty"`
	Error string `json:"error,omitempty"`
}

// verbRunner returns the command of verb: on one workflow, or on every
// workflow --status and --type select.
func verbRunner(verb string, do verbFunc) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		var v verbFlags
		var status, wfType string
		var yes bool
		fs := flag.NewFlagSet(verb, flag.ContinueOnError)
		v.register(fs)
		fs.StringVar(&status, "status", "", "act on every workflow in this status (batch form)")
		fs.StringVar(&wfType, "type", "", "act on every workflow of this type (batch form)")
		fs.BoolVar(&yes, "yes", false, "batch form: act without asking")
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		batch := status != "" || wfType != ""
		usage := fmt.Sprintf("usage: jetflow %s WORKFLOW_ID [--reason R] | jetflow %s --status S [--type T] [--yes]", verb, verb)
		switch {
		case batch && len(pos) > 0:
			return fmt.Errorf("%s: give a WORKFLOW_ID or --status/--type, not both\n%s", verb, usage)
		case !batch && len(pos) != 1:
			return errors.New(usage)
		case verb == schema.VerbResolve && v.reason == "":
			return errors.New("resolve: --reason is required: say how it was settled")
		case status != "" && !schema.Status(status).Valid():
			return fmt.Errorf("--status %q: want running, completed, compensated, manual, blocked, cancelled, terminated or resolved", status)
		}
		asJSON, err := v.json()
		if err != nil {
			return err
		}
		nc, js, err := connect(ctx, &v.common, "jetflow "+verb, natsauth.Operator, false)
		if err != nil {
			return err
		}
		defer nc.Close()
		if !batch {
			seq, err := do(ctx, js, pos[0], v.request())
			if err != nil {
				return err
			}
			out := verbOutcome{Verb: verb, WorkflowID: pos[0], Seq: seq}
			if asJSON {
				return printJSON(out)
			}
			fmt.Println(out.line())
			return nil
		}
		ids, err := selectWorkflows(ctx, js, schema.Status(status), wfType)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			if asJSON {
				return printJSON([]verbOutcome{})
			}
			fmt.Printf("%s: no workflow matches --status %q --type %q\n", verb, status, wfType)
			return nil
		}
		if !yes {
			if err := confirm(os.Stdin, os.Stderr, verb, ids); err != nil {
				return err
			}
		}
		outs := make([]verbOutcome, 0, len(ids))
		failed := 0
		for _, id := range ids {
			out := verbOutcome{Verb: verb, WorkflowID: id}
			if out.Seq, err = do(ctx, js, id, v.request()); err != nil {
				out.Error = err.Error()
				failed++
			}
			outs = append(outs, out)
			if !asJSON {
				fmt.Println(out.line())
			}
		}
		if asJSON {
			if err := printJSON(outs); err != nil {
				return err
			}
		} else {
			fmt.Printf("%s: %d recorded, %d refused or failed, of %d workflows\n", verb, len(ids)-failed, failed, len(ids))
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d workflows not %s", failed, len(ids), pastTense(verb))
		}
		return nil
	}
}

func (o verbOutcome) line() string {
	if o.Error != "" {
		return fmt.Sprintf("%s %s: refused: %s", o.Verb, o.WorkflowID, o.Error)
	}
	return fmt.Sprintf("%s %s: recorded at history seq %d", o.Verb, o.WorkflowID, o.Seq)
}

func pastTense(verb string) string {
	if strings.HasSuffix(verb, "e") {
		return verb + "d"
	}
	if verb == schema.VerbRetry {
		return "retried"
	}
	if verb == schema.VerbCancel {
		return "cancelled"
	}
	return verb + "ed"
}

// selectWorkflows lists the IDs of the workflows in status (all when "")
// of type wfType (all when ""), in List's order.
func selectWorkflows(ctx context.Context, js jetstream.JetStream, status schema.Status, wfType string) ([]string, error) {
	list, err := orchestrator.List(ctx, js, status)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range list {
		if wfType != "" {
			t := s.Type
			if t == "" {
				if t, err = orchestrator.WorkflowType(ctx, js, s.ID); err != nil {
					return nil, err
				}
			}
			if t != wfType {
				continue
			}
		}
		ids = append(ids, s.ID)
	}
	return ids, nil
}

// confirm lists the workflows a batch will touch and asks on a terminal;
// it refuses when stdin is not one (use --yes).
func confirm(in *os.File, out io.Writer, verb string, ids []string) error {
	fmt.Fprintf(out, "%s will act on %d workflows:\n", verb, len(ids))
	for i, id := range ids {
		if i == 20 && len(ids) > 21 {
			fmt.Fprintf(out, "  ... and %d more\n", len(ids)-i)
			break
		}
		fmt.Fprintf(out, "  %s\n", id)
	}
	// A terminal, not merely a character device (/dev/null is one).
	if !isatty.IsTerminal(in.Fd()) {
		return fmt.Errorf("%s of %d workflows: stdin is not a terminal to confirm on; add --yes", verb, len(ids))
	}
	fmt.Fprintf(out, "%s these %d workflows? [y/N] ", verb, len(ids))
	answer, _ := bufio.NewReader(in).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return fmt.Errorf("%s: not confirmed, nothing done", verb)
	}
	return nil
}
