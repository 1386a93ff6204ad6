package participants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// The tests in this file hand single deliveries to worker.handle and watch
// how the server sees them settled. Every delivery is a real message pulled
// from a real durable consumer of an embedded nats-server, and the worker
// writes to the real idempotency bucket and streams. A settlement shows on
// the server: an ack moves the consumer's ack floor, a nak brings the
// message back after its delay, and a delivery left alone comes back only
// after AckWait.

// waitFor bounds every wait of these tests.
const waitFor = 10 * time.Second

// nakAckWait is the AckWait of tests that expect naks: a redelivery seen
// within waitFor can only come from a nak.
const nakAckWait = 30 * time.Second

type fixture struct {
	t    *testing.T
	env  *natstest.Env
	ctx  context.Context
	kv   jetstream.KeyValue
	cons jetstream.Consumer
	w    *worker
	hist *streams.History
	// wg counts the handle calls running in their own goroutine.
	wg sync.WaitGroup
}

// newFixture starts a server and a worker of service "unit" whose action
// "do" is h, with a durable consumer of the service's commands at ackWait.
func newFixture(t *testing.T, ackWait time.Duration, h HandlerFunc) *fixture {
	t.Helper()
	return newFixtureMaxDeliver(t, ackWait, streams.DefaultParticipantMaxDeliver, h)
}

// newFixtureMaxDeliver is newFixture with a consumer of that MaxDeliver.
func newFixtureMaxDeliver(t *testing.T, ackWait time.Duration, maxDeliver int, h HandlerFunc) *fixture {
	t.Helper()
	env := natstest.RunJetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{t: t, env: env, ctx: ctx, hist: streams.NewHistory(env.NC, env.JS)}
	// Runs before the server stops: handlers still blocked are cancelled
	// and every handle call has returned.
	t.Cleanup(func() {
		cancel()
		f.wg.Wait()
	})
	kv, err := env.JS.KeyValue(ctx, streams.IdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := env.JS.CreateOrUpdateConsumer(ctx, streams.HistoryStream, streams.ParticipantConsumerConfig("unit", ackWait, 16, maxDeliver))
	if err != nil {
		t.Fatal(err)
	}
	f.kv, f.cons = kv, cons
	f.w = &worker{
		js:         env.JS,
		kv:         kv,
		svc:        Service{Name: "unit", Handlers: map[string]Handler{"do": h}},
		log:        slog.New(slog.DiscardHandler),
		ackWait:    ackWait,
		maxDeliver: maxDeliver,
		runCtx:     ctx,
	}
	return f
}

// command is command id of workflow wf-unit for unit.do.
func (f *fixture) command(id int) schema.Command {
	return schema.Command{
		WorkflowID: "wf-unit", ID: id, Service: "unit", Action: "do",
		IdempotencyKey: "wf-unit." + strconv.Itoa(id), ReplyTo: streams.ResultSubject("wf-unit", id, "unit", "do"),
		StartToClose: 5 * time.Second,
		Retry:        schema.RetryPolicy{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaxAttempts: 5},
	}
}

// key is the idempotency key the worker claims for c.
func key(c schema.Command) string { return "unit." + c.IdempotencyKey }

// commandMsg is c as a message on its command subject.
func (f *fixture) commandMsg(c schema.Command) *nats.Msg {
	f.t.Helper()
	m, err := streams.NewMsg(streams.CommandSubject(c.WorkflowID, c.ID, c.Service, c.Action), &c)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

// send stores c in the history stream and returns its stream sequence.
func (f *fixture) send(c schema.Command) uint64 {
	f.t.Helper()
	return f.publish(f.commandMsg(c))
}

func (f *fixture) publish(m *nats.Msg) uint64 {
	f.t.Helper()
	ack, err := f.env.JS.PublishMsg(f.ctx, m)
	if err != nil {
		f.t.Fatalf("publish %s: %v", m.Subject, err)
	}
	return ack.Sequence
}

// next pulls the consumer's next delivery, waiting up to waitFor, and
// checks that it is delivery number n of stream sequence seq.
func (f *fixture) next(seq, n uint64) jetstream.Msg {
	f.t.Helper()
	batch, err := f.cons.Fetch(1, jetstream.FetchMaxWait(waitFor))
	if err != nil {
		f.t.Fatalf("fetch: %v", err)
	}
	var m jetstream.Msg
	for msg := range batch.Messages() {
		m = msg
	}
	if m == nil {
		f.t.Fatalf("no delivery %d of seq %d within %v (fetch: %v)", n, seq, waitFor, batch.Error())
	}
	md, err := m.Metadata()
	if err != nil {
		f.t.Fatal(err)
	}
	if md.Sequence.Stream != seq || md.NumDelivered != n {
		f.t.Fatalf("delivery %d of seq %d, want delivery %d of seq %d", md.NumDelivered, md.Sequence.Stream, n, seq)
	}
	return m
}

// redelivered waits for delivery n of seq and checks that it came no
// sooner than minDelay after since.
func (f *fixture) redelivered(seq, n uint64, since time.Time, minDelay time.Duration) jetstream.Msg {
	f.t.Helper()
	m := f.next(seq, n)
	// A little slack for the clocks of the timer and of this test.
	if el := time.Since(since); el < minDelay*9/10 {
		f.t.Fatalf("delivery %d of seq %d came %v after the last settlement, want at least %v", n, seq, el, minDelay)
	}
	return m
}

// handleAsync hands m to the worker in a goroutine and returns a channel
// closed when handle has returned.
func (f *fixture) handleAsync(m jetstream.Msg) <-chan struct{} {
	done := make(chan struct{})
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(done)
		f.w.handle(m)
	}()
	return done
}

// wait waits for ch to be closed or to yield a value.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("not within %v: %s", waitFor, what)
		panic("unreachable")
	}
}

// acked waits until the consumer has acknowledged everything up to seq.
func (f *fixture) acked(seq uint64) {
	f.t.Helper()
	natstest.Eventually(f.t, waitFor, func() bool {
		info, err := f.cons.Info(f.ctx)
		return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0
	}, "consumer acked up to %d", seq)
}

// bucketWrites is how many writes the idempotency bucket has taken: a
// command's result is recorded in the history alone, so the participant
// writes none but heartbeat details.
func (f *fixture) bucketWrites() uint64 {
	f.t.Helper()
	s, err := f.env.JS.Stream(f.ctx, "KV_"+streams.IdempotencyBucket)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.LastSeq
}

// results returns the results of command id in the history of wf-unit.
func (f *fixture) results(id int) []*schema.Result {
	f.t.Helper()
	evs, err := f.hist.Read(f.ctx, "wf-unit", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*schema.Result
	for _, ev := range evs {
		if r, ok := ev.Value.(*schema.Result); ok && r.CommandID == id {
			out = append(out, r)
		}
	}
	return out
}

// deadLetters returns every message of the dead-letter stream.
func (f *fixture) deadLetters() []*jetstream.RawStreamMsg {
	f.t.Helper()
	s, err := f.env.JS.Stream(f.ctx, streams.DeadLetterStream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(f.ctx, seq)
		if err != nil {
			f.t.Fatalf("get dead letter %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// refuseWrites makes stream refuse every new message, by lowering its
// MaxMsgSize to one byte, until the returned func restores it. Reads and
// deliveries of stored messages go on as before.
func (f *fixture) refuseWrites(stream string) (restore func()) {
	f.t.Helper()
	s, err := f.env.JS.Stream(f.ctx, stream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := info.Config
	was := cfg.MaxMsgSize
	cfg.MaxMsgSize = 1
	if _, err := f.env.JS.UpdateStream(f.ctx, cfg); err != nil {
		f.t.Fatalf("update %s: %v", stream, err)
	}
	return func() {
		f.t.Helper()
		cfg.MaxMsgSize = was
		if _, err := f.env.JS.UpdateStream(f.ctx, cfg); err != nil {
			f.t.Fatalf("restore %s: %v", stream, err)
		}
	}
}

func TestRetryableNaksWithPolicyDelay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nakAckWait, func(ctx context.Context, cmd *Command) (any, error) {
		if cmd.Attempt < 3 {
			return nil, Retryable("gateway_error", errors.New("down"))
		}
		return cmd.Attempt, nil
	})
	c := f.command(1)
	c.Retry = schema.RetryPolicy{InitialInterval: 300 * time.Millisecond, BackoffCoefficient: 4, MaxAttempts: 5}
	seq := f.send(c)
	m := f.next(seq, 1)
	// Delay(2) and Delay(3); the second is longer than the busy delay, so
	// only the policy's backoff brings attempt 3 this late.
	for i, delay := range []time.Duration{300 * time.Millisecond, 1200 * time.Millisecond} {
		f.w.handle(m)
		naked := time.Now()
		if n := f.bucketWrites(); n != 0 {
			t.Fatalf("%d idempotency-bucket writes after retryable attempt %d, want none", n, i+1)
		}
		if r := f.results(1); len(r) != 0 {
			t.Fatalf("results %+v after a retryable failure", r)
		}
		m = f.redelivered(seq, uint64(i+2), naked, delay)
	}
	f.w.handle(m)
	f.acked(seq)
	r := f.results(1)
	if len(r) != 1 || r[0].Error != nil || r[0].Attempts != 3 {
		t.Fatalf("results %+v, want one success at attempt 3", r)
	}
	if n := f.bucketWrites(); n != 0 {
		t.Fatalf("%d idempotency-bucket writes, want none: the result in the history is the record", n)
	}
}

func TestCrashLeavesDeliveryToAckWait(t *testing.T) {
	t.Parallel()
	const ackWait = 2 * time.Second // twice the busy delay: a nak would come back sooner
	var calls atomic.Int32
	var sys *sim.System
	f := newFixture(t, ackWait, func(ctx context.Context, cmd *Command) (any, error) {
		calls.Add(1)
		eff, _, err := sys.Apply(ctx, sim.Effect{
			IdempotencyKey: cmd.IdempotencyKey, OrderID: "order-1", Kind: "charge",
			AmountCents: 100, Currency: "EUR", Ref: sim.Ref("ch", cmd.IdempotencyKey),
		})
		if err != nil {
			return nil, Retryable("ledger", err)
		}
		if cmd.Attempt == 1 {
			return nil, errors.Join(errors.New("dying after the effect"), ErrCrash)
		}
		return eff.Ref, nil
	})
	var err error
	if sys, err = sim.Open(f.ctx, f.env.JS, "unit", streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	c := f.command(1)
	seq := f.send(c)
	m := f.next(seq, 1)
	delivered := time.Now()
	f.w.handle(m)
	if n := f.bucketWrites(); n != 0 {
		t.Fatalf("%d idempotency-bucket writes after a crash before any result", n)
	}
	if r := f.results(1); len(r) != 0 {
		t.Fatalf("results %+v after a crash", r)
	}

	// Neither acked nor nakked: the server redelivers after AckWait, and
	// the redelivery runs the handler again; the ledger applies the key
	// once.
	m = f.redelivered(seq, 2, delivered, ackWait)
	f.w.handle(m)
	f.acked(seq)
	effs, err := sim.List(f.ctx, f.env.JS, "unit", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(effs) != 1 || effs[0].IdempotencyKey != c.IdempotencyKey {
		t.Fatalf("ledger %+v, want one effect", effs)
	}
	r := f.results(1)
	if len(r) != 1 || r[0].Error != nil || r[0].Attempts != 2 {
		t.Fatalf("results %+v, want one success at attempt 2", r)
	}
	var ref string
	if err := schema.DecodeRaw(r[0].Output, &ref); err != nil || ref != effs[0].Ref {
		t.Fatalf("output %q (%v), want the ledger's %q", ref, err, effs[0].Ref)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
}

// Two attempts of one command run at once (a delivery taken over from a
// worker that froze past AckWait): the first result stored on the result
// subject is the command's; the other attempt's publish is refused and it
// acks.
func TestConcurrentAttemptRecordsFirst(t *testing.T) {
	t.Parallel()
	running := make(chan int, 1)
	release := make(chan struct{})
	var calls atomic.Int32
	f := newFixture(t, nakAckWait, nil)
	f.w.svc.Handlers["do"] = HandlerFunc(func(ctx context.Context, cmd *Command) (any, error) {
		calls.Add(1)
		running <- cmd.Attempt
		select {
		case <-release:
			return fmt.Sprintf("mine at attempt %d", cmd.Attempt), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})

	c := f.command(1)
	seq := f.send(c)
	done := f.handleAsync(f.next(seq, 1))
	wait(t, running, "handler started")
	// The other attempt finishes first.
	res := &schema.Result{WorkflowID: c.WorkflowID, CommandID: c.ID, Service: c.Service, Action: c.Action, Attempts: 2}
	var err error
	if res.Output, err = schema.EncodeRaw("theirs"); err != nil {
		t.Fatal(err)
	}
	m, err := streams.NewMsg(c.ReplyTo, res)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Set(jetstream.MsgIDHeader, "res-unit-"+c.IdempotencyKey+"-theirs")
	if stored, err := streams.PublishFirst(f.ctx, f.env.JS, m); err != nil || !stored {
		t.Fatalf("publish the other attempt's result: stored %v, %v", stored, err)
	}
	release <- struct{}{}
	wait(t, done, "handle returned")
	f.acked(seq)
	r := f.results(1)
	var out string
	if len(r) != 1 || schema.DecodeRaw(r[0].Output, &out) != nil || out != "theirs" || r[0].Attempts != 2 {
		t.Fatalf("results %+v, want the other attempt's", r)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

// A result that cannot be published leaves nothing recorded: the
// redelivery runs the handler again (the external system's idempotency
// key makes it the same effect) and publishes its result.
func TestPublishFailureRerunsTheHandler(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var sys *sim.System
	f := newFixture(t, nakAckWait, func(ctx context.Context, cmd *Command) (any, error) {
		calls.Add(1)
		eff, _, err := sys.Apply(ctx, sim.Effect{
			IdempotencyKey: cmd.IdempotencyKey, OrderID: "order-1", Kind: "charge",
			AmountCents: 100, Currency: "EUR", Ref: sim.Ref("ch", cmd.IdempotencyKey),
		})
		if err != nil {
			return nil, Retryable("ledger", err)
		}
		return eff.Ref, nil
	})
	var err error
	if sys, err = sim.Open(f.ctx, f.env.JS, "unit", streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	c := f.command(1)
	seq := f.send(c)
	m := f.next(seq, 1)

	// The reply subject passes every check, but its stream refuses it.
	restore := f.refuseWrites(streams.HistoryStream)
	f.w.handle(m)
	naked := time.Now()
	if r := f.results(1); len(r) != 0 {
		t.Fatalf("results %+v published into a stream that refuses them", r)
	}
	restore()

	m = f.redelivered(seq, 2, naked, busyDelay)
	f.w.handle(m)
	f.acked(seq)
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
	effs, err := sim.List(f.ctx, f.env.JS, "unit", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(effs) != 1 {
		t.Fatalf("ledger %+v, want one effect", effs)
	}
	r := f.results(1)
	if len(r) != 1 || r[0].Attempts != 2 {
		t.Fatalf("results %+v, want the result of attempt 2", r)
	}
	var ref string
	if err := schema.DecodeRaw(r[0].Output, &ref); err != nil || ref != effs[0].Ref {
		t.Fatalf("output %q (%v), want the ledger's %q", ref, err, effs[0].Ref)
	}
	if n := f.bucketWrites(); n != 0 {
		t.Fatalf("%d idempotency-bucket writes, want none", n)
	}
}

func TestDeadLetterFailureNaks(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	f := newFixture(t, nakAckWait, func(ctx context.Context, cmd *Command) (any, error) {
		calls.Add(1)
		return "ok", nil
	})

	// An undecodable command while the dead-letter stream refuses writes.
	garbage := f.commandMsg(f.command(1))
	garbage.Data = []byte("garbage")
	seq := f.publish(garbage)
	m := f.next(seq, 1)
	restore := f.refuseWrites(streams.DeadLetterStream)
	f.w.handle(m)
	naked := time.Now()
	if dls := f.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters in a stream that refuses them", len(dls))
	}
	restore()
	m = f.redelivered(seq, 2, naked, busyDelay)
	f.w.handle(m)
	f.acked(seq)
	dls := f.deadLetters()
	if len(dls) != 1 || dls[0].Header.Get(schema.HeaderSourceSeq) != strconv.FormatUint(seq, 10) {
		t.Fatalf("dead letters %+v, want the garbage command's", dls)
	}

	// An unknown action whose failure result the history refuses: the
	// dead letter is written, the command comes back, and the repeated
	// dead letter is deduplicated.
	u := f.command(2)
	u.Action = "teleport"
	u.ReplyTo = streams.ResultSubject(u.WorkflowID, u.ID, u.Service, u.Action)
	seq = f.send(u)
	m = f.next(seq, 1)
	restore = f.refuseWrites(streams.HistoryStream)
	f.w.handle(m)
	naked = time.Now()
	if dls := f.deadLetters(); len(dls) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dls))
	}
	restore()
	m = f.redelivered(seq, 2, naked, busyDelay)
	f.w.handle(m)
	f.acked(seq)
	if dls := f.deadLetters(); len(dls) != 2 || !strings.Contains(dls[1].Header.Get(schema.HeaderReason), "teleport") {
		t.Fatalf("dead letters %+v, want one for the unknown action", dls)
	}
	r := f.results(2)
	if len(r) != 1 || r[0].Error == nil || r[0].Error.Kind != KindUnknownCommand {
		t.Fatalf("results %+v, want one unknown_command failure", r)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times", n)
	}
}

// A handler that overruns StartToClose and ignores its context gets no
// more progress reports: the server redelivers the command after AckWait
// while the handler still runs, and the redelivery finishes it.
func TestHungHandlerIsNotKeptAlive(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := newFixture(t, 400*time.Millisecond, nil)
	f.w.svc.Handlers["do"] = HandlerFunc(func(ctx context.Context, cmd *Command) (any, error) {
		if cmd.Attempt == 1 {
			// Ignores ctx; only the end of the test stops it otherwise.
			select {
			case <-release:
			case <-f.ctx.Done():
			}
			return nil, ctx.Err()
		}
		return "ok", nil
	})
	c := f.command(1)
	c.StartToClose = 50 * time.Millisecond
	c.Retry.InitialInterval = time.Hour // the late attempt's nak must not bring it back
	seq := f.send(c)
	done := f.handleAsync(f.next(seq, 1))

	m := f.next(seq, 2)
	select {
	case <-done:
		t.Fatal("the first attempt returned before the redelivery")
	default:
	}
	close(release)
	wait(t, done, "hung attempt returned")
	f.w.handle(m)
	f.acked(seq)
	r := f.results(1)
	if len(r) != 1 || r[0].Error != nil || r[0].Attempts != 2 {
		t.Fatalf("results %+v, want one success at attempt 2", r)
	}
}
