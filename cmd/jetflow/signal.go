package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/streams"
)

// runSignal publishes signal NAME to a workflow, as
// `nats pub signal.<name>.<id> '<json>'` would, and waits for its verdict:
// recorded in the history (with the event's sequence) or refused (with the
// dead letter's reason, and a non-zero exit). --no-wait only sends it.
func runSignal(ctx context.Context, args []string) error {
	var c common
	fs := flag.NewFlagSet("signal", flag.ContinueOnError)
	c.register(fs, true)
	noWait := fs.Bool("no-wait", false, "send the signal and return without waiting for its verdict")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the verdict")
	startType := fs.String("start", "", "signal-with-start: start the workflow with this `TYPE` first if it does not exist; the signal is in its start")
	startInput := fs.String("input", "", "with --start: the workflow's input, as `JSON`")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || len(pos) > 3 {
		return errUsage(fs, "want a workflow ID, a signal name and an optional JSON payload, got %q", pos)
	}
	if *timeout <= 0 {
		return fmt.Errorf("--timeout %v: must be positive", *timeout)
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	id, name := pos[0], pos[1]
	if err := streams.ValidID(id); err != nil {
		return err
	}
	var body []byte
	if len(pos) == 3 {
		if !json.Valid([]byte(pos[2])) {
			return fmt.Errorf("payload is not valid JSON: %s", pos[2])
		}
		body = []byte(pos[2])
	}
	if *startType == "" && *startInput != "" {
		return errUsage(fs, "--input %s: only with --start TYPE", *startInput)
	}
	// Under auth a signal is sent with its owner's credentials (the
	// carrier's, the payment gateway's); a signal-with-start publishes a
	// start, which the operator alone may: it connects as the operator.
	role := natsauth.SignalOwner(name)
	if *startType != "" {
		role = natsauth.Operator
	}
	nc, js, err := connect(ctx, &c, "jetflow signal", role, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	if role != natsauth.Operator {
		// The verdict is read in the workflow's history stream, found
		// from the stream names. A configuration written before
		// partitioned histories does not let the carrier or the gateway
		// list them: such a deployment has the single stream, the
		// default, and the signal is sent all the same.
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := streams.DiscoverByNames(dctx, js); err != nil {
			fmt.Fprintf(os.Stderr, "jetflow signal: the history layout is unknown (%v); its verdict is looked for in %s\n", err, streams.HistoryStream)
		}
		cancel()
	}
	subject := streams.SignalSubject(name, id)
	var seq uint64
	if *startType != "" {
		started, s, err := signalWithStart(ctx, js, id, *startType, *startInput, name, body)
		if err != nil {
			return err
		}
		if started {
			if asJSON {
				return printJSON(signalOutput{Workflow: id, Signal: name, Subject: streams.StartSubject(id), Verdict: "started"})
			}
			fmt.Printf("workflow %s (%s) started with signal %s in its start event\n", id, *startType, name)
			return nil
		}
		seq = s
	} else if seq, err = orchestrator.SendSignal(ctx, js, id, name, body); err != nil {
		return err
	}
	if *noWait {
		if asJSON {
			return printJSON(signalOutput{Workflow: id, Signal: name, Subject: subject, StreamSeq: seq, Verdict: "sent"})
		}
		fmt.Printf("signal %s sent to %s (%s, stream sequence %d)\n", name, id, subject, seq)
		return nil
	}
	wctx, cancel := context.WithTimeoutCause(ctx, *timeout, fmt.Errorf("--timeout %v passed", *timeout))
	defer cancel()
	v, err := orchestrator.WaitSignalVerdict(wctx, js, id, seq)
	if err != nil {
		return err
	}
	out := signalOutput{Workflow: id, Signal: name, Subject: subject, StreamSeq: seq, HistorySeq: v.HistorySeq, Reason: v.Reason, Verdict: "recorded"}
	if !v.Recorded {
		out.Verdict = "refused"
	}
	if asJSON {
		if err := printJSON(out); err != nil {
			return err
		}
	} else if v.Recorded {
		fmt.Printf("signal %s recorded in the history of %s at sequence %d (signals stream sequence %d)\n", name, id, v.HistorySeq, seq)
	}
	if !v.Recorded {
		return fmt.Errorf("signal %s to %s refused (signals stream sequence %d, dead letter %s): %s", name, id, seq, streams.SignalDeadLetterSubject(seq), v.Reason)
	}
	return nil
}

// signalOutput is `jetflow signal --output json`.
type signalOutput struct {
	Workflow   string `json:"workflow_id"`
	Signal     string `json:"signal"`
	Subject    string `json:"subject"`
	Verdict    string `json:"verdict"` // sent (--no-wait), recorded, refused, or started (--start)
	StreamSeq  uint64 `json:"stream_seq"`
	HistorySeq uint64 `json:"history_seq,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// signalWithStart is `jetflow signal --start TYPE --input JSON`: the input
// and the payload are JSON, converted as a signal's JSON body is.
func signalWithStart(ctx context.Context, js jetstream.JetStream, id, wfType, input, name string, body []byte) (bool, uint64, error) {
	if input != "" && !json.Valid([]byte(input)) {
		return false, 0, fmt.Errorf("--input is not valid JSON: %s", input)
	}
	in, err := orchestrator.JSONInput([]byte(input))
	if err != nil {
		return false, 0, fmt.Errorf("--input: %w", err)
	}
	payload, err := orchestrator.JSONInput(body)
	if err != nil {
		return false, 0, fmt.Errorf("payload: %w", err)
	}
	return orchestrator.SignalWithStart(ctx, js, id, wfType, in, name, payload)
}
