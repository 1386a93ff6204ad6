package main

import (
	"context"
	"encoding/json"
	"errors"
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
	c.register(fs, false)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || len(pos) > 3 {
		return errors.New("usage: jetflow signal WORKFLOW_ID NAME [JSON]")
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
	fmt.Printf("signal %s sent to %s (%s, stream sequence %d)\n", name, id, subject, ack.Sequence)
	return nil
}
