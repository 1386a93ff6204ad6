package streams

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
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
//
// A next_by_subj get from the stream's first sequence makes the server
// count the filter's matches too (to skip ahead), so a scan from the start
// reads message 1 by sequence and goes on from 2.
func (h *History) Scan(ctx context.Context, stream, filter string, from uint64, since time.Time, n int) (evs []Event, end bool, err error) {
	seq := from
	if seq == 0 && !since.IsZero() {
		// The first message stored at or after since, whatever its subject.
		ev, found, err := h.direct(ctx, stream, filter, map[string]any{"start_time": since.UTC()})
		if err != nil {
			return nil, false, err
		}
		if !found {
			// Nothing stored since, or the message there was removed: ask
			// for the first match since, at the price of the count.
			if ev, found, err = h.direct(ctx, stream, filter, map[string]any{"next_by_subj": filter, "start_time": since.UTC()}); err != nil || !found {
				return nil, !found, err
			}
			if n <= 0 {
				return nil, false, nil
			}
			evs = append(evs, ev)
		}
		seq = ev.Seq
		if found && len(evs) > 0 {
			seq++
		}
	}
	if seq <= 1 {
		ev, found, err := h.direct(ctx, stream, filter, map[string]any{"seq": 1})
		if err != nil {
			return nil, false, err
		}
		if found && subjectMatches(filter, ev.Subject) && n > 0 {
			evs = append(evs, ev)
		}
		seq = 2
	}
	for len(evs) < n {
		ev, found, err := h.direct(ctx, stream, filter, map[string]any{"next_by_subj": filter, "seq": seq})
		if err != nil {
			return nil, false, err
		}
		if !found {
			return evs, true, nil
		}
		evs = append(evs, ev)
		seq = ev.Seq + 1
	}
	return evs, false, nil
}

// direct sends one direct-get request to stream and returns its message;
// found is false on "no message".
func (h *History) direct(ctx context.Context, stream, filter string, req map[string]any) (Event, bool, error) {
	m, err := directMsg(ctx, h.nc, stream, req)
	if err != nil {
		return Event{}, false, fmt.Errorf("scan %s: %w", filter, err)
	}
	if m == nil {
		return Event{}, false, nil
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return Event{}, false, fmt.Errorf("scan %s: bad sequence header", filter)
	}
	ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	return eventFromMsg(m.Header.Get(jetstream.SubjectHeader), seq, ts, m.Header, m.Data), true, nil
}

// subjectMatches reports whether subject matches filter, whose tokens may
// be * (one token) or, last, > (one or more).
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(f) == len(s)
}

// LastOfEach returns the last message of every subject of the history
// stream matching any of filters (multi_last), sorted by sequence (by time
// when they span partitions of a partitioned history). Filters
// are sent in groups small enough for the server's 1,024 answers per
// request when each filter matches a few subjects (a workflow's end and
// blocked events, say).
func (h *History) LastOfEach(ctx context.Context, filters []string) ([]Event, error) {
	if err := h.mux(); err != nil {
		return nil, err
	}
	const group = maxMultiLast / 4
	var out []Event
	knowLayout(ctx, h.js)
	byStream := map[string][]string{}
	var order []string
	for _, f := range filters {
		for _, stream := range historyStreamsFor(f) {
			if byStream[stream] == nil {
				order = append(order, stream)
			}
			byStream[stream] = append(byStream[stream], f)
		}
	}
	for _, stream := range order {
		filters := byStream[stream]
		for len(filters) > 0 {
			k := min(group, len(filters))
			evs, _, err := h.getFrom(ctx, stream, filters[0], map[string]any{"multi_last": filters[:k]})
			if err != nil {
				return nil, err
			}
			out = append(out, evs...)
			filters = filters[k:]
		}
	}
	if len(order) > 1 {
		// Sequences order the events of one stream only: across
		// partitions, by time.
		sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	}
	return out, nil
}
