package workflowtest

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/orchestrator"
)

// Query asks workflow id's query handler name with arg (encoded as JSON;
// nil for none) through orchestrator.Query, and decodes the answer into
// out (nil to drop it).
func (e *Env) Query(id, name string, arg, out any) error {
	return e.call(orchestrator.Query, id, name, arg, out)
}

// Update sends update name with arg (encoded as JSON) to workflow id
// through orchestrator.Update, waits for the handler's result and decodes
// it into out (nil to drop it). A rejected update's error matches
// workflow.ErrRejected.
func (e *Env) Update(id, name string, arg, out any) error {
	return e.call(orchestrator.Update, id, name, arg, out)
}

type handlerCall func(ctx context.Context, nc *nats.Conn, id, name string, arg []byte) (json.RawMessage, error)

func (e *Env) call(fn handlerCall, id, name string, arg, out any) error {
	var raw []byte
	if arg != nil {
		b, err := json.Marshal(arg)
		if err != nil {
			return fmt.Errorf("workflowtest: encode argument: %w", err)
		}
		raw = b
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.wait)
	defer cancel()
	res, err := fn(ctx, e.env.NC, id, name, raw)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(res, out)
}
