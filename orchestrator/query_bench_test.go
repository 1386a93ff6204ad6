package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/streams"
)

// BenchmarkQuery is the round trip of one query to a waiting workflow whose
// history holds 1,000 markers: request, history read, replay, answer.
//
//	go test -run '^$' -bench BenchmarkQuery -benchtime 200x ./orchestrator/
func BenchmarkQuery(b *testing.B) {
	env := natstest.RunJetStream(b)
	reg := workflow.NewRegistry()
	workflow.Register(reg, "markers", func(ctx workflow.Context, n int) (int, error) {
		sum := 0
		_ = workflow.SetQueryHandler(ctx, "sum", func(struct{}) (int, error) { return sum, nil })
		for i := 0; i < n; i++ {
			sum += workflow.SideEffect(ctx, func() int { return 1 })
		}
		workflow.ReceiveSignal(ctx, "done")
		return sum, nil
	})
	o, err := orchestrator.New(orchestrator.Config{NC: env.NC, JS: env.JS, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = o.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	if _, err := orchestrator.Start(ctx, env.JS, "markers", "m-1", 1000, "bench"); err != nil {
		b.Fatal(err)
	}
	hist := streams.NewHistory(env.NC, env.JS)
	natstest.Eventually(b, time.Minute, func() bool {
		evs, err := hist.Read(ctx, "m-1", 0)
		return err == nil && len(evs) == 1001
	}, "history of 1,001 events not written")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := orchestrator.Query(ctx, env.NC, "m-1", "sum", nil)
		if err != nil || string(out) != "1000" {
			b.Fatalf("sum %s, %v", out, err)
		}
	}
}
