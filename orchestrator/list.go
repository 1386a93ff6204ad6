package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Listing workflows at scale. Start events are stored in start order, so
// the start events of the history stream (wf.*.start) are the workflows
// sorted by start time, and a stream sequence is a cursor into them: a
// page is one batched direct get from the cursor on that filter, which the
// server answers from its subject index (and, with --since, from the first
// message at that time, found by binary search), plus, for the page's
// workflows only, one multi_last of their end and blocked events and one
// direct get of each one's last event. Nothing is proportional to the
// number of workflows in the stream. A status filter walks that status's
// own events instead (wf.*.done.<status>, wf.*.blocked.*), so the manual
// queue is paged without reading the completed orders: those pages are
// sorted by the time the workflows reached the status.

// DefaultListLimit is the page size of ListPage when ListOptions.Limit is 0.
const DefaultListLimit = 100

// MaxListLimit bounds ListOptions.Limit.
const MaxListLimit = 10000

// ListOptions selects the workflows ListPage returns.
type ListOptions struct {
	// Status keeps the workflows in this status only; "" keeps all. A
	// final status (completed, manual, ...) or blocked pages the events
	// of that status, sorted by the time they were reached; any other
	// pages start events, sorted by start time.
	Status schema.Status
	// Type keeps the workflows of this type only; "" keeps all.
	Type string
	// Since and Until keep the workflows started in [Since, Until]; zero
	// is unbounded.
	Since, Until time.Time
	// Limit is the most workflows in a page. Default DefaultListLimit, at
	// most MaxListLimit.
	Limit int
	// Cursor is the Next of the previous page, "" for the first.
	Cursor string
}

// Page is one page of ListPage.
type Page struct {
	Workflows []Summary `json:"workflows"`
	// Next is the cursor of the next page; "" on the last page. A page
	// may hold fewer than Limit workflows and still have a next one when
	// the filters matched few of those it examined.
	Next string `json:"next,omitempty"`
}

// listScanBudget bounds the events one ListPage call examines, so a
// filter that matches few workflows returns a short page with a cursor in
// bounded time rather than walking the whole stream.
func listScanBudget(limit int) int { return max(limit*20, 5000) }

// cursor kinds: which events a page walks.
const (
	cursorStarts  = "s"
	cursorDone    = "d"
	cursorBlocked = "b"
)

// ListPage returns one page of the workflows opts selects, and the cursor
// of the next. See ListOptions for the order.
func ListPage(ctx context.Context, js jetstream.JetStream, opts ListOptions) (Page, error) {
	limit := opts.Limit
	switch {
	case limit == 0:
		limit = DefaultListLimit
	case limit < 0 || limit > MaxListLimit:
		return Page{}, fmt.Errorf("limit %d: want 1 to %d", limit, MaxListLimit)
	}
	if !opts.Since.IsZero() && !opts.Until.IsZero() && opts.Until.Before(opts.Since) {
		return Page{}, fmt.Errorf("until %s is before since %s", opts.Until.Format(time.RFC3339), opts.Since.Format(time.RFC3339))
	}
	streams.LearnLayout(ctx, js)
	// Starts are walked in the history's streams (several when it is
	// partitioned, merged in time order); ends and blocked events in the
	// index, which sources them all.
	kind, walked, filter := cursorStarts, streams.HistoryStreams(), streams.StartFilter
	switch st := opts.Status; {
	case st == "" || st == schema.StatusRunning:
	case st == schema.StatusBlocked:
		kind, walked, filter = cursorBlocked, []string{streams.IndexStream}, streams.IndexBlockedSubject
	default:
		if err := validStatusToken(st); err != nil {
			return Page{}, err
		}
		kind, walked, filter = cursorDone, []string{streams.IndexStream}, streams.IndexDoneFilter(string(st))
	}
	from, err := parseCursor(opts.Cursor, kind, len(walked))
	if err != nil {
		return Page{}, err
	}
	h := streams.NewHistory(js.Conn(), js)
	page := Page{Workflows: []Summary{}}
	budget := listScanBudget(limit)
	for scanned, round := 0, 0; len(page.Workflows) < limit && scanned < budget; round++ {
		// Filters that drop most events take larger batches each round.
		batch := min(max(limit-len(page.Workflows), 64)<<min(round, 4), budget-scanned, 1000)
		evs, of, end, err := scanMerged(ctx, h, walked, filter, from, opts.Since, batch)
		if err != nil {
			return Page{}, fmt.Errorf("list: %w", err)
		}
		scanned += len(evs)
		rows, stop, err := listRows(ctx, h, kind, evs, opts)
		if err != nil {
			return Page{}, fmt.Errorf("list: %w", err)
		}
		for i, r := range rows {
			from[of[i]] = evs[i].Seq + 1
			if r != nil && len(walked) > 1 && walked[of[i]] != streams.HistoryStreamOf(r.ID) {
				// A start published by hand to another partition's
				// subjects: not the workflow's history (the orchestrator
				// dead-letters it).
				r = nil
			}
			if r == nil {
				continue
			}
			page.Workflows = append(page.Workflows, *r)
			if len(page.Workflows) == limit {
				if i == len(evs)-1 && end {
					return page, nil
				}
				page.Next = formatCursor(kind, from)
				return page, nil
			}
		}
		if stop || len(evs) == 0 || end {
			return page, nil
		}
	}
	// The scan budget is spent: the next page goes on from here.
	page.Next = formatCursor(kind, from)
	return page, nil
}

// scanMerged scans up to about n events on filter from each of the
// streams, each from its own cursor in from (0: from since, if set), and
// returns them in order with the index of each one's stream: stream order
// for one stream; for several, a merge by time of each stream's events up
// to the earliest latest time among the streams not scanned to their end,
// so that no event the next round reads can come before one returned.
// end reports that every stream was read to its end.
func scanMerged(ctx context.Context, h *streams.History, names []string, filter string, from []uint64, since time.Time, n int) ([]streams.Event, []int, bool, error) {
	per := n
	if len(names) > 1 {
		per = max(16, n/len(names))
	}
	type part struct {
		evs []streams.Event
		end bool
	}
	parts := make([]part, len(names))
	var cutoff time.Time
	allEnd := true
	for p, name := range names {
		var s time.Time
		if from[p] == 0 {
			// A workflow reached any status after it started: its
			// events of that status are at or after Since too.
			s = since
		}
		evs, end, err := h.Scan(ctx, name, filter, from[p], s, per)
		if err != nil {
			return nil, nil, false, err
		}
		parts[p] = part{evs, end}
		if !end && len(evs) > 0 {
			// The latest time of the batch, not its last event's: a
			// stream's times may step back (a leader on a clock behind),
			// and the stream that sets the cutoff must give its whole
			// batch, or a round could take nothing.
			allEnd = false
			latest := evs[0].Time
			for _, ev := range evs {
				if ev.Time.After(latest) {
					latest = ev.Time
				}
			}
			if cutoff.IsZero() || latest.Before(cutoff) {
				cutoff = latest
			}
		}
	}
	if len(names) == 1 {
		of := make([]int, len(parts[0].evs))
		return parts[0].evs, of, parts[0].end, nil
	}
	// Each stream's prefix up to the cutoff, merged by time as a k-way
	// merge of the streams' heads: a stream's own events keep their order,
	// so its cursor only moves forward.
	taken := true
	heads := make([][]streams.Event, len(parts))
	for p, pt := range parts {
		keep := len(pt.evs)
		if !allEnd {
			for i, ev := range pt.evs {
				if ev.Time.After(cutoff) {
					keep, taken = i, false
					break
				}
			}
		}
		heads[p] = pt.evs[:keep]
	}
	var evs []streams.Event
	var of []int
	for {
		best := -1
		for p, h := range heads {
			if len(h) > 0 && (best < 0 || h[0].Time.Before(heads[best][0].Time)) {
				best = p
			}
		}
		if best < 0 {
			break
		}
		evs, of = append(evs, heads[best][0]), append(of, best)
		heads[best] = heads[best][1:]
	}
	return evs, of, allEnd && taken, nil
}

// listRows turns the events a page walked into its rows: one per event,
// nil where the filters drop it. stop is set once Until is passed on a
// walk in start order.
func listRows(ctx context.Context, h *streams.History, kind string, evs []streams.Event, opts ListOptions) ([]*Summary, bool, error) {
	rows := make([]*Summary, len(evs))
	stop := false
	for i, ev := range evs {
		id, _, ok := streams.ParseSubject(ev.Subject)
		if kind != cursorStarts {
			id, _, ok = streams.ParseSubject(ev.Origin)
		}
		if !ok {
			continue
		}
		r := &Summary{ID: id}
		if kind == cursorStarts {
			if !opts.Until.IsZero() && ev.Time.After(opts.Until) {
				rows, stop = rows[:i], true
				evs = evs[:i]
				break
			}
			st, ok := ev.Value.(*schema.WorkflowStarted)
			if !ok || (opts.Type != "" && st.Type != opts.Type) {
				continue
			}
			r.Type, r.StartedAt = st.Type, ev.Time
		}
		rows[i] = r
	}
	// The status first, for every row (one multi_last): the rows it drops
	// cost nothing more.
	if err := statusOfRows(ctx, h, rows); err != nil {
		return nil, false, err
	}
	for i, r := range rows {
		if r == nil {
			continue
		}
		keep := true
		switch kind {
		case cursorStarts:
			keep = opts.Status == "" || r.Status == opts.Status
		case cursorDone:
			// Listed once, at the end that made its status (a manual
			// workflow retried and manual again has two such ends), and
			// not once an operator moved it on (retry, resolve).
			keep = r.Status == opts.Status && r.lastDone == evs[i].Origin
		case cursorBlocked:
			// Listed once, at its last blocked event, while not ended.
			keep = r.Status == schema.StatusBlocked && r.lastBlocked == evs[i].Origin
		}
		if !keep {
			rows[i] = nil
		}
	}
	if err := timesOfRows(ctx, h, rows, kind != cursorStarts); err != nil {
		return nil, false, err
	}
	for i, r := range rows {
		if r != nil && !((opts.Type == "" || r.Type == opts.Type) &&
			(opts.Since.IsZero() || !r.StartedAt.Before(opts.Since)) &&
			(opts.Until.IsZero() || !r.StartedAt.After(opts.Until))) {
			rows[i] = nil
		}
	}
	return rows, stop, nil
}

// validStatusToken checks that a status can be the last token of
// wf.<id>.done.<status>.
func validStatusToken(st schema.Status) error {
	if st == "" || strings.ContainsAny(string(st), ".*> \t\r\n") {
		return fmt.Errorf("status %q: want running, blocked or a final status such as completed, compensated, manual", st)
	}
	return nil
}

// parseCursor reads a cursor of kind over k streams; "" is the first page
// (0 for each). A cursor over several streams (a partitioned history's
// starts) holds one sequence per stream, comma-separated.
func parseCursor(c, kind string, k int) ([]uint64, error) {
	from := make([]uint64, k)
	if c == "" {
		return from, nil
	}
	if !strings.HasPrefix(c, kind) {
		return nil, fmt.Errorf("cursor %q: from a list with another status filter", c)
	}
	parts := strings.Split(c[len(kind):], ",")
	if len(parts) != k {
		return nil, fmt.Errorf("cursor %q: not a cursor jetflow gave (for %d streams)", c, k)
	}
	some := false
	for i, p := range parts {
		seq, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cursor %q: not a cursor jetflow gave", c)
		}
		from[i], some = seq, some || seq > 0
	}
	if !some {
		return nil, fmt.Errorf("cursor %q: not a cursor jetflow gave", c)
	}
	return from, nil
}

// formatCursor is the cursor of kind at from.
func formatCursor(kind string, from []uint64) string {
	parts := make([]string, len(from))
	for i, seq := range from {
		parts[i] = strconv.FormatUint(seq, 10)
	}
	return kind + strings.Join(parts, ",")
}

// rowsByID groups the rows (nil ones skipped) by workflow ID.
func rowsByID(rows []*Summary) map[string][]*Summary {
	byID := map[string][]*Summary{}
	for _, r := range rows {
		if r != nil {
			byID[r.ID] = append(byID[r.ID], r)
		}
	}
	return byID
}

// statusOfRows fills in each row's status and reason from one multi_last
// of every row's end, blocked and operator subjects: the status is what
// their names say (subjectMarks, as List reads them), so a manual
// workflow an operator retried or resolved is not manual any more.
func statusOfRows(ctx context.Context, h *streams.History, rows []*Summary) error {
	byID := map[string][]*Summary{}
	var filters []string
	for _, r := range rows {
		if r == nil {
			continue
		}
		if byID[r.ID] == nil {
			filters = append(filters, streams.DoneFilterOf(r.ID), "wf."+r.ID+".blocked.*", "wf."+r.ID+".op.>",
				// Its decisions: one stored after its last blocked event
				// means it decided again (an event woke it on fixed code).
				"wf."+r.ID+".cmd.>", "wf."+r.ID+".marker.*", "wf."+r.ID+".timer.*")
		}
		byID[r.ID] = append(byID[r.ID], r)
	}
	if len(byID) == 0 {
		return nil
	}
	evs, err := h.LastOfEach(ctx, filters)
	if err != nil {
		return err
	}
	type seen struct {
		marks    subjectMarks
		ends     []*streams.Event
		blocked  *streams.Event
		decision uint64 // the sequence of its last decision
	}
	of := map[string]*seen{}
	for i := range evs {
		ev := &evs[i]
		id, rest, ok := streams.ParseSubject(ev.Subject)
		if !ok {
			continue
		}
		e := of[id]
		if e == nil {
			e = &seen{}
			of[id] = e
		}
		e.marks.add(rest)
		switch {
		case strings.HasPrefix(rest, "cmd.") || strings.HasPrefix(rest, "marker.") || strings.HasPrefix(rest, "timer."):
			e.decision = max(e.decision, ev.Seq)
		case strings.HasPrefix(rest, "done."):
			e.ends = append(e.ends, ev)
		case strings.HasPrefix(rest, "blocked."):
			if e.blocked == nil || ev.Seq > e.blocked.Seq {
				e.blocked = ev
			}
		}
	}
	for id, rs := range byID {
		for _, r := range rs {
			r.Status = schema.StatusRunning
			e := of[id]
			if e == nil {
				continue
			}
			if e.blocked != nil {
				r.lastBlocked = e.blocked.Subject
			}
			r.Status = e.marks.status()
			if r.Status == schema.StatusBlocked && e.blocked != nil && e.decision > e.blocked.Seq {
				r.Status = schema.StatusRunning
			}
			switch r.Status {
			case schema.StatusRunning:
			case schema.StatusBlocked:
				if b, ok := e.blocked.Value.(*schema.WorkflowBlocked); ok {
					r.Reason = b.Reason
				}
			default:
				// The end of the latest run with that status.
				var last *streams.Event
				var lastRetry uint64
				for _, ev := range e.ends {
					_, rest, _ := streams.ParseSubject(ev.Subject)
					if st, retry, ok := streams.ParseDone(rest); ok && schema.Status(st) == r.Status && (last == nil || retry > lastRetry) {
						last, lastRetry = ev, retry
					}
				}
				if last == nil {
					continue
				}
				r.lastDone = last.Subject
				if f, ok := last.Value.(*schema.WorkflowFinished); ok {
					r.Reason = f.Reason
					if r.Reason == "" && r.Status != schema.StatusCompleted {
						r.Reason = f.Error
					}
				}
			}
		}
	}
	return nil
}

// timesOfRows fills in each row's last update and, with starts, its type
// and start time: the direct gets of each workflow's last event (and
// start), 32 at a time.
func timesOfRows(ctx context.Context, h *streams.History, rows []*Summary, starts bool) error {
	byID := rowsByID(rows)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, 32)
	)
	fail := func(err error) {
		mu.Lock()
		first = errors.Join(first, err)
		mu.Unlock()
	}
	for id, rs := range byID {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			last, err := h.Last(ctx, streams.Tree(id))
			if err != nil {
				fail(err)
				return
			}
			var start *streams.Event
			if starts {
				if start, err = h.Last(ctx, streams.StartSubject(id)); err != nil {
					fail(err)
					return
				}
			}
			for _, r := range rs {
				if last != nil {
					r.UpdatedAt = last.Time
				}
				if start != nil {
					r.StartedAt = start.Time
					if st, ok := start.Value.(*schema.WorkflowStarted); ok {
						r.Type = st.Type
					}
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// finalStatuses are the statuses Counts reads from the index's counts:
// a workflow that reaches one never leaves it. A workflow that ended with
// a status this version does not know is counted by none of them, and
// not running.
var finalStatuses = []schema.Status{schema.StatusCompleted, schema.StatusCompensated, schema.StatusFailed,
	schema.StatusCancelled, schema.StatusTerminated, schema.StatusResolved}

// Counts returns how many workflows are in each status: running, blocked
// and each final status. The starts and the final statuses a workflow
// never leaves are the server's count of the messages on a filter,
// answered from its subject index without reading them: the start events
// of the history stream, and each status's end events in the index
// stream, whose subjects put the status first. Manual and blocked, which
// an operator's verb or a later event can move a workflow out of, read
// their index events and check each workflow's subjects (countNow): few,
// unless a code change blocked many workflows. Running is the rest. The
// index follows the history by milliseconds: a workflow that just ended
// may be counted running.
func Counts(ctx context.Context, js jetstream.JetStream) (map[schema.Status]int, error) {
	h := streams.NewHistory(js.Conn(), js)
	out := map[schema.Status]int{}
	starts, err := h.Count(ctx, streams.StartFilter)
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	// The ends of statuses this version does not know (a newer engine's)
	// are one per workflow: the ends of every status, less the known ones.
	ended, err := h.CountOn(ctx, streams.IndexStream, streams.IndexDoneFilter(""))
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	unknown := int(ended)
	for _, st := range append(finalStatuses, schema.StatusManual) {
		n, err := h.CountOn(ctx, streams.IndexStream, streams.IndexDoneFilter(string(st)))
		if err != nil {
			return nil, fmt.Errorf("count: %w", err)
		}
		unknown -= int(n)
		if st != schema.StatusManual {
			out[st] = int(n)
		}
	}
	// Manual is the one final status a workflow leaves (an operator's
	// retry or resolve): its ends are checked one workflow at a time.
	manual, err := countNow(ctx, h, streams.IndexDoneFilter(string(schema.StatusManual)), schema.StatusManual)
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	out[schema.StatusManual] = manual
	blocked, err := countNow(ctx, h, streams.IndexBlockedSubject, schema.StatusBlocked)
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	out[schema.StatusBlocked] = blocked
	final := max(unknown, 0)
	for _, n := range out {
		final += n
	}
	out[schema.StatusRunning] = max(int(starts)-final, 0)
	return out, nil
}

// countNow counts the workflows of the index events on subject whose
// status, read from their subjects, is status now: the manual ends (a
// manual workflow leaves the queue when an operator retries or resolves
// it) and the blocked events (a blocked one is resumed, resolved or ends).
// It reads every such event ever recorded, a page of 1,000 and one
// multi_last at a time: both queues are meant to stay short.
func countNow(ctx context.Context, h *streams.History, subject string, status schema.Status) (int, error) {
	seen := map[string]bool{}
	n := 0
	var from uint64
	for {
		evs, end, err := h.Scan(ctx, streams.IndexStream, subject, from, time.Time{}, 1000)
		if err != nil {
			return 0, err
		}
		var rows []*Summary
		for _, ev := range evs {
			if id, _, ok := streams.ParseSubject(ev.Origin); ok && !seen[id] {
				seen[id] = true
				rows = append(rows, &Summary{ID: id})
			}
		}
		if err := statusOfRows(ctx, h, rows); err != nil {
			return 0, err
		}
		for _, r := range rows {
			if r.Status == status {
				n++
			}
		}
		if len(evs) == 0 || end {
			return n, nil
		}
		from = evs[len(evs)-1].Seq + 1
	}
}

// QueueDepth returns how many workflows are in the manual queue and how
// many are blocked now: the two counts an operator is alerted on
// (internal/metrics polls it), read as Counts reads them.
func QueueDepth(ctx context.Context, js jetstream.JetStream) (manual, blocked int, err error) {
	h := streams.NewHistory(js.Conn(), js)
	if manual, err = countNow(ctx, h, streams.IndexDoneFilter(string(schema.StatusManual)), schema.StatusManual); err != nil {
		return 0, 0, fmt.Errorf("manual queue: %w", err)
	}
	if blocked, err = countNow(ctx, h, streams.IndexBlockedSubject, schema.StatusBlocked); err != nil {
		return 0, 0, fmt.Errorf("blocked workflows: %w", err)
	}
	return manual, blocked, nil
}
