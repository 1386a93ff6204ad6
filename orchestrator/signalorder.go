package orchestrator

import (
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// Signal order. A workflow receives its signals in the order the signals
// stream stored them. One router loop takes one workflow's signals at a
// time in a process, but every orchestrator routes, and a signal taken by
// one may be recorded before the signal stored just ahead of it, which
// another one (or this one, after a nak) still routes: 20 signals to one
// workflow were received as [13 17 18 3 1 0 2 ...]. So before a signal is
// recorded, the signal stored just before it for the same workflow (one
// multi_last direct get on the signals stream) must be settled: recorded
// in the history (wf.<id>.signal.<seq>), dead-lettered (dlq.signal.<seq>),
// or acknowledged (at or below the consumer's ack floor). Each signal
// waits for its predecessor only, which waited for its own, so the chain
// holds for all of them.

// turnPoll bounds the pause between two checks of a predecessor.
const turnPoll = 50 * time.Millisecond

// signalTurn is what a routing loop needs to keep a workflow's signals in
// order: the consumer (for its ack floor) and the scheduler (to hand back
// a batch when an earlier signal of the workflow waits behind it).
type signalTurn struct {
	cons  jetstream.Consumer
	sched *scheduler
	// settled is the sequence of the last signal of the batch this loop
	// settled: its successor need not look it up.
	settled uint64
}

// ackSpy records whether a signal was acknowledged (recorded, refused
// with a stored dead letter, or found handled).
type ackSpy struct {
	jetstream.Msg
	acked bool
}

// Ack acknowledges the signal and notes it.
func (a *ackSpy) Ack() error {
	err := a.Msg.Ack()
	if err == nil {
		a.acked = true
	}
	return err
}

// streamSeq is m's sequence in its stream, 0 if its metadata cannot be read.
func streamSeq(m jetstream.Msg) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}

// sortBySeq puts a batch in stream order: a redelivered signal comes
// after signals stored after it.
func sortBySeq(msgs []jetstream.Msg) {
	slices.SortStableFunc(msgs, func(a, b jetstream.Msg) int {
		x, y := streamSeq(a), streamSeq(b)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
}

// turnVerdict is the outcome of waiting for a signal's turn.
type turnVerdict int

const (
	turnGo       turnVerdict = iota // every earlier signal is settled
	turnHandBack                    // an earlier signal waits in this process: hand the batch back
	turnLater                       // still unsettled: nak, try again later
)

// waitTurn waits until the signal with sequence seq to workflow id may be
// recorded: its predecessor in the signals stream is settled. It gives up
// after a third of the ack wait (the caller naks), and at once when an
// earlier signal of the workflow is pending in this process (the caller
// hands the batch back, so the next take routes that one first).
func (o *Orchestrator) waitTurn(ctx context.Context, m jetstream.Msg, t *signalTurn, id string, seq uint64) turnVerdict {
	if t.settled != 0 && t.settled == seq-1 {
		// The message just before it in the stream is this workflow's
		// signal this loop settled: no read needed (a flood's common case).
		return turnGo
	}
	prev, err := o.hist.PrevSignal(ctx, id, seq)
	if err != nil {
		o.log.Warn("signal: read the signals before it, will retry", "workflow_id", id, "seq", seq, "err", err)
		return turnLater
	}
	if prev == 0 || prev == t.settled {
		return turnGo
	}
	deadline := time.Now().Add(o.cfg.AckWait / 3)
	pause := time.Millisecond
	for {
		ok, err := o.signalSettled(ctx, t, id, prev)
		if err != nil {
			o.log.Warn("signal: check the signal before it, will retry", "workflow_id", id, "seq", seq, "before", prev, "err", err)
			return turnLater
		}
		if ok {
			return turnGo
		}
		if t.sched.hasBelow(id, seq) {
			return turnHandBack
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			o.log.Debug("signal: the signal before it is not settled yet", "workflow_id", id, "seq", seq, "before", prev)
			return turnLater
		}
		_ = m.InProgress()
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(pause*2, turnPoll)
	}
}

// signalSettled reports whether the signal with sequence seq to workflow
// id is settled: recorded, dead-lettered, or acknowledged.
func (o *Orchestrator) signalSettled(ctx context.Context, t *signalTurn, id string, seq uint64) (bool, error) {
	ev, err := o.hist.Last(ctx, streams.SignalEventSubject(id, seq))
	if err != nil || ev != nil {
		return ev != nil, err
	}
	if ok, err := o.signalInCurrentRun(ctx, id, seq); err != nil || ok {
		return ok, err
	}
	dl, err := streams.SignalDeadLetter(ctx, o.cfg.NC, seq)
	if err != nil || dl != nil {
		return dl != nil, err
	}
	// Neither: still being routed, or settled in a way that left no
	// trace by sequence (a dead letter removed since). The ack floor
	// tells the latter.
	info, err := t.cons.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.AckFloor.Stream >= seq, nil
}
