package orchestrator

import (
	"context"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Signals published one after the other to one workflow, each acked, are
// received by the workflow in the order the signals stream stored them.
// (Before, the router's consumer could hand a workflow's signals to the
// routing loops in two batches taken by two loops at once, and 20 signals
// were received as [13 17 18 3 1 0 2 ...].)
func TestSignalsAreReceivedInStreamOrder(t *testing.T) {
	env := natstest.RunJetStream(t)
	const n = 20
	reg := workflow.NewRegistry()
	workflow.Register(reg, "collector", func(ctx workflow.Context, in string) ([]int, error) {
		var got []int
		for range n {
			var v struct {
				N int `msgpack:"n"`
			}
			if err := workflow.ReceiveSignal(ctx, "item").Decode(&v); err != nil {
				return nil, err
			}
			got = append(got, v.N)
		}
		return got, nil
	})
	o := runOrchestrator(t, env, reg, 4)
	runOrchestrator(t, env, reg, 4)
	ctx := context.Background()
	for w := range 3 {
		id := "ordered-" + strconv.Itoa(w)
		if _, err := Start(ctx, env.JS, "collector", id, "x", "test"); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if _, err := env.JS.Publish(ctx, streams.SignalSubject("item", id), []byte(`{"n":`+strconv.Itoa(i)+`}`)); err != nil {
				t.Fatal(err)
			}
		}
		natstest.Eventually(t, time.Minute, func() bool { return finished(t, o, id) }, "%s did not finish", id)
		done, err := o.hist.Last(ctx, streams.DoneFilterOf(id))
		if err != nil {
			t.Fatal(err)
		}
		f := done.Value.(*schema.WorkflowFinished)
		var got []int
		if err := schema.DecodeRaw(f.Output, &got); err != nil {
			t.Fatalf("%s: %v (status %s, reason %s)", id, err, f.Status, f.Reason)
		}
		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s received %v, want %v", id, got, want)
		}
	}
}
