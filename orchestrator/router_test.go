package orchestrator

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/streams"
)

// A flood of signals to one workflow does not hold up the signals of
// another: the router takes each workflow's signals on a loop of its own,
// so a signal sent after 3,000 others to a flooded workflow is routed long
// before they are. (Routed 64 at a time in arrival order, it waited for
// all of them: the flood's signals were all routed by the time the other
// workflow received its own.)
func TestSignalFloodDoesNotHoldUpOtherWorkflows(t *testing.T) {
	env := natstest.RunJetStream(t)
	reg := workflow.NewRegistry()
	workflow.Register(reg, "waiter", func(ctx workflow.Context, in string) (string, error) {
		workflow.ReceiveSignal(ctx, "go")
		return in, nil
	})
	o := runOrchestrator(t, env, reg, 4)
	ctx := context.Background()
	for _, id := range []string{"flooded", "other"} {
		if _, err := Start(ctx, env.JS, "waiter", id, "x", "test"); err != nil {
			t.Fatal(err)
		}
	}
	const flood = 3000
	for i := range flood {
		if _, err := env.JS.PublishAsync(streams.SignalSubject("noise", "flooded"), []byte(`{"n":`+strconv.Itoa(i)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	<-env.JS.PublishAsyncComplete()
	if _, err := env.JS.Publish(ctx, streams.SignalSubject("go", "other"), nil); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 2*time.Minute, func() bool { return finished(t, o, "other") }, "the other workflow did not finish")

	// Routed so far: recorded in the flooded history, or refused by its cap.
	recorded, err := o.hist.Count(ctx, streams.SignalFilterOf("flooded"))
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := env.JS.Stream(ctx, streams.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(streams.SignalDeadLetterFilter))
	if err != nil {
		t.Fatal(err)
	}
	refused := uint64(len(info.State.Subjects))
	// Routed first in stream order, the other workflow's signal would
	// wait for all of the flood; it waits for some of it (the batches
	// already fetched), how many depends on the machine's load.
	routed := recorded + refused
	t.Logf("%d of the flood's %d signals were routed before the other workflow's one signal", routed, flood)
	if routed >= flood*9/10 {
		t.Fatalf("%d of the flood's %d signals were routed before the other workflow's one signal", routed, flood)
	}
}
