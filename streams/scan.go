package streams

import (
	"context"
	"time"
)

// maxMultiLast is the number of answers the server gives one multi_last
// direct get at most.
const maxMultiLast = 1024

// Scan returns up to n messages of the history stream on filter
// (wildcards allowed), in stream order, from sequence from, or, when from
// is 0 and since is set, from the first message stored at or after since
// (the server finds it by binary search on time). pending is how many more
// match after them. One batched direct get answers it: the stream is
// walked from the start point by the server's subject index, no consumer
// is created.
func (h *History) Scan(ctx context.Context, filter string, from uint64, since time.Time, n int) (evs []Event, pending uint64, err error) {
	if err := h.mux(); err != nil {
		return nil, 0, err
	}
	req := map[string]any{"next_by_subj": filter, "batch": max(n, 1)}
	if from == 0 && !since.IsZero() {
		req["start_time"] = since.UTC()
	} else {
		req["seq"] = max(from, 1)
	}
	return h.get(ctx, filter, req)
}

// LastOfEach returns the last message of every subject of the history
// stream matching any of filters (multi_last), sorted by sequence. Filters
// are sent in groups small enough for the server's 1,024 answers per
// request when each filter matches a few subjects (a workflow's end and
// blocked events, say).
func (h *History) LastOfEach(ctx context.Context, filters []string) ([]Event, error) {
	if err := h.mux(); err != nil {
		return nil, err
	}
	const group = maxMultiLast / 4
	var out []Event
	for len(filters) > 0 {
		k := min(group, len(filters))
		evs, _, err := h.get(ctx, filters[0], map[string]any{"multi_last": filters[:k]})
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
		filters = filters[k:]
	}
	return out, nil
}
