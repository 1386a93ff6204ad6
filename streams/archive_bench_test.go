package streams_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// BenchmarkArchiveMemoryPerWorkflow measures what an archived workflow
// costs the server's memory: b.N archive records of a 10-event history
// are written to JETFLOW_ARCHIVE, and the Go heap in use after a
// collection (the embedded server's included) is compared before and
// after. Reported as heap-bytes/workflow.
//
//	go test -run '^$' -bench ArchiveMemory -benchtime 100000x ./streams/
func BenchmarkArchiveMemoryPerWorkflow(b *testing.B) {
	env := natstest.RunJetStream(b)
	ctx := context.Background()
	h := streams.NewHistory(env.NC, env.JS)
	evs := make([]schema.ArchivedEvent, 10)
	for i := range evs {
		evs[i] = schema.ArchivedEvent{Seq: uint64(i + 1), Subject: "wf.x.cmd.1.payment.charge", Kind: string(schema.KindCommand), Body: make([]byte, 90)}
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("o-%09d", i)
		rec := &schema.ArchivedHistory{WorkflowID: id, Type: "order.fulfillment", Status: schema.StatusCompleted,
			Ended: time.Now(), ArchivedAt: time.Now(), StartSeq: uint64(i + 1), LastSeq: uint64(i + 10), Events: evs}
		if _, _, err := h.WriteArchive(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	after := heap()
	b.ReportMetric(float64(int64(after)-int64(before))/float64(b.N), "heap-bytes/workflow")
}
