package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// exportPage is how many archive records ExportArchived reads at a time.
const exportPage = 256

// ExportArchived reads archived workflows in the order they were archived
// (from the first archived at or after q.Since, or after q.Cursor; before
// q.Until; at most q.Limit of them, 0: every one) and hands emit the
// description of every run of each, in run order, as `jetflow show ID
// --run N --output json` prints it from the archive: the export that keeps
// histories past --archive-retention, and that `jetflow replay` reads.
//
// It returns the cursor after the last workflow read, to go on from with
// q.Cursor, or 0 when the archive holds no more. A record that cannot be
// read stops it, with an error naming the record and the cursor that skips
// it; emit's error stops it as is.
func ExportArchived(ctx context.Context, js jetstream.JetStream, q ArchivedQuery, emit func(*Description) error) (uint64, error) {
	h := historyOf(js)
	after, n := q.Cursor, 0
	for {
		want := exportPage
		if q.Limit > 0 {
			if want = min(want, q.Limit-n); want <= 0 {
				return after, nil
			}
		}
		recs, next, err := h.ArchivedRecords(ctx, q.Since, q.Until, after, want)
		if err != nil {
			return after, err
		}
		for _, r := range recs {
			if err := exportRecord(ctx, h, r, emit); err != nil {
				var bad *badRecordError
				if errors.As(err, &bad) {
					return after, fmt.Errorf("archive record %d (workflow %s): %w; --cursor %d goes on after it", r.Seq, r.Record.WorkflowID, bad.err, r.Seq)
				}
				return after, err
			}
			after = r.Seq
			n++
		}
		if next == 0 {
			return 0, nil
		}
	}
}

// badRecordError is an archive record that cannot be described.
type badRecordError struct{ err error }

func (e *badRecordError) Error() string { return e.err.Error() }

// exportRecord hands emit the description of every run in record r.
func exportRecord(ctx context.Context, h *streams.History, r streams.ArchivedRecord, emit func(*Description) error) error {
	rec := r.Record
	all, err := h.ArchivedEvents(ctx, rec)
	if err != nil {
		return &badRecordError{err}
	}
	trees := map[int][]streams.Event{}
	var runs []int
	for _, ev := range all {
		tree, _, ok := streams.ParseSubject(ev.Subject)
		if !ok {
			continue
		}
		wid, run := streams.ParseRunID(tree)
		if wid != rec.WorkflowID || run == 0 { // run pointers, wf.<id>=runs.<n>
			continue
		}
		if _, seen := trees[run]; !seen {
			runs = append(runs, run)
		}
		trees[run] = append(trees[run], ev)
	}
	if len(runs) == 0 {
		return &badRecordError{errors.New("no event of its workflow")}
	}
	sort.Ints(runs)
	for _, run := range runs {
		d, err := describe(ctx, h, rec.WorkflowID, streams.RunID(rec.WorkflowID, run), rec, trees[run], all)
		if err != nil {
			return &badRecordError{err}
		}
		if err := emit(d); err != nil {
			return err
		}
	}
	return nil
}
