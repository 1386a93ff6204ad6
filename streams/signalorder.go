package streams

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// SignalOrigin is the origin of a refused signal's dead letter.
const SignalOrigin = "signal"

// SignalDeadLetterSubject is where the dead letter of the signal with
// sequence seq in SignalsStream goes: dlq.signal.<seq>. Every signal dead
// letter is under SignalDeadLetterFilter.
func SignalDeadLetterSubject(seq uint64) string {
	return DeadLetterSubject(SignalOrigin) + "." + strconv.FormatUint(seq, 10)
}

// SignalDeadLetterFilter matches the dead letters of every signal.
const SignalDeadLetterFilter = DeadLetterPrefix + "." + SignalOrigin + ".>"

// MaxOrderedNameTokens is the number of dot-separated tokens a signal name
// may have and still be held in order behind the workflow's earlier
// signals (see PrevSignal). payment.settled has two.
const MaxOrderedNameTokens = 6

// signalFiltersOf are the subjects in SignalsStream of the signals to
// workflow id whose names have up to MaxOrderedNameTokens tokens.
func signalFiltersOf(id string) []string {
	out := make([]string, 0, MaxOrderedNameTokens)
	for n := 1; n <= MaxOrderedNameTokens; n++ {
		out = append(out, SignalPrefix+"."+strings.Repeat("*.", n)+id)
	}
	return out
}

// PrevSignal returns the sequence of the last signal to workflow id stored
// in SignalsStream before sequence seq, 0 when there is none. It is one
// multi_last direct get over the workflow's signal subjects, answered from
// the stream's subject index.
func (h *History) PrevSignal(ctx context.Context, id string, seq uint64) (uint64, error) {
	if seq <= 1 {
		return 0, nil
	}
	if err := h.mux(); err != nil {
		return 0, err
	}
	evs, _, err := h.getFrom(ctx, SignalsStream, id, map[string]any{"multi_last": signalFiltersOf(id), "up_to_seq": seq - 1})
	if err != nil {
		return 0, fmt.Errorf("signals before #%d: %w", seq, err)
	}
	var prev uint64
	for _, ev := range evs {
		prev = max(prev, ev.Seq)
	}
	return prev, nil
}

// SignalDeadLetter returns the dead letter of the signal with sequence seq
// in SignalsStream, nil when it has none: one direct get by subject.
func SignalDeadLetter(ctx context.Context, nc *nats.Conn, seq uint64) (*nats.Msg, error) {
	return directLast(ctx, nc, DeadLetterStream, SignalDeadLetterSubject(seq))
}

// directLast is the last message on subject in stream, by direct get; nil
// when there is none.
func directLast(ctx context.Context, nc *nats.Conn, stream, subject string) (*nats.Msg, error) {
	m, err := directMsg(ctx, nc, stream, map[string]any{"last_by_subj": subject})
	if err != nil {
		return nil, fmt.Errorf("last %s: %w", subject, err)
	}
	return m, nil
}
