package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// FloodSignal is the name of the signals a flood sends: one the reference
// workflow never waits for, so each is recorded in the history, wakes the
// orchestrator and stays unreceived.
const FloodSignal = "bench.flood"

// FloodResult is what became of a flood of signals to one workflow.
type FloodResult struct {
	// Signals sent to Workflow, an order waiting for a pickup that never
	// comes.
	Signals  int    `json:"signals"`
	Workflow string `json:"workflow"`
	// PublishSeconds: the first signal published → the last acknowledged
	// by the signals stream.
	PublishSeconds float64 `json:"publish_seconds"`
	// RecordedSeconds: the first signal published → the signal router has
	// recorded every one in the history (its consumer has nothing left).
	RecordedSeconds float64 `json:"recorded_seconds"`
	// DecidedSeconds: the first signal published → the orchestrator has
	// decided on every one (its consumer has nothing left).
	DecidedSeconds float64 `json:"decided_seconds"`
	// Recorded is the number of flood signals in the workflow's history.
	Recorded int `json:"recorded"`
}

// floodTarget starts the order the flood goes to and waits until it waits
// for its carrier, under its pickup timer.
func floodTarget(ctx context.Context, js jetstream.JetStream, hist *streams.History, prefix string) (string, error) {
	o, _ := fulfillment.MixedOrder(prefix, 0)
	o.OrderID = prefix + "flood"
	o.Simulate = map[string]string{"pickup": "never"}
	body, _ := json.Marshal(o) // an Order of strings and numbers always encodes
	if _, err := js.Publish(ctx, streams.OrderCreated, body); err != nil {
		return "", fmt.Errorf("flood target: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs, err := hist.Read(ctx, o.OrderID, 0)
		if err == nil {
			for _, ev := range evs {
				if _, ok := ev.Value.(*schema.TimerStarted); ok {
					return o.OrderID, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("flood target %s did not reach its pickup timer within 30s (%v)", o.OrderID, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// flood sends n signals to workflow id and follows them until the
// orchestrator has decided on every one, or ctx is done. It returns at
// once; wait returns the result once the flood is absorbed (or ctx done).
func flood(ctx context.Context, js jetstream.JetStream, id string, n int) (wait func() (*FloodResult, error)) {
	res := &FloodResult{Signals: n, Workflow: id}
	done := make(chan error, 1)
	go func() { done <- runFlood(ctx, js, res) }()
	return func() (*FloodResult, error) { return res, <-done }
}

func runFlood(ctx context.Context, js jetstream.JetStream, res *FloodResult) error {
	start := time.Now()
	subject := streams.SignalSubject(FloodSignal, res.Workflow)
	acks := make([]jetstream.PubAckFuture, 0, res.Signals)
	for i := range res.Signals {
		m := &nats.Msg{Subject: subject, Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)}
		ack, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute))
		if err != nil {
			return fmt.Errorf("flood: publish: %w", err)
		}
		acks = append(acks, ack)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	// A signal the stream refused (at its bound) is not in the flood: the
	// figures would be of fewer signals than reported.
	for _, a := range acks {
		select {
		case <-a.Ok():
		case err := <-a.Err():
			return fmt.Errorf("flood: a signal was not stored: %w", err)
		}
	}
	res.PublishSeconds = time.Since(start).Seconds()

	// Both consumers' states are polled every 50ms: an info request costs
	// the server a count of the pending messages, so no faster.
	router, err := js.Consumer(ctx, streams.SignalsStream, streams.SignalsConsumer)
	if err != nil {
		return err
	}
	// The flooded workflow's wakes are in its own stream's consumer.
	orch, err := js.Consumer(ctx, streams.HistoryStreamOf(res.Workflow), streams.OrchestratorConsumer)
	if err != nil {
		return err
	}
	drained := func(c jetstream.Consumer) bool {
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}
	for res.RecordedSeconds == 0 || res.DecidedSeconds == 0 {
		if res.RecordedSeconds == 0 && drained(router) {
			res.RecordedSeconds = time.Since(start).Seconds()
		}
		if res.RecordedSeconds != 0 && drained(orch) {
			res.DecidedSeconds = time.Since(start).Seconds()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	s, err := js.Stream(ctx, streams.HistoryStreamOf(res.Workflow))
	if err != nil {
		return err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(streams.SignalFilterOf(res.Workflow)))
	if err != nil {
		return err
	}
	res.Recorded = len(info.State.Subjects)
	return nil
}
