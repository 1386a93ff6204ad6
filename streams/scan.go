package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxMultiLast is the number of answers the server gives one multi_last
// direct get at most.
const maxMultiLast = 1024

// Scan returns up to n messages of stream on filter (wildcards allowed),
// in stream order, from sequence from, or, when from is 0 and since is
// set, from the first message stored at or after since (the server finds
// it by binary search on time). end reports that no message matches after
// them. Each message is one direct get of the next match: unlike a batched
// get, it does not make the server count every match of the filter first,
// which costs in proportion to the subjects it matches (a million start
// events) whatever the page size.
func (h *History) Scan(ctx context.Context, stream, filter string, from uint64, since time.Time, n int) (evs []Event, end bool, err error) {
	seq := max(from, 1)
	for i := 0; i < n; i++ {
		req := map[string]any{"next_by_subj": filter}
		if i == 0 && from == 0 && !since.IsZero() {
			req["start_time"] = since.UTC()
		} else {
			req["seq"] = seq
		}
		body, _ := json.Marshal(req)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := h.nc.RequestWithContext(rctx, "$JS.API.DIRECT.GET."+stream, body)
		cancel()
		if err != nil {
			return nil, false, fmt.Errorf("scan %s: %w", filter, err)
		}
		switch m.Header.Get("Status") {
		case "":
		case "404":
			return evs, true, nil
		default:
			return nil, false, fmt.Errorf("scan %s: status %s %s", filter, m.Header.Get("Status"), m.Header.Get("Description"))
		}
		got, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("scan %s: bad sequence header", filter)
		}
		ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		evs = append(evs, eventFromMsg(m.Header.Get(jetstream.SubjectHeader), got, ts, m.Header, m.Data))
		seq = got + 1
	}
	return evs, false, nil
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
