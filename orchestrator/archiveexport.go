package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// exportPage is how many archive records ExportArchived reads at a time.
const exportPage = 256

// ExportArchived reads archived workflows in the order they were archived
// (from the first archived at or after q.Since, or after q.Cursor; before
// q.Until; at most q.Limit of them, 0: every one) and hands emit the
// descriptions of every run of each, in run order, as `jetflow show ID
// --run N --output json` prints them from the archive: the export that
// keeps histories past --archive-retention, and that `jetflow replay`
// reads. A workflow's runs are handed over together, once all are read.
//
// It returns the cursor after the last workflow handed over, to go on from
// with q.Cursor (also with an error), or 0 when the archive holds no more.
// A record that cannot be read (it does not decode, a part is missing
// because the record is ageing out, it holds no event of its workflow)
// stops it with a *streams.BadRecordError, whose Seq is the cursor that
// skips it; emit's error stops it as is.
func ExportArchived(ctx context.Context, js jetstream.JetStream, q ArchivedQuery, emit func([]*Description) error) (uint64, error) {
	h := historyOf(js)
	after, n := q.Cursor, 0
	for {
		want := exportPage
		if q.Limit > 0 {
			if want = min(want, q.Limit-n); want <= 0 {
				return after, nil
			}
		}
		recs, next, rerr := h.ArchivedRecords(ctx, q.Since, q.Until, after, want)
		for _, r := range recs {
			ds, err := describeRecord(ctx, h, r.Record)
			if err != nil {
				return after, &streams.BadRecordError{Seq: r.Seq, Err: fmt.Errorf("workflow %s: %w", r.Record.WorkflowID, err)}
			}
			if err := emit(ds); err != nil {
				return after, err
			}
			after = r.Seq
			n++
		}
		if rerr != nil {
			return after, rerr
		}
		if next == 0 {
			return 0, nil
		}
	}
}

// describeRecord describes every run in archive record rec, in run order.
func describeRecord(ctx context.Context, h *streams.History, rec *schema.ArchivedHistory) ([]*Description, error) {
	all, err := h.ArchivedEvents(ctx, rec)
	if err != nil {
		return nil, err
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
		return nil, errors.New("no event of its workflow")
	}
	sort.Ints(runs)
	ds := make([]*Description, 0, len(runs))
	for _, run := range runs {
		d, err := describe(ctx, h, rec.WorkflowID, streams.RunID(rec.WorkflowID, run), rec, trees[run], all)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}
