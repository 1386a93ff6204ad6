package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/streams"
)

// runQuery is `jetflow query ID NAME [JSON]`: orchestrator.Query, asked
// with the operator role's inbox.
func runQuery(ctx context.Context, args []string) error {
	return runHandler(ctx, args, "query", natsauth.Operator, 10*time.Second, orchestrator.Query)
}

// runUpdate is `jetflow update ID NAME [JSON]`: orchestrator.Update, sent
// with the client role's inbox; it waits for the handler's result.
func runUpdate(ctx context.Context, args []string) error {
	return runHandler(ctx, args, "update", natsauth.Client, 5*time.Minute, orchestrator.Update)
}

type handlerFunc = func(ctx context.Context, nc *nats.Conn, id, name string, arg []byte) (json.RawMessage, error)

func runHandler(ctx context.Context, args []string, verb, role string, timeout time.Duration, call handlerFunc) error {
	var c common
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	c.register(fs, true)
	fs.DurationVar(&timeout, "timeout", timeout, "how long to wait for the answer")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || len(pos) > 3 {
		return fmt.Errorf("usage: jetflow %s WORKFLOW_ID NAME [JSON]", verb)
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	if timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive", timeout)
	}
	id, name := pos[0], pos[1]
	if err := streams.ValidID(id); err != nil {
		return err
	}
	var arg []byte
	if len(pos) == 3 {
		if !json.Valid([]byte(pos[2])) {
			return fmt.Errorf("argument is not valid JSON: %s", pos[2])
		}
		arg = []byte(pos[2])
	}
	nc, _, err := connect(ctx, &c, "jetflow "+verb, role, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := call(ctx, nc, id, name, arg)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w (--timeout %s)", err, timeout)
		}
		return err
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(struct {
			WorkflowID string          `json:"workflow_id"`
			Name       string          `json:"name"`
			Result     json.RawMessage `json:"result"`
		}{id, name, out})
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(out)
	}
	fmt.Println(pretty.String())
	return nil
}
