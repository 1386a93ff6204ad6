package orchestrator

import (
	"context"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// Intake starts a workflow for each message published on order.created. It
// is the choreography entry: anyone can `nats pub order.created ...`, and
// the message waits in a stream until an orchestrator takes it.
type Intake struct {
	// WorkflowType is the registered workflow to start. Required.
	WorkflowType string
	// Decode parses and validates one message and returns the workflow ID
	// and input. An error sends the message to dlq.order.created with the
	// error as its reason. Required.
	Decode func(data []byte, h nats.Header) (id string, input any, err error)
	// Concurrency bounds the starts in flight. Default 64.
	Concurrency int
}

func (o *Orchestrator) runIntake(ctx context.Context) (stop func(), err error) {
	n := o.cfg.Intake.Concurrency
	if n <= 0 {
		n = 64
	}
	return o.consume(ctx, streams.OrdersStream, streams.IntakeConsumerConfig(o.cfg.AckWait), n, o.intake)
}

func (o *Orchestrator) intake(ctx context.Context, m jetstream.Msg) {
	in := o.cfg.Intake
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
	if err != nil {
		o.log.Warn("start failed, will retry", "workflow_id", id, "err", err)
		_ = m.NakWithDelay(retryDelay(m))
		return
	}
	if !started {
		o.log.Info("duplicate start ignored", "workflow_id", id)
	}
	_ = m.Ack()
}
