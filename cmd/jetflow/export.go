package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/streams"
)

// exportProgressEvery is how often export reports its progress on stderr.
const exportProgressEvery = 2 * time.Second

// runExport writes archived workflows to stdout, one `show --output json`
// object per line and run, for keeping histories past --archive-retention
// (and replaying them with `jetflow replay --history FILE`).
func runExport(ctx context.Context, args []string) error {
	var c common
	var since, until, cursor string
	var limit int
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	c.register(fs, false)
	fs.StringVar(&since, "since", "", "only workflows archived at or after this time (RFC 3339, or a duration ago such as 24h)")
	fs.StringVar(&until, "until", "", "only workflows archived before this time (RFC 3339, or a duration ago)")
	fs.StringVar(&cursor, "cursor", "", "go on after this cursor, which an earlier export printed")
	fs.IntVar(&limit, "limit", 0, "most workflows to export (0: every one)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errUsage(fs, "unexpected arguments %q", pos)
	}
	if limit < 0 {
		return fmt.Errorf("--limit %d: want 0 (every one) or more", limit)
	}
	now := time.Now()
	var q orchestrator.ArchivedQuery
	if q.Since, err = parseWhen("--since", since, now); err != nil {
		return err
	}
	if q.Until, err = parseWhen("--until", until, now); err != nil {
		return err
	}
	if cursor != "" {
		if q.Cursor, err = strconv.ParseUint(cursor, 10, 64); err != nil || q.Cursor == 0 {
			return fmt.Errorf("--cursor %q: not a cursor of export or list --archived (a positive number)", cursor)
		}
	}
	q.Limit = limit
	nc, js, err := connect(ctx, &c, "jetflow export", natsauth.Operator, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	return export(ctx, os.Stdout, os.Stderr, q, func(emit func([]*orchestrator.Description) error) (uint64, error) {
		return orchestrator.ExportArchived(ctx, js, q, emit)
	})
}

// exportCount is what an export wrote so far.
type exportCount struct {
	workflows, runs int
	bytes           int64
	first, last     time.Time // when the first and last workflow were archived
}

// export writes the workflows read hands over as JSON lines, one per run,
// reports its progress on progress, and ends with where it stopped and the
// cursor to go on from: after a --limit, and after an error too, so an
// interrupted export resumes without a gap or a workflow written twice.
func export(ctx context.Context, out, progress io.Writer, q orchestrator.ArchivedQuery, read func(func([]*orchestrator.Description) error) (uint64, error)) error {
	w := bufio.NewWriterSize(out, 1<<20)
	enc := json.NewEncoder(w)
	var n exportCount
	start, shown := time.Now(), time.Now()
	next, err := read(func(runs []*orchestrator.Description) error {
		if err := ctx.Err(); err != nil {
			return err // stopped: this workflow is not written, and the cursor is before it
		}
		before := w.Buffered()
		for _, d := range runs {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		n.bytes += int64(w.Buffered() - before)
		n.workflows, n.runs = n.workflows+1, n.runs+len(runs)
		if n.first.IsZero() {
			n.first = runs[0].ArchivedAt
		}
		n.last = runs[0].ArchivedAt
		if time.Since(shown) >= exportProgressEvery {
			shown = time.Now()
			fmt.Fprintf(progress, "export: %d workflows (%d runs), %s, archived up to %s, %.0f workflows/s\n",
				n.workflows, n.runs, mib(n.bytes), n.last.Local().Format(time.DateTime), float64(n.workflows)/time.Since(start).Seconds())
		}
		return nil
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	span := "none archived in that span"
	if n.workflows > 0 {
		span = fmt.Sprintf("archived %s to %s", n.first.Local().Format(time.DateTime), n.last.Local().Format(time.DateTime))
	}
	fmt.Fprintf(progress, "export: %d workflows (%d runs), %s, %s\n", n.workflows, n.runs, mib(n.bytes), span)
	var bad *streams.BadRecordError
	switch {
	case errors.As(err, &bad):
		// A read that failed may only have timed out: say how to try it
		// again as well as how to skip it.
		again := "the same command tries it again"
		if next != 0 {
			again = fmt.Sprintf("--cursor %d tries it again", next)
		}
		return fmt.Errorf("%w; %s, --cursor %d skips it (with the same --until)", err, again, bad.Seq)
	case err != nil && next != 0 && next != q.Cursor:
		return fmt.Errorf("%w; what was written ends cleanly: go on with --cursor %d (with the same --until)", err, next)
	case err != nil:
		return err
	case next != 0:
		fmt.Fprintf(progress, "export: stopped at --limit %d; go on with --cursor %d (with the same --until)\n", q.Limit, next)
	default:
		fmt.Fprintln(progress, "export: the last archived workflow of the span was written")
	}
	return nil
}

// mib formats n bytes as MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
