package workflow

import (
	"strconv"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

// benchSteps is the number of sequential steps of the benchmark workflow:
// start + 9 × (command, result) + done = a 20-event history.
const benchSteps = 9

type benchInput struct {
	OrderID string `msgpack:"order_id"`
	Amount  int64  `msgpack:"amount"`
}

type benchOutput struct {
	Ref string `msgpack:"ref"`
}

var benchActivities = func() []Activity {
	out := make([]Activity, benchSteps)
	for i := range out {
		out[i] = Activity{Service: "svc" + strconv.Itoa(i%4), Action: "step" + strconv.Itoa(i)}
	}
	return out
}()

func benchFlow(ctx Context, in benchInput) (string, error) {
	ref := in.OrderID
	for _, a := range benchActivities {
		out, err := Execute[benchOutput](ctx, a, benchInput{OrderID: ref, Amount: in.Amount})
		if err != nil {
			return "", err
		}
		ref = out.Ref
	}
	return ref, nil
}

// benchHistory returns the 20-event history of a finished benchFlow.
func benchHistory(b *testing.B) []Event {
	b.Helper()
	raw := func(v any) schema.Raw {
		r, err := schema.EncodeRaw(v)
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	t0 := time.Unix(1700000000, 0)
	evs := []Event{{Seq: 1, Time: t0, Value: &schema.WorkflowStarted{WorkflowID: "w1", Type: "bench", Input: raw(benchInput{OrderID: "o-1", Amount: 12999})}}}
	add := func(v schema.Kinded) {
		evs = append(evs, Event{Seq: uint64(len(evs) + 1), Time: t0.Add(time.Duration(len(evs)) * time.Millisecond), Value: v})
	}
	for i, a := range benchActivities {
		id := i + 1
		add(&schema.Command{ID: id, Service: a.Service, Action: a.Action, Input: raw(benchInput{OrderID: "o-1", Amount: 12999})})
		add(&schema.Result{CommandID: id, Service: a.Service, Action: a.Action, Output: raw(benchOutput{Ref: "r-" + strconv.Itoa(id)}), Attempts: 1})
	}
	add(&schema.WorkflowFinished{Status: schema.StatusCompleted, Output: raw("r-9")})
	return evs
}

// BenchmarkReplay20 replays a 20-event history from memory: the CPU cost of
// one decision of a workflow nine steps in, without any I/O.
func BenchmarkReplay20(b *testing.B) {
	reg := NewRegistry()
	Register(reg, "bench", benchFlow)
	fn, _ := reg.Lookup("bench")
	hist := benchHistory(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out := Replay(fn, "w1", hist, nil)
		if out.Finished == nil || out.Finished.Status != schema.StatusCompleted {
			b.Fatalf("outcome %+v", out)
		}
	}
}

// BenchmarkReplayFirstStep replays a history of the start event alone: the
// fixed cost of a replay (scheduler, coroutine, input decoding).
func BenchmarkReplayFirstStep(b *testing.B) {
	reg := NewRegistry()
	Register(reg, "bench", benchFlow)
	fn, _ := reg.Lookup("bench")
	hist := benchHistory(b)[:1]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out := Replay(fn, "w1", hist, nil)
		if len(out.Decisions) != 1 {
			b.Fatalf("outcome %+v", out)
		}
	}
}
