package streams_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestDeadLetterFitsMaxPayload: a refused message at the size limit, with a
// 64 KB header or a reason as large as the input it quotes, still gets its
// dead letter: the copy is cut to fit the max payload, says what was cut,
// and names the stream and sequence where the whole original stays.
func TestDeadLetterFitsMaxPayload(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	limit := int(env.NC.MaxPayload())
	cons, err := env.JS.OrderedConsumer(ctx, streams.OrdersStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dl, err := env.JS.OrderedConsumer(ctx, streams.DeadLetterStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// deadLetter publishes src, refuses it with reason and returns its
	// dead letter, checked for what every dead letter must carry.
	deadLetter := func(t *testing.T, src *nats.Msg, reason string) jetstream.Msg {
		t.Helper()
		ack, err := env.JS.PublishMsg(ctx, src)
		if err != nil {
			t.Fatalf("publish the source message: %v", err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := streams.DeadLetter(ctx, env.JS, streams.OrderCreated, m, reason); err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		d, err := dl.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		h := d.Headers()
		if got := h.Get(schema.HeaderSourceSeq); got != strconv.FormatUint(ack.Sequence, 10) {
			t.Errorf("source seq %q, want %d", got, ack.Sequence)
		}
		if got := h.Get(schema.HeaderSourceStream); got != streams.OrdersStream {
			t.Errorf("source stream %q, want %s", got, streams.OrdersStream)
		}
		if got := h.Get(schema.HeaderSourceSubject); got != streams.OrderCreated {
			t.Errorf("source subject %q", got)
		}
		if !bytes.HasPrefix(src.Data, d.Data()) {
			t.Errorf("kept body of %d bytes is not a prefix of the original", len(d.Data()))
		}
		if n := streams.HeaderSize(h) + len(d.Data()); n > limit {
			t.Errorf("dead letter of %d bytes, over the max payload %d", n, limit)
		}
		return d
	}
	wantCut := func(t *testing.T, d jetstream.Msg, wants ...string) {
		t.Helper()
		cut := d.Headers().Get(schema.HeaderTruncated)
		for _, want := range wants {
			if !strings.Contains(cut, want) {
				t.Errorf("%s %q lacks %q", schema.HeaderTruncated, cut, want)
			}
		}
	}

	t.Run("body at the limit", func(t *testing.T) {
		src := &nats.Msg{Subject: streams.OrderCreated, Header: nats.Header{"X-Small": []string{"kept"}}}
		src.Data = bytes.Repeat([]byte("b"), limit-streams.MsgSize(src)-64)
		d := deadLetter(t, src, "invalid order.created: invalid JSON")
		wantCut(t, d, "body "+strconv.Itoa(len(src.Data))+" bytes, kept ")
		if got := d.Headers().Get("Orig-X-Small"); got != "kept" {
			t.Errorf("small header %q, want kept", got)
		}
		if len(d.Data()) < limit/2 {
			t.Errorf("kept only %d bytes of the body", len(d.Data()))
		}
	})
	t.Run("64 KB header and a 10 KB reason", func(t *testing.T) {
		big := strings.Repeat("h", 64000) // JetStream refuses more than 64 KiB of headers
		src := &nats.Msg{Subject: streams.OrderCreated, Header: nats.Header{"X-Big": []string{big}}}
		src.Data = bytes.Repeat([]byte("b"), limit-streams.MsgSize(src)-64)
		reason := "invalid order.created: " + strings.Repeat("r", 10<<10)
		d := deadLetter(t, src, reason)
		wantCut(t, d, "header Orig-X-Big 64000 bytes, kept 1024", "reason "+strconv.Itoa(len(reason))+" bytes, kept 2048")
		if got := d.Headers().Get("Orig-X-Big"); len(got) > 2048 || !strings.HasPrefix(got, "hhhh") {
			t.Errorf("big header kept %d bytes", len(got))
		}
		if got := d.Headers().Get(schema.HeaderReason); len(got) > 4096 || !strings.HasPrefix(got, "invalid order.created: rrrr") {
			t.Errorf("reason of %d bytes: %.80q", len(got), got)
		}
	})
	t.Run("a message that fits is copied whole", func(t *testing.T) {
		d := deadLetter(t, &nats.Msg{Subject: streams.OrderCreated, Data: []byte("{}"), Header: nats.Header{"X-A": []string{"1"}}}, "short")
		if string(d.Data()) != "{}" || d.Headers().Get(schema.HeaderTruncated) != "" || d.Headers().Get("Orig-X-A") != "1" || d.Headers().Get(schema.HeaderReason) != "short" {
			t.Errorf("small dead letter altered: %q %v", d.Data(), d.Headers())
		}
	})
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc… (6 bytes)"},
		{"ééé", 3, "é… (6 bytes)"}, // not cut inside a rune
	} {
		if got := streams.Clip(tc.in, tc.n); got != tc.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
