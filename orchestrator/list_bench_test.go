package orchestrator

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// BenchmarkListPage measures a page of `jetflow list` and Counts on a
// history stream of JETFLOW_LIST_WORKFLOWS workflows (default 100,000),
// written straight into the stream: 90% completed, 1 in 1,000 manual,
// 1 in 2,000 blocked, the rest running, two types.
//
//	JETFLOW_LIST_WORKFLOWS=1000000 go test -run '^$' -bench BenchmarkListPage -benchtime 20x -timeout 40m ./orchestrator/
//
// List, the unpaged listing ListPage replaces, is measured too up to
// 200,000 workflows, or beyond with JETFLOW_LIST_BEFORE=1.
func BenchmarkListPage(b *testing.B) {
	n := 100_000
	if v := os.Getenv("JETFLOW_LIST_WORKFLOWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			b.Fatalf("JETFLOW_LIST_WORKFLOWS %q: want a number of at least 1000", v)
		}
	}
	env := natstest.RunJetStream(b)
	ctx := context.Background()
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		b.Fatal(err)
	}
	wfs := make([]synthetic, n)
	for i := range wfs {
		w := synthetic{id: fmt.Sprintf("o-%07d", i), wfType: "order.fulfillment"}
		if i%2 == 1 {
			w.wfType = "refund"
		}
		switch {
		case i%1000 == 7:
			w.end, w.reason = schema.StatusManual, "refund failed after 10 attempts"
		case i%2000 == 3:
			w.blocked = 1
		case i%10 == 0:
		default:
			w.end = schema.StatusCompleted
		}
		wfs[i] = w
	}
	began := time.Now()
	writeHistories(b, env.JS, wfs)
	b.Logf("%d workflows written in %v", n, time.Since(began).Round(time.Millisecond))

	first, err := ListPage(ctx, env.JS, ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	middle := ListOptions{Cursor: first.Next}
	// A cursor halfway: the start of workflow n/2.
	if ev, err := streams.NewHistory(env.NC, env.JS).Last(ctx, streams.StartSubject(wfs[n/2].id)); err == nil && ev != nil {
		middle.Cursor = "s" + strconv.FormatUint(ev.Seq, 10)
	}
	for _, c := range []struct {
		name string
		opts ListOptions
	}{
		{"first page of 100", ListOptions{}},
		{"page of 100 halfway", middle},
		{"manual queue, 100", ListOptions{Status: schema.StatusManual}},
		{"running, 100", ListOptions{Status: schema.StatusRunning}},
		{"type refund, 100", ListOptions{Type: "refund"}},
		{"page of 1000", ListOptions{Limit: 1000}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				p, err := ListPage(ctx, env.JS, c.opts)
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Workflows) == 0 {
					b.Fatal("empty page")
				}
			}
		})
	}
	b.Run("counts", func(b *testing.B) {
		for b.Loop() {
			if _, err := Counts(ctx, env.JS); err != nil {
				b.Fatal(err)
			}
		}
	})
	if n > 200_000 && os.Getenv("JETFLOW_LIST_BEFORE") == "" {
		return // List reads every start subject: minutes at this size
	}
	b.Run("List, every workflow (before)", func(b *testing.B) {
		for b.Loop() {
			if _, err := List(ctx, env.JS, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}
