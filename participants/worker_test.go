package participants

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jetflow/internal/natstest"
	"jetflow/schema"
	"jetflow/streams"
)

// fakeMsg is a delivery whose settlement the test inspects.
type fakeMsg struct {
	subject   string
	data      []byte
	hdr       nats.Header
	seq       uint64
	delivered uint64

	mu       sync.Mutex
	acks     int
	naks     []time.Duration // -1 for a plain Nak
	progress int
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}, NumDelivered: m.delivered}, nil
}
func (m *fakeMsg) Data() []byte                    { return m.data }
func (m *fakeMsg) Headers() nats.Header            { return m.hdr }
func (m *fakeMsg) Subject() string                 { return m.subject }
func (m *fakeMsg) Reply() string                   { return "" }
func (m *fakeMsg) Ack() error                      { m.mu.Lock(); m.acks++; m.mu.Unlock(); return nil }
func (m *fakeMsg) DoubleAck(context.Context) error { return m.Ack() }
func (m *fakeMsg) Nak() error                      { return m.NakWithDelay(-1) }
func (m *fakeMsg) NakWithDelay(d time.Duration) error {
	m.mu.Lock()
	m.naks = append(m.naks, d)
	m.mu.Unlock()
	return nil
}
func (m *fakeMsg) InProgress() error                  { m.mu.Lock(); m.progress++; m.mu.Unlock(); return nil }
func (m *fakeMsg) Term() error                        { return errors.New("unexpected Term") }
func (m *fakeMsg) TermWithReason(reason string) error { return errors.New("unexpected Term") }

// settled returns the acks and naks of the delivery.
func (m *fakeMsg) settled() (int, []time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acks, append([]time.Duration(nil), m.naks...)
}

// failingJS fails publishes to subjects containing a marker.
type failingJS struct {
	jetstream.JetStream
	marker atomic.Value // string; "" fails nothing
}

func (f *failingJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if mk, _ := f.marker.Load().(string); mk != "" && strings.Contains(m.Subject, mk) {
		return nil, errors.New("injected publish failure")
	}
	return f.JetStream.PublishMsg(ctx, m, opts...)
}

// racingKV lets the test write to a key between a Get and what follows.
type racingKV struct {
	jetstream.KeyValue
	afterGet func(key string)
}

func (k racingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	e, err := k.KeyValue.Get(ctx, key)
	if k.afterGet != nil {
		k.afterGet(key)
	}
	return e, err
}

type fixture struct {
	t    *testing.T
	env  *natstest.Env
	js   *failingJS
	kv   jetstream.KeyValue
	w    *worker
	hist *streams.History
	ctx  context.Context
}

func newFixture(t *testing.T, h HandlerFunc) *fixture {
	t.Helper()
	env := natstest.RunJetStream(t)
	ctx := natstest.Context(t)
	kv, err := env.JS.KeyValue(ctx, streams.IdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	js := &failingJS{JetStream: env.JS}
	w := &worker{
		js:      js,
		kv:      kv,
		svc:     Service{Name: "unit", Handlers: map[string]Handler{"do": h}},
		log:     slog.New(slog.DiscardHandler),
		ackWait: 30 * time.Second,
		runCtx:  ctx,
	}
	return &fixture{t: t, env: env, js: js, kv: kv, w: w, hist: streams.NewHistory(env.NC, env.JS), ctx: ctx}
}

func (f *fixture) command() schema.Command {
	return schema.Command{
		WorkflowID: "wf-unit", ID: 1, Service: "unit", Action: "do",
		IdempotencyKey: "wf-unit.1", ReplyTo: streams.ResultSubject("wf-unit", "unit", "do"),
		StartToClose: 5 * time.Second,
		Retry:        schema.RetryPolicy{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaxAttempts: 5},
	}
}

func (f *fixture) delivery(c schema.Command, delivered uint64) *fakeMsg {
	f.t.Helper()
	m, err := streams.NewMsg(streams.CommandSubject(c.WorkflowID, c.Service, c.Action), &c)
	if err != nil {
		f.t.Fatal(err)
	}
	return &fakeMsg{subject: m.Subject, data: m.Data, hdr: m.Header, seq: 7, delivered: delivered}
}

func (f *fixture) state() string {
	f.t.Helper()
	e, err := f.kv.Get(f.ctx, "unit.wf-unit.1")
	if err != nil {
		f.t.Fatal(err)
	}
	var rec record
	if err := schema.Msgpack.Unmarshal(e.Value(), &rec); err != nil {
		f.t.Fatal(err)
	}
	return rec.State
}

func (f *fixture) results() []*schema.Result {
	f.t.Helper()
	evs, err := f.hist.Read(f.ctx, "wf-unit", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*schema.Result
	for _, ev := range evs {
		if r, ok := ev.Value.(*schema.Result); ok {
			out = append(out, r)
		}
	}
	return out
}

func wantSettled(t *testing.T, m *fakeMsg, acks int, naks ...time.Duration) {
	t.Helper()
	a, n := m.settled()
	if a != acks || len(n) != len(naks) {
		t.Fatalf("acks %d naks %v, want acks %d naks %v", a, n, acks, naks)
	}
	for i := range n {
		if n[i] != naks[i] {
			t.Fatalf("naks %v, want %v", n, naks)
		}
	}
}

func TestRetryableNaksWithPolicyDelay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(ctx context.Context, cmd *Command) (any, error) {
		return nil, Retryable("gateway_error", errors.New("down"))
	})
	m := f.delivery(f.command(), 2)
	f.w.handle(m)
	wantSettled(t, m, 0, 200*time.Millisecond) // Delay(3): 100ms * 2
	if s := f.state(); s != stateStarted {
		t.Fatalf("record %q after a retryable failure, want started", s)
	}
	if r := f.results(); len(r) != 0 {
		t.Fatalf("results %+v", r)
	}
}

func TestCrashLeavesDeliveryAlone(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	f := newFixture(t, func(ctx context.Context, cmd *Command) (any, error) {
		if calls.Add(1) == 1 {
			return nil, errors.Join(errors.New("dying"), ErrCrash)
		}
		return "ok", nil
	})
	m := f.delivery(f.command(), 1)
	f.w.handle(m)
	wantSettled(t, m, 0)
	if s := f.state(); s != stateStarted {
		t.Fatalf("record %q after a crash, want started", s)
	}
	if r := f.results(); len(r) != 0 {
		t.Fatalf("results %+v", r)
	}
	// The redelivery takes the claim over.
	m = f.delivery(f.command(), 2)
	f.w.handle(m)
	wantSettled(t, m, 1)
	if r := f.results(); len(r) != 1 || r[0].Attempts != 2 {
		t.Fatalf("results %+v", r)
	}
}

func TestTakeOverRaceNaks(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	f := newFixture(t, func(ctx context.Context, cmd *Command) (any, error) {
		calls.Add(1)
		return "ok", nil
	})
	started := encodeRecord(record{State: stateStarted, Attempt: 1})
	if _, err := f.kv.Create(f.ctx, "unit.wf-unit.1", started); err != nil {
		t.Fatal(err)
	}
	// Another worker takes the key over between our read and our update.
	f.w.kv = racingKV{KeyValue: f.kv, afterGet: func(key string) {
		if _, err := f.kv.Put(f.ctx, key, started); err != nil {
			t.Error(err)
		}
	}}
	m := f.delivery(f.command(), 2)
	f.w.handle(m)
	wantSettled(t, m, 0, time.Second)
	if n := calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times while another worker held the key", n)
	}
}

func TestPublishFailureRepublishesRecordedResult(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	f := newFixture(t, func(ctx context.Context, cmd *Command) (any, error) {
		calls.Add(1)
		return cmd.Attempt, nil
	})
	f.js.marker.Store(".res.")
	m := f.delivery(f.command(), 1)
	f.w.handle(m)
	wantSettled(t, m, 0, time.Second)
	if s := f.state(); s != stateDone {
		t.Fatalf("record %q, want done before the publish", s)
	}

	f.js.marker.Store("")
	m = f.delivery(f.command(), 2)
	f.w.handle(m)
	wantSettled(t, m, 1)
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	r := f.results()
	if len(r) != 1 || r[0].Attempts != 1 {
		t.Fatalf("results %+v, want the recorded result of attempt 1", r)
	}
	var out int
	if err := schema.DecodeRaw(r[0].Output, &out); err != nil || out != 1 {
		t.Fatalf("output %d %v", out, err)
	}
}

func TestDeadLetterFailureNaks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(ctx context.Context, cmd *Command) (any, error) { return "ok", nil })
	f.js.marker.Store("dlq.")
	m := f.delivery(f.command(), 1)
	m.data = []byte("garbage")
	f.w.handle(m)
	wantSettled(t, m, 0, time.Second)

	f.js.marker.Store("")
	f.w.handle(m)
	wantSettled(t, m, 1, time.Second)
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.w.ackWait = 30 * time.Millisecond
	f.w.svc.Handlers["do"] = HandlerFunc(func(ctx context.Context, cmd *Command) (any, error) {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
		return "ok", nil
	})
	m := f.delivery(f.command(), 1)
	f.w.handle(m)
	wantSettled(t, m, 1)
	if m.progress < 5 {
		t.Fatalf("%d progress reports in 200ms at AckWait 30ms", m.progress)
	}

	// A handler that overruns StartToClose is not kept alive.
	f.w.svc.Handlers["do"] = HandlerFunc(func(ctx context.Context, cmd *Command) (any, error) {
		<-time.After(300 * time.Millisecond) // ignores ctx
		return nil, ctx.Err()
	})
	c := f.command()
	c.ID, c.IdempotencyKey, c.StartToClose = 2, "wf-unit.2", 20*time.Millisecond
	m = f.delivery(c, 1)
	f.w.handle(m)
	if m.progress > 10 {
		t.Fatalf("%d progress reports for a handler past its deadline", m.progress)
	}
}
