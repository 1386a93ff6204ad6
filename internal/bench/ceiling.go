package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Ceiling is the raw JetStream publish rate of the server the run used,
// measured on a scratch stream with messages shaped like a history event.
type Ceiling struct {
	// MsgBytes is the size of one message: body plus headers.
	MsgBytes int `json:"msg_bytes"`
	// AsyncMsgs and AsyncMsgsPerSec: pipelined publishes, each acknowledged.
	AsyncMsgs       int     `json:"async_msgs"`
	AsyncMsgsPerSec float64 `json:"async_msgs_per_sec"`
	// SyncMsgs and SyncMsgsPerSec: one publish at a time, each waiting for
	// its acknowledgement (what a fenced append costs at the least).
	SyncMsgs       int     `json:"sync_msgs"`
	SyncMsgsPerSec float64 `json:"sync_msgs_per_sec"`
	// Streams and StreamsMsgsPerSec, when Streams > 1: the same async
	// publishes spread round-robin over that many scratch streams, each
	// with its own write loop (and, with sync always, its own fsyncs).
	Streams           int     `json:"streams,omitempty"`
	StreamsMsgsPerSec float64 `json:"streams_msgs_per_sec,omitempty"`
	// AtomicBatch and AtomicBatchMsgsPerSec, when AtomicBatch > 1: the
	// same messages written as JetStream atomic batches of that many
	// messages, one batch at a time (the commit acknowledged before the
	// next batch starts).
	AtomicBatch           int     `json:"atomic_batch,omitempty"`
	AtomicBatchMsgsPerSec float64 `json:"atomic_batch_msgs_per_sec,omitempty"`
}

// scratchStream is created for the ceiling and deleted after it.
const (
	scratchStream  = "JETFLOW_BENCH_SCRATCH"
	scratchSubject = "jetflow_bench_scratch"
)

// sampleEvent returns a payment.charge command of the reference workflow as
// the orchestrator writes it: the typical history event.
func sampleEvent(id string) (*nats.Msg, error) {
	in, err := schema.EncodeRaw(payment.ChargeRequest{OrderID: id, CustomerID: "c-42", AmountCents: 12999, Currency: "EUR"})
	if err != nil {
		return nil, err
	}
	cmd := &schema.Command{
		WorkflowID: id, ID: 1, Service: payment.Name, Action: payment.Charge.Action, Input: in,
		IdempotencyKey: id + ".1", ReplyTo: streams.ResultSubject(id, 1, payment.Name, payment.Charge.Action),
		StartToClose: 10 * time.Second,
		Retry:        schema.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaxInterval: 5 * time.Second, MaxAttempts: 5},
	}
	m, err := streams.NewMsg(streams.CommandSubject(id, 1, payment.Name, payment.Charge.Action), cmd)
	if err != nil {
		return nil, err
	}
	m.Header.Set(jetstream.MsgIDHeader, id+":1:0")
	m.Header.Set(schema.HeaderWorkflowID, id)
	return m, nil
}

func msgSize(m *nats.Msg) int {
	n := len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // "k: v\r\n"
		}
	}
	return n
}

// measureCeiling publishes n messages asynchronously and n/10 one by one
// into a scratch stream of the history stream's kind, then deletes it.
// Subjects vary per ten messages, as a history holds ten per workflow.
func measureCeiling(ctx context.Context, js jetstream.JetStream, n int) (*Ceiling, error) {
	_ = js.DeleteStream(ctx, scratchStream)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      scratchStream,
		Subjects:  []string{scratchSubject + ".>"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		// As the history stream: Nats-Msg-Id deduplication is on.
		Duplicates: 2 * time.Minute,
	}); err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = js.DeleteStream(dctx, scratchStream)
	}()

	proto, err := sampleEvent("b-00000000-00000")
	if err != nil {
		return nil, err
	}
	msg := func(i int) *nats.Msg {
		m := nats.NewMsg(scratchSubject + ".w" + strconv.Itoa(i/10) + ".cmd.payment.charge")
		m.Data = proto.Data
		for k, vs := range proto.Header {
			m.Header[k] = vs
		}
		m.Header.Set(jetstream.MsgIDHeader, "scratch-"+strconv.Itoa(i))
		return m
	}
	c := &Ceiling{MsgBytes: msgSize(proto), AsyncMsgs: n, SyncMsgs: max(n/10, 1)}

	// Warm up: create the first block and the subject state.
	for i := 0; i < 100; i++ {
		if _, err := js.PublishMsg(ctx, msg(-1-i)); err != nil {
			return nil, err
		}
	}

	t0 := time.Now()
	var futures []jetstream.PubAckFuture
	for i := 0; i < n; i++ {
		// With sync always the acks lag far behind: wait for room in the
		// pending window rather than fail.
		f, err := js.PublishMsgAsync(msg(i), jetstream.WithStallWait(time.Minute))
		if err != nil {
			return nil, err
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("async publishes not acknowledged within 5 minutes")
	}
	c.AsyncMsgsPerSec = float64(n) / time.Since(t0).Seconds()
	for _, f := range futures {
		select {
		case err := <-f.Err():
			return nil, fmt.Errorf("async publish: %w", err)
		default:
		}
	}

	t0 = time.Now()
	for i := 0; i < c.SyncMsgs; i++ {
		if _, err := js.PublishMsg(ctx, msg(n+i)); err != nil {
			return nil, err
		}
	}
	c.SyncMsgsPerSec = float64(c.SyncMsgs) / time.Since(t0).Seconds()
	return c, nil
}

// scratchConfig is the configuration of scratch stream i of the ceiling
// measurement: a file stream of the history stream's kind.
func scratchConfig(i int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       scratchStream + "_" + strconv.Itoa(i),
		Subjects:   []string{scratchSubject + strconv.Itoa(i) + ".>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Duplicates: 2 * time.Minute,
	}
}

// scratchMsg returns message i of the ceiling measurement for scratch
// stream s, shaped like proto.
func scratchMsg(proto *nats.Msg, s, i int) *nats.Msg {
	m := nats.NewMsg(scratchSubject + strconv.Itoa(s) + ".w" + strconv.Itoa(i/10) + ".cmd.payment.charge")
	m.Data = proto.Data
	for k, vs := range proto.Header {
		m.Header[k] = vs
	}
	m.Header.Set(jetstream.MsgIDHeader, "scratch-"+strconv.Itoa(s)+"-"+strconv.Itoa(i))
	return m
}

// withScratch creates k scratch streams (with atomic batches allowed when
// atomic is set), runs f and deletes them.
func withScratch(ctx context.Context, js jetstream.JetStream, k int, atomic bool, f func() error) error {
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for i := range k {
			_ = js.DeleteStream(dctx, scratchConfig(i).Name)
		}
	}()
	for i := range k {
		cfg := scratchConfig(i)
		cfg.AllowAtomicPublish = atomic
		_ = js.DeleteStream(ctx, cfg.Name)
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			return err
		}
	}
	return f()
}

// measureStreams publishes n messages asynchronously, round-robin over k
// scratch streams, and returns the rate at which they were acknowledged.
// With sync always it answers whether fsyncs of different streams run in
// parallel on this disk: the history partitioned over k streams could
// write at most this fast.
func measureStreams(ctx context.Context, js jetstream.JetStream, n, k int) (float64, error) {
	proto, err := sampleEvent("b-00000000-00000")
	if err != nil {
		return 0, err
	}
	var rate float64
	err = withScratch(ctx, js, k, false, func() error {
		for i := 0; i < 100*k; i++ {
			if _, err := js.PublishMsg(ctx, scratchMsg(proto, i%k, -1-i)); err != nil {
				return err
			}
		}
		t0 := time.Now()
		futures := make([]jetstream.PubAckFuture, 0, n)
		for i := 0; i < n; i++ {
			f, err := js.PublishMsgAsync(scratchMsg(proto, i%k, i), jetstream.WithStallWait(time.Minute))
			if err != nil {
				return err
			}
			futures = append(futures, f)
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Minute):
			return fmt.Errorf("async publishes over %d streams not acknowledged within 5 minutes", k)
		}
		rate = float64(n) / time.Since(t0).Seconds()
		for _, f := range futures {
			select {
			case err := <-f.Err():
				return fmt.Errorf("async publish: %w", err)
			default:
			}
		}
		return nil
	})
	return rate, err
}

// measureAtomicBatches writes n messages as atomic batches of size
// messages into one scratch stream, one batch at a time, and returns the
// rate of messages.
func measureAtomicBatches(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, n, size int) (float64, error) {
	proto, err := sampleEvent("b-00000000-00000")
	if err != nil {
		return 0, err
	}
	var rate float64
	err = withScratch(ctx, js, 1, true, func() error {
		batches := max(n/size, 1)
		t0 := time.Now()
		for b := range batches {
			id := "scratch-batch-" + strconv.Itoa(b)
			for i := range size {
				m := scratchMsg(proto, 0, b*size+i)
				m.Header.Set("Nats-Batch-Id", id)
				m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
				if i < size-1 {
					if err := nc.PublishMsg(m); err != nil {
						return err
					}
					continue
				}
				m.Header.Set("Nats-Batch-Commit", "1")
				resp, err := nc.RequestMsgWithContext(ctx, m)
				if err != nil {
					return fmt.Errorf("commit batch %d: %w", b, err)
				}
				var ack struct {
					Count int                 `json:"count"`
					Error *jetstream.APIError `json:"error"`
				}
				if err := json.Unmarshal(resp.Data, &ack); err != nil {
					return fmt.Errorf("batch ack %q: %w", resp.Data, err)
				}
				if ack.Error != nil {
					return fmt.Errorf("batch %d: %w", b, ack.Error)
				}
				if ack.Count != size {
					return fmt.Errorf("batch %d: %d messages committed, want %d", b, ack.Count, size)
				}
			}
		}
		rate = float64(batches*size) / time.Since(t0).Seconds()
		return nil
	})
	return rate, err
}
