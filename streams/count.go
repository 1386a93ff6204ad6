package streams

import (
	"context"
)

// Count returns how many messages of the history stream match subject
// (wildcards allowed), e.g. the signals recorded for one workflow
// (wf.<id>.signal.*). One batched direct get answers it from the stream's
// subject index (the server's Nats-Num-Pending): the messages are not read.
func (h *History) Count(ctx context.Context, subject string) (uint64, error) {
	knowLayout(ctx, h.js)
	var sum uint64
	for _, stream := range historyStreamsFor(subject) {
		n, err := h.CountOn(ctx, stream, subject)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// CountOn is Count on any stream that allows direct gets. The server
// counts by walking the subjects that match: the cost grows with their
// number, which a filter with a literal prefix (ix.done.manual.*) keeps to
// the matches.
func (h *History) CountOn(ctx context.Context, stream, subject string) (uint64, error) {
	if err := h.mux(); err != nil {
		return 0, err
	}
	evs, pending, err := h.getFrom(ctx, stream, subject, map[string]any{"seq": 1, "next_by_subj": subject, "batch": 1})
	if err != nil {
		return 0, err
	}
	return uint64(len(evs)) + pending, nil
}

// SignalFilterOf matches the recorded signals of workflow id.
func SignalFilterOf(id string) string { return "wf." + id + "." + tokSignal + ".*" }
