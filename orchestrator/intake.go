package orchestrator

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jetflow/streams"
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
	in := o.cfg.Intake
	n := in.Concurrency
	if n <= 0 {
		n = 64
	}
	cons, err := o.cfg.JS.CreateOrUpdateConsumer(ctx, streams.OrdersStream, streams.IntakeConsumerConfig(o.cfg.AckWait))
	if err != nil {
		return nil, fmt.Errorf("orchestrator: intake consumer: %w", err)
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			o.intake(ctx, m)
		}()
	}, jetstream.PullMaxMessages(n), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		o.log.Debug("intake consume", "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("orchestrator: intake consume: %w", err)
	}
	return func() { cc.Stop(); wg.Wait() }, nil
}

func (o *Orchestrator) intake(ctx context.Context, m jetstream.Msg) {
	in := o.cfg.Intake
	id, input, err := in.Decode(m.Data(), m.Headers())
	if err == nil {
		err = streams.ValidID(id)
	}
	if err != nil {
		reason := "invalid " + m.Subject() + ": " + err.Error()
		o.log.Warn("order refused", "reason", reason)
		if err := streams.DeadLetter(ctx, o.cfg.JS, m.Subject(), m, reason); err != nil {
			o.log.Error("dead letter failed, will retry", "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
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
