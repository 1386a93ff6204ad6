package orchestrator

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Size limits. A message larger than the server's max payload cannot be
// written at all, and a retry does not make it smaller: the engine refuses
// it where it is first seen (the intake dead-letters the order, Start
// returns ErrTooLarge) or parks the workflow whose decision it is, with the
// reason, instead of retrying for ever.

// ErrTooLarge is returned by Start for an input whose start event cannot be
// stored: it is larger than the server's max payload.
var ErrTooLarge = errors.New("too large for the server's max payload")

// DefaultMaxOrderSize is Intake.MaxSize when it is not set: 256 KiB, a
// quarter of the server's default max payload, so every command derived
// from an order fits.
const DefaultMaxOrderSize = 256 << 10

// payloadLimit is what a message may weigh (streams.MsgSize) and still be
// stored once the fence headers are added.
func (o *Orchestrator) payloadLimit() int {
	return streams.MaxPayload(o.cfg.NC) - streams.FenceOverhead
}

// tooLarge returns why msgs cannot be recorded as one decision, or "" when
// every message fits the server's max payload. It runs before anything is
// appended, so a decision is recorded whole or not at all.
func (w *worker) tooLarge(st *state, msgs []*nats.Msg) string {
	if len(msgs) == 0 {
		return ""
	}
	// A workflow the engine started (a late signal's route) takes an input
	// made from a signal already bounded by MaxInputSize, plus its
	// envelope: it is not refused for being a little larger.
	engine := strings.HasPrefix(st.id, streams.ReservedIDPrefix)
	if n := len(st.start.Input); n > w.o.cfg.MaxInputSize && !engine && !decided(st) {
		return fmt.Sprintf("workflow input is %d bytes, more than MaxInputSize %d: parked at its first decision, before any command", n, w.o.cfg.MaxInputSize)
	}
	limit := w.o.payloadLimit()
	for _, m := range msgs {
		if n := streams.MsgSize(m); n > limit {
			return fmt.Sprintf("decision cannot be recorded: %s would be %d bytes, the server accepts %d (max payload %d less %d for headers)",
				m.Subject, n, limit, streams.MaxPayload(w.o.cfg.NC), streams.FenceOverhead)
		}
	}
	return ""
}

// decided reports whether the workflow has recorded a decision of its own
// (a command, a marker or a timer) yet.
func decided(st *state) bool {
	for _, ev := range st.events {
		switch ev.Value.(type) {
		case *schema.Command, *schema.Marker, *schema.TimerStarted, *schema.TimerCancelled:
			return true
		}
	}
	return false
}

// checkStartSize returns ErrTooLarge, with the figures, when the start
// event m cannot be stored on a connection whose max payload is maxPayload.
func checkStartSize(m *nats.Msg, maxPayload int) error {
	if n, limit := streams.MsgSize(m), maxPayload-streams.FenceOverhead; n > limit {
		return fmt.Errorf("start %s: %w: the start event would be %d bytes, the server accepts %d", m.Subject, ErrTooLarge, n, limit)
	}
	return nil
}

// signalTooLarge returns why signal message m is refused for its size, or
// "": a payload larger than MaxInputSize would make a history event (or the
// input of a late-signal workflow) that may not fit the max payload, and a
// write that cannot fit would be retried for ever.
func (o *Orchestrator) signalTooLarge(m jetstream.Msg) string {
	if n := len(m.Data()); n > o.cfg.MaxInputSize {
		return fmt.Sprintf("signal is %d bytes, the limit is %d (MaxInputSize)", n, o.cfg.MaxInputSize)
	}
	return ""
}
