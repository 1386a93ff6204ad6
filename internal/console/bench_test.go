package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/console"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// BenchmarkListPage serves the completed workflows' first page of the
// workflow list, with its counts, over JETFLOW_BENCH_WORKFLOWS workflows
// (default 100,000; half completed). The console keeps nothing between
// pages, so the first page (ms/first-page) costs what any page does
// (ns/op): orchestrator.Counts and one orchestrator.ListPage.
//
//	JETFLOW_BENCH_WORKFLOWS=100000 go test -run '^$' -bench ListPage -benchtime 20x ./internal/console/
func BenchmarkListPage(b *testing.B) {
	n := 100_000
	if v := os.Getenv("JETFLOW_BENCH_WORKFLOWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("JETFLOW_BENCH_WORKFLOWS %q: want a positive number", v)
		}
	}
	env := natstest.RunJetStream(b)
	ctx := context.Background()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("bench-%07d", i)
		m, err := streams.NewMsg(streams.StartSubject(id), &schema.WorkflowStarted{WorkflowID: id, Type: "order.fulfillment"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := env.JS.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			m, err := streams.NewMsg(streams.DoneSubject(id, "completed"), &schema.WorkflowFinished{Status: schema.StatusCompleted})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := env.JS.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
		}
		if i%1000 == 999 {
			<-env.JS.PublishAsyncComplete()
		}
	}
	<-env.JS.PublishAsyncComplete()
	h, err := console.New(console.Config{Backend: console.NewNATSBackend(env.NC, env.JS)})
	if err != nil {
		b.Fatal(err)
	}
	page := func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/workflows?status=completed", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("list: %d %s", rec.Code, rec.Body.String())
		}
	}
	start := time.Now()
	page()
	first := time.Since(start)
	for b.Loop() {
		page()
	}
	b.ReportMetric(float64(first.Milliseconds()), "ms/first-page")
}
