package bench

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// The 20-event workflow: start + 9 × (command, result) + done.
const steps = 9

type stepIn struct {
	OrderID string `msgpack:"order_id"`
	Amount  int64  `msgpack:"amount"`
}

type stepOut struct {
	Ref string `msgpack:"ref"`
}

func stepActivity(i int) workflow.Activity {
	return workflow.Activity{Service: "svc" + strconv.Itoa(i%4), Action: "step" + strconv.Itoa(i)}
}

func nineSteps(ctx workflow.Context, in stepIn) (string, error) {
	ref := in.OrderID
	for i := 0; i < steps; i++ {
		out, err := workflow.Execute[stepOut](ctx, stepActivity(i), stepIn{OrderID: ref, Amount: in.Amount})
		if err != nil {
			return "", err
		}
		ref = out.Ref
	}
	return ref, nil
}

func nineStepsFunc() workflow.Func {
	reg := workflow.NewRegistry()
	workflow.Register(reg, "nine", nineSteps)
	fn, _ := reg.Lookup("nine")
	return fn
}

type benchEnv struct {
	srv *streams.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func startBenchServer(b *testing.B) *benchEnv {
	b.Helper()
	srv, err := streams.StartServer(streams.ServerConfig{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	nc, err := srv.Connect()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, streams.Topology{}); err != nil {
		b.Fatal(err)
	}
	return &benchEnv{srv: srv, nc: nc, js: js}
}

// writeNineSteps writes the 20-event history of a finished nineSteps
// workflow id, each message fenced as the engine writes it.
func writeNineSteps(b *testing.B, h *streams.History, id string) {
	b.Helper()
	ctx := context.Background()
	raw := func(v any) schema.Raw {
		r, err := schema.EncodeRaw(v)
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	var last uint64
	n := 0
	put := func(subject string, v schema.Kinded) {
		m, err := streams.NewMsg(subject, v)
		if err != nil {
			b.Fatal(err)
		}
		m.Header.Set(jetstream.MsgIDHeader, id+":"+strconv.Itoa(n))
		n++
		if last, _, err = h.Append(ctx, id, last, []*nats.Msg{m}); err != nil {
			b.Fatal(err)
		}
	}
	put(streams.StartSubject(id), &schema.WorkflowStarted{WorkflowID: id, Type: "nine", Input: raw(stepIn{OrderID: "o-1", Amount: 12999})})
	for i := 0; i < steps; i++ {
		a, cid := stepActivity(i), i+1
		put(streams.CommandSubject(id, cid, a.Service, a.Action), &schema.Command{
			WorkflowID: id, ID: cid, Service: a.Service, Action: a.Action, Input: raw(stepIn{OrderID: "o-1", Amount: 12999}),
			IdempotencyKey: id + "." + strconv.Itoa(cid), ReplyTo: streams.ResultSubject(id, cid, a.Service, a.Action),
		})
		put(streams.ResultSubject(id, cid, a.Service, a.Action), &schema.Result{
			WorkflowID: id, CommandID: cid, Service: a.Service, Action: a.Action, Output: raw(stepOut{Ref: "r-" + strconv.Itoa(cid)}), Attempts: 1,
		})
	}
	put(streams.DoneSubject(id, string(schema.StatusCompleted)), &schema.WorkflowFinished{Status: schema.StatusCompleted, Output: raw("r-9")})
}

func toReplay(evs []streams.Event) []workflow.Event {
	out := make([]workflow.Event, 0, len(evs))
	for _, ev := range evs {
		if ev.DecodeErr == nil {
			out = append(out, workflow.Event{Seq: ev.Seq, Time: ev.Time, Value: ev.Value})
		}
	}
	return out
}

// BenchmarkReplayFromStream reads a 20-event history with one direct-get
// batch and replays it: an orchestrator decision for a workflow it has not
// cached, without the append.
func BenchmarkReplayFromStream(b *testing.B) {
	env := startBenchServer(b)
	h := streams.NewHistory(env.nc, env.js)
	writeNineSteps(b, h, "w20")
	fn := nineStepsFunc()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		evs, err := h.Read(ctx, "w20", 0)
		if err != nil || len(evs) != 20 {
			b.Fatalf("read %d events: %v", len(evs), err)
		}
		if out := workflow.Replay(fn, "w20", toReplay(evs), nil); out.Finished == nil {
			b.Fatalf("outcome %+v", out)
		}
	}
}

// BenchmarkReplayFromMemory replays the same 20 events, already read.
func BenchmarkReplayFromMemory(b *testing.B) {
	env := startBenchServer(b)
	h := streams.NewHistory(env.nc, env.js)
	writeNineSteps(b, h, "w20")
	evs, err := h.Read(context.Background(), "w20", 0)
	if err != nil || len(evs) != 20 {
		b.Fatalf("read %d events: %v", len(evs), err)
	}
	hist := toReplay(evs)
	fn := nineStepsFunc()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if out := workflow.Replay(fn, "w20", hist, nil); out.Finished == nil {
			b.Fatalf("outcome %+v", out)
		}
	}
}

// BenchmarkReplayReferenceOrder replays the history of a completed
// reference order, produced by the real orchestrator and participants.
func BenchmarkReplayReferenceOrder(b *testing.B) {
	env := startBenchServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	connect := func(string) (*nats.Conn, jetstream.JetStream, error) { return env.nc, env.js, nil }
	stop, _, err := startEngine(ctx, connect, Config{Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stop() }()
	o, _ := fulfillment.MixedOrder("ref-", 1)
	o.Simulate = nil
	body, _ := json.Marshal(o)
	if _, err := env.js.Publish(ctx, streams.OrderCreated, body); err != nil {
		b.Fatal(err)
	}
	h := streams.NewHistory(env.nc, env.js)
	var evs []streams.Event
	deadline := time.Now().Add(30 * time.Second)
	for {
		if evs, err = h.Read(ctx, o.OrderID, 0); err != nil {
			b.Fatal(err)
		}
		if n := len(evs); n > 0 {
			if f, ok := evs[n-1].Value.(*schema.WorkflowFinished); ok {
				if f.Status != schema.StatusCompleted {
					b.Fatalf("reference order %s", f.Status)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("reference order not finished within 30s (%d events)", len(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	hist := toReplay(evs)
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	fn, _ := reg.Lookup(fulfillment.WorkflowType)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if out := workflow.Replay(fn, o.OrderID, hist, nil); out.Finished == nil {
			b.Fatalf("outcome %+v", out)
		}
	}
	b.ReportMetric(float64(len(hist)), "events")
}
