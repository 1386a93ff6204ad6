package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/streams"
)

// runSignal publishes signal NAME to a workflow, as
// `nats pub signal.<name>.<id> '<json>'` would.
func runSignal(ctx context.Context, args []string) error {
	var c common
	fs := flag.NewFlagSet("signal", flag.ContinueOnError)
	c.register(fs, true)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || len(pos) > 3 {
		return errUsage(fs, "want a workflow ID, a signal name and an optional JSON payload, got %q", pos)
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
	nc, js, err := connect(ctx, &c, "jetflow signal", natsauth.SignalOwner(name), false)
	if err != nil {
		return err
	}
	defer nc.Close()
	subject := streams.SignalSubject(name, id)
	ack, err := js.Publish(ctx, subject, body)
	if err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	if asJSON {
		return printJSON(struct {
			WorkflowID string `json:"workflow_id"`
			Signal     string `json:"signal"`
			Subject    string `json:"subject"`
			StreamSeq  uint64 `json:"stream_seq"`
		}{id, name, subject, ack.Sequence})
	}
	fmt.Printf("signal %s sent to %s (%s, stream sequence %d)\n", name, id, subject, ack.Sequence)
	return nil
}
