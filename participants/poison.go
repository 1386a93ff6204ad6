package participants

import (
	"context"
	"time"

	"github.com/jetflow-io/jetflow/streams"
)

// lastDelivery takes the command when this delivery is the last one its
// consumer makes (Config.MaxDeliver): every delivery before it crashed,
// timed out or was retried, and the server will not deliver it again. The
// handler does not run (the command may be what crashes the process): the
// message is copied to dlq.cmd.<service> with streams.LastDeliveryReason,
// then a final KindUndeliverable failure is published as its result,
// unless a result is stored already (then that one stays), and the
// delivery is acked. A message that is not a valid
// command for its subject is only dead-lettered. It reports whether this
// was the last delivery; the caller returns at once when it was.
func (j *job) lastDelivery() bool {
	if j.attempt < j.maxDeliver {
		return false
	}
	reason := streams.LastDeliveryReason(uint64(j.attempt))
	j.log.Error("last delivery: dead-lettering the command unhandled", "reason", reason)
	ctx, cancel := j.finishCtx()
	defer cancel()
	// A nak would not bring the command back: each write is retried here.
	if err := retryLast(ctx, j, func() error { return j.storeDeadLetter(ctx, reason) }); err != nil {
		// The command stays in the history (the dead letter would only have
		// been a copy); its workflow must still get an answer.
		j.log.Error("dead letter of a last delivery failed: the command stays in the history, delivered no more", "err", err)
	}
	sc, bad, _ := j.command()
	if bad == "" {
		msgID := "res-" + j.svc.Name + "-" + sc.IdempotencyKey
		res := j.failureResult(sc, KindUndeliverable, reason)
		if err := retryLast(ctx, j, func() error { return j.settle(ctx, sc, msgID, res) }); err != nil {
			j.log.Error("answer of a last delivery failed: its workflow waits for a result", "err", err)
			return true
		}
	}
	j.ack()
	return true
}

// retryLast runs write up to five times, a little apart, keeping the
// delivery alive meanwhile.
func retryLast(ctx context.Context, j *job, write func() error) error {
	for attempt := 1; ; attempt++ {
		err := write()
		if err == nil || attempt == 5 || ctx.Err() != nil {
			return err
		}
		if err := j.msg.InProgress(); err != nil {
			j.log.Debug("in-progress", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
}
