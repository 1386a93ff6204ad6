package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Intake starts a workflow for each message published on order.created. It
// is the choreography entry: anyone can `nats pub order.created ...`, and
// the message waits in a stream until an orchestrator takes it.
//
// Every message ends acknowledged, either as a started workflow, as an
// identical duplicate of one, or in dlq.order.created with its reason: too
// large, invalid, too large to start, or a conflicting duplicate (same
// workflow ID, different body).
type Intake struct {
	// WorkflowType is the registered workflow to start. Required.
	WorkflowType string
	// Decode parses and validates one message and returns the workflow ID
	// and input. An error sends the message to dlq.order.created with the
	// error as its reason. Required.
	Decode func(data []byte, h nats.Header) (id string, input any, err error)
	// Concurrency bounds the starts in flight. Default 64.
	Concurrency int
	// MaxSize bounds the body of a message, in bytes: a larger one is
	// dead-lettered before Decode sees it ("order is N bytes, the limit is
	// M"). Keep it well under the server's max payload, so that every
	// command the workflow derives from its input fits too. Default
	// DefaultMaxOrderSize (256 KiB).
	MaxSize int
}

func (in *Intake) maxSize() int {
	if in.MaxSize > 0 {
		return in.MaxSize
	}
	return DefaultMaxOrderSize
}

func (o *Orchestrator) runIntake(ctx context.Context) (stop func(), err error) {
	n := o.cfg.Intake.Concurrency
	if n <= 0 {
		n = 64
	}
	return o.consume(ctx, streams.OrdersStream, streams.IntakeConsumerConfig(o.cfg.AckWait, o.cfg.MaxDeliver.Intake), n, o.intake)
}

func (o *Orchestrator) intake(ctx context.Context, m jetstream.Msg) {
	if o.lastDelivery(ctx, m, m.Subject(), o.cfg.MaxDeliver.Intake, nil) {
		return
	}
	// The order's own trace context, if its publisher sent one, is the
	// parent of the workflow's trace.
	ctx, span := intakeSpan(ctx, m)
	defer span.End()
	in := o.cfg.Intake
	if n, limit := len(m.Data()), in.maxSize(); n > limit {
		o.refuse(ctx, m, m.Subject(), fmt.Sprintf("order is %d bytes, the limit is %d (--max-order-size)", n, limit))
		return
	}
	id, input, err := in.Decode(m.Data(), m.Headers())
	if err == nil {
		err = streams.ValidUserID(id)
	}
	if err != nil {
		o.refuse(ctx, m, m.Subject(), "invalid "+m.Subject()+": "+err.Error())
		return
	}
	source := m.Subject()
	if md, err := m.Metadata(); err == nil {
		source += "#" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	started, err := Start(ctx, o.cfg.JS, in.WorkflowType, id, input, source)
	switch {
	case errors.Is(err, ErrTooLarge):
		o.refuse(ctx, m, m.Subject(), "invalid "+m.Subject()+": "+err.Error())
	case err != nil:
		o.log.Warn("start failed, will retry", "workflow_id", id, "err", err)
		_ = m.NakWithDelay(retryDelay(m))
	case started:
		_ = m.Ack()
	default:
		o.duplicate(ctx, m, id, input)
	}
}

// duplicate handles an order whose workflow was started before: the same
// body again (a redelivery, a publisher's retry) is acknowledged; another
// body under the same ID is dead-lettered, so it is not silently dropped.
func (o *Orchestrator) duplicate(ctx context.Context, m jetstream.Msg, id string, input any) {
	raw, err := schema.EncodeRaw(input)
	if err != nil { // Start encoded the same input a moment ago
		o.refuse(ctx, m, m.Subject(), "invalid "+m.Subject()+": encode input: "+err.Error())
		return
	}
	ev, err := o.hist.Last(ctx, streams.StartSubject(id))
	if err == nil && ev == nil {
		// Refused by its message ID, yet no start is there: the workflow
		// was archived within the duplicate window of its start.
		if rec, aerr := o.hist.Archived(ctx, id); aerr == nil && rec != nil {
			o.refuse(ctx, m, m.Subject(), duplicateReason(id, rec))
			return
		}
	}
	if err != nil || ev == nil {
		// The start was refused as a duplicate, so it is there: a read
		// that does not show it is retried.
		o.log.Warn("reading the recorded start failed, will retry", "workflow_id", id, "err", err)
		_ = m.NakWithDelay(retryDelay(m))
		return
	}
	st, ok := ev.Value.(*schema.WorkflowStarted)
	switch {
	case !ok:
		o.refuse(ctx, m, m.Subject(), fmt.Sprintf("conflicting duplicate: the start subject of workflow %s holds a message that is not a workflow start", id))
	case st.Type != o.cfg.Intake.WorkflowType || !bytes.Equal(st.Input, raw):
		o.refuse(ctx, m, m.Subject(), fmt.Sprintf("conflicting duplicate: workflow %s was started by %s with a different body", id, streams.Clip(st.Source, 200)))
	default:
		o.log.Info("duplicate start ignored", "workflow_id", id)
		_ = m.Ack()
	}
}
