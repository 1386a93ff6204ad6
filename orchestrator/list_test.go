package orchestrator

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// synthetic is one workflow written straight into the history stream.
type synthetic struct {
	id, wfType string
	blocked    int           // blocked events before any end
	end        schema.Status // "" while running
	reason     string
}

// writeHistories writes the start events of wfs in their order, then
// their blocked and end events, with async publishes acknowledged before
// it returns.
func writeHistories(tb testing.TB, js jetstream.JetStream, wfs []synthetic) {
	tb.Helper()
	var flush func()
	sent := 0
	pub := func(subject string, v schema.Kinded) {
		m, err := streams.NewMsg(subject, v)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(m); err != nil {
			tb.Fatal(err)
		}
		if sent++; sent%1000 == 0 {
			flush()
		}
	}
	flush = func() {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(5 * time.Minute):
			tb.Fatal("async publishes not acknowledged")
		}
	}
	for _, w := range wfs {
		pub(streams.StartSubject(w.id), &schema.WorkflowStarted{WorkflowID: w.id, Type: w.wfType, Source: "test"})
	}
	flush()
	for _, w := range wfs {
		for b := range w.blocked {
			pub(streams.BlockedSubject(w.id, uint64(b+1)), &schema.WorkflowBlocked{Reason: fmt.Sprintf("%s blocked %d", w.id, b+1)})
		}
		if w.end != "" {
			pub(streams.DoneSubject(w.id, string(w.end)), &schema.WorkflowFinished{Status: w.end, Reason: w.reason})
		}
	}
	flush()
	// The index stream sources the end and blocked events: wait until it
	// holds them all.
	var want uint64
	for _, w := range wfs {
		want += uint64(w.blocked)
		if w.end != "" {
			want++
		}
	}
	var got uint64
	natstest.Eventually(tb, 10*time.Minute, func() bool {
		ix, err := js.Stream(context.Background(), streams.IndexStream)
		if err != nil {
			return false
		}
		got = ix.CachedInfo().State.Msgs
		return got == want
	}, "the index holds %d of the %d end and blocked events", got, want)
}

// listAll follows the cursor to the end and returns the IDs in order and
// the number of pages.
func listAll(t *testing.T, js jetstream.JetStream, opts ListOptions) ([]Summary, int) {
	t.Helper()
	var out []Summary
	for pages := 1; ; pages++ {
		p, err := ListPage(context.Background(), js, opts)
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		out = append(out, p.Workflows...)
		if p.Next == "" {
			return out, pages
		}
		if pages > 1000 {
			t.Fatal("cursor never ends")
		}
		opts.Cursor = p.Next
	}
}

func ids(s []Summary) []string {
	out := make([]string, len(s))
	for i, w := range s {
		out[i] = w.ID
	}
	return out
}

// ListPage pages workflows in start order (bulk-2 before bulk-10, not
// text order), with type, times, status and reason; filters by status
// (a final status, an unknown final status, blocked, running), type and
// start time; and its cursor walks every workflow once. Counts agrees.
func TestListPageSortsFiltersAndPages(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	const n = 250
	var wfs []synthetic
	var all, manual, running, blocked, typeBCompleted, expired []string
	for i := 1; i <= n; i++ {
		w := synthetic{id: fmt.Sprintf("bulk-%d", i), wfType: "a"}
		if i%2 == 0 {
			w.wfType = "b"
		}
		switch {
		case i%7 == 0:
			w.end, w.reason = schema.StatusManual, fmt.Sprintf("refund of bulk-%d failed", i)
			manual = append(manual, w.id)
		case i%11 == 0:
			w.blocked = 2 // listed once
			blocked = append(blocked, w.id)
		case i%13 == 0:
			w.blocked, w.end = 1, schema.StatusCompleted // blocked, then resumed and completed
		case i%17 == 0:
			w.end = "expired" // a status this package does not know
			expired = append(expired, w.id)
		case i%3 == 0:
			running = append(running, w.id)
		default:
			w.end = schema.StatusCompleted
		}
		if w.end == schema.StatusCompleted && w.wfType == "b" {
			typeBCompleted = append(typeBCompleted, w.id)
		}
		all = append(all, w.id)
		wfs = append(wfs, w)
	}
	writeHistories(t, env.JS, wfs)

	got, pages := listAll(t, env.JS, ListOptions{Limit: 100})
	if !reflect.DeepEqual(ids(got), all) || pages != 3 {
		t.Fatalf("all in %d pages: %v\nwant start order %v", pages, ids(got), all)
	}
	for _, w := range got {
		if w.Type == "" || w.StartedAt.IsZero() || w.UpdatedAt.Before(w.StartedAt) || w.Status == "" {
			t.Fatalf("row without its columns: %+v", w)
		}
	}
	if w := got[6]; w.ID != "bulk-7" || w.Status != schema.StatusManual || w.Reason != "refund of bulk-7 failed" {
		t.Fatalf("manual row: %+v", w)
	}
	if w := got[10]; w.ID != "bulk-11" || w.Status != schema.StatusBlocked || w.Reason != "bulk-11 blocked 2" {
		t.Fatalf("blocked row: %+v", w)
	}

	for _, c := range []struct {
		name string
		opts ListOptions
		want []string
	}{
		{"manual queue", ListOptions{Status: schema.StatusManual, Limit: 7}, manual},
		{"a final status the engine adds later", ListOptions{Status: "expired"}, expired},
		{"blocked, each once, not the resumed ones", ListOptions{Status: schema.StatusBlocked, Limit: 5}, blocked},
		{"running", ListOptions{Status: schema.StatusRunning, Limit: 9}, running},
		{"type and status", ListOptions{Status: schema.StatusCompleted, Type: "b", Limit: 10}, typeBCompleted},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, _ := listAll(t, env.JS, c.opts)
			if !reflect.DeepEqual(ids(got), c.want) {
				t.Fatalf("got %v\nwant %v", ids(got), c.want)
			}
			for _, w := range got {
				if c.opts.Status != "" && w.Status != c.opts.Status {
					t.Fatalf("row %+v in a list of %s", w, c.opts.Status)
				}
			}
		})
	}

	t.Run("started between since and until", func(t *testing.T) {
		since, until := got[49].StartedAt, got[59].StartedAt
		var want []string
		for _, w := range got {
			if !w.StartedAt.Before(since) && !w.StartedAt.After(until) {
				want = append(want, w.ID)
			}
		}
		in, _ := listAll(t, env.JS, ListOptions{Since: since, Until: until, Limit: 4})
		if !reflect.DeepEqual(ids(in), want) || len(want) < 11 {
			t.Fatalf("got %v, want %v", ids(in), want)
		}
	})

	t.Run("bad options name the value", func(t *testing.T) {
		for _, c := range []struct {
			opts ListOptions
			want string
		}{
			{ListOptions{Limit: -1}, "limit -1"},
			{ListOptions{Status: "a.b"}, `status "a.b"`},
			{ListOptions{Status: schema.StatusManual, Cursor: "s12"}, `cursor "s12"`},
			{ListOptions{Cursor: "sx"}, `cursor "sx"`},
		} {
			if _, err := ListPage(ctx, env.JS, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%+v: %v, want an error with %q", c.opts, err, c.want)
			}
		}
	})

	counts, err := Counts(ctx, env.JS)
	if err != nil {
		t.Fatal(err)
	}
	completed := n - len(manual) - len(blocked) - len(running) - len(expired)
	want := map[schema.Status]int{
		schema.StatusRunning: len(running), schema.StatusBlocked: len(blocked),
		schema.StatusManual: len(manual), schema.StatusCompleted: completed, schema.StatusCompensated: 0,
		schema.StatusFailed: 0, schema.StatusCancelled: 0, schema.StatusTerminated: 0, schema.StatusResolved: 0,
	}
	if !reflect.DeepEqual(counts, want) {
		t.Fatalf("counts %v, want %v", counts, want)
	}
}
