package streams_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// benchServer starts an embedded server in a temporary directory with the
// jetflow topology and returns a History on an in-process connection.
func benchServer(b *testing.B, syncAlways bool) (*streams.History, *nats.Conn, jetstream.JetStream) {
	b.Helper()
	srv, err := streams.StartServer(streams.ServerConfig{StoreDir: b.TempDir(), SyncAlways: syncAlways})
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
	return streams.NewHistory(nc, js), nc, js
}

// benchEvent is a history message of about a reference command's size.
func benchEvent(b *testing.B, id string, n int) *nats.Msg {
	b.Helper()
	in, err := schema.EncodeRaw(map[string]any{"order_id": id, "customer_id": "c-42", "amount_cents": 12999, "currency": "EUR"})
	if err != nil {
		b.Fatal(err)
	}
	m, err := streams.NewMsg(streams.CommandSubject(id, n, "payment", "charge"), &schema.Command{
		WorkflowID: id, ID: n, Service: "payment", Action: "charge", Input: in,
		IdempotencyKey: id + "." + strconv.Itoa(n), ReplyTo: streams.ResultSubject(id, n, "payment", "charge"),
		StartToClose: 10 * time.Second, Retry: schema.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaxAttempts: 5},
	})
	if err != nil {
		b.Fatal(err)
	}
	m.Header.Set(jetstream.MsgIDHeader, id+":"+strconv.Itoa(n))
	return m
}

// appendEvents appends n single-message decisions to workflow id, fenced,
// and returns the last sequence.
func appendEvents(b *testing.B, h *streams.History, id string, last uint64, from, n int) uint64 {
	b.Helper()
	for i := from; i < from+n; i++ {
		seq, _, err := h.Append(context.Background(), id, last, []*nats.Msg{benchEvent(b, id, i)})
		if err != nil {
			b.Fatalf("append %s #%d: %v", id, i, err)
		}
		last = seq
	}
	return last
}

// interleave publishes n messages of other workflows, 10 per workflow.
func interleave(b *testing.B, js jetstream.JetStream, tag string, n int) {
	b.Helper()
	for i := 0; i < n; i++ {
		if _, err := js.PublishMsgAsync(benchEvent(b, fmt.Sprintf("%s-other-%d", tag, i/10), i)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("interleaved publishes not acknowledged")
	}
}

// BenchmarkHistoryRead reads a whole 20-event history with one direct-get
// batch: what the orchestrator does for a workflow it has not cached.
func BenchmarkHistoryRead(b *testing.B) {
	h, _, _ := benchServer(b, false)
	appendEvents(b, h, "w20", 0, 0, 20)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		evs, err := h.Read(ctx, "w20", 0)
		if err != nil || len(evs) != 20 {
			b.Fatalf("read %d events: %v", len(evs), err)
		}
	}
}

// BenchmarkHistoryReadTail reads the one new event after a known sequence
// (what a cached orchestrator does on every wake) with `others` messages of
// other workflows stored between the workflow's last two events: under
// load a workflow's events are far apart in the stream, and a reader that
// walks the stream from the known sequence pays for every message between.
func BenchmarkHistoryReadTail(b *testing.B) {
	for _, others := range []int{0, 1000, 10000} {
		b.Run("others="+strconv.Itoa(others), func(b *testing.B) {
			h, _, js := benchServer(b, false)
			last := appendEvents(b, h, "w", 0, 0, 19)
			interleave(b, js, "x", others)
			appendEvents(b, h, "w", last, 19, 1)
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				evs, err := h.Read(ctx, "w", last)
				if err != nil || len(evs) != 1 {
					b.Fatalf("read %d events: %v", len(evs), err)
				}
			}
		})
	}
}

// BenchmarkHistoryAppend measures fenced appends of one message and of a
// two-message atomic batch (e.g. a cancelled timer and the next command),
// with the default fsync policy and with sync always. Every 20 messages the
// appends move on to a new workflow, so each fence is checked on a tree of
// a real workflow's size.
func BenchmarkHistoryAppend(b *testing.B) {
	for _, syncAlways := range []bool{false, true} {
		for _, size := range []int{1, 2} {
			name := fmt.Sprintf("msgs=%d/sync=%v", size, map[bool]string{false: "default", true: "always"}[syncAlways])
			b.Run(name, func(b *testing.B) {
				h, _, _ := benchServer(b, syncAlways)
				ctx := context.Background()
				var last uint64
				n := 0
				b.ResetTimer()
				for b.Loop() {
					if n%20 == 0 {
						last = 0
					}
					id := "w" + strconv.Itoa(n/20)
					msgs := make([]*nats.Msg, size)
					for i := range msgs {
						msgs[i] = benchEvent(b, id, n%20)
						n++
					}
					seq, _, err := h.Append(ctx, id, last, msgs)
					if err != nil {
						b.Fatalf("append: %v", err)
					}
					last = seq
				}
			})
		}
	}
}

// BenchmarkHistoryReadTailOfLongHistory reads the one new event of a
// workflow whose history already holds 20, 1,000 or 10,000 events (a long
// loop, a flood of signals), 100 messages of other workflows after its
// last read, as a cached orchestrator does on every wake: with Read
// (multi_last, which matches every subject of the tree) and with
// ReadAfter (next_by_subj from the last read).
func BenchmarkHistoryReadTailOfLongHistory(b *testing.B) {
	for _, n := range []int{20, 1000, 10000} {
		b.Run("events="+strconv.Itoa(n), func(b *testing.B) {
			h, _, js := benchServer(b, false)
			last := appendEvents(b, h, "w", 0, 0, n-1)
			interleave(b, js, "x", 100)
			appendEvents(b, h, "w", last, n-1, 1)
			ctx := context.Background()
			for _, how := range []struct {
				name string
				read func(context.Context, string, uint64) ([]streams.Event, error)
			}{{"Read", h.Read}, {"ReadAfter", h.ReadAfter}} {
				b.Run(how.name, func(b *testing.B) {
					for b.Loop() {
						evs, err := how.read(ctx, "w", last)
						if err != nil || len(evs) != 1 {
							b.Fatalf("read %d events: %v", len(evs), err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkHistoryAppendToLongHistory appends one fenced message to a
// workflow whose history already holds 20, 1,000 or 10,000 events: the
// fence is the last sequence of the whole tree wf.<id>.>, which the server
// finds by matching the tree's subjects.
func BenchmarkHistoryAppendToLongHistory(b *testing.B) {
	for _, n := range []int{20, 1000, 10000} {
		b.Run("events="+strconv.Itoa(n), func(b *testing.B) {
			h, _, _ := benchServer(b, false)
			last := appendEvents(b, h, "w", 0, 0, n)
			i := n
			b.ResetTimer()
			for b.Loop() {
				last = appendEvents(b, h, "w", last, i, 1)
				i++
			}
		})
	}
}
