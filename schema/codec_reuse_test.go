package schema_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

// typicalCommand is a command as the reference workflow writes it.
func typicalCommand(t testing.TB, i int) *schema.Command {
	t.Helper()
	in, err := schema.EncodeRaw(map[string]any{"order_id": "o-1", "amount_cents": 100 + i})
	if err != nil {
		t.Fatal(err)
	}
	return &schema.Command{WorkflowID: "o-1", ID: i, Service: "payment", Action: "charge", Input: in,
		IdempotencyKey: "o-1.1", ReplyTo: "wf.o-1.res.1.payment.charge", StartToClose: time.Second,
		Retry: schema.RetryPolicy{MaxAttempts: 3, NonRetryable: []string{"declined"}}}
}

// TestCodecReusesItsEncoders: encoding and decoding a command reuse the
// codec's encoders, decoders and buffers (a new encoder and decoder per
// call, and the growth of a fresh buffer, were a tenth of the allocations
// of an order). The bounds leave room for the race detector, which makes
// sync.Pool drop a quarter of what it is given.
func TestCodecReusesItsEncoders(t *testing.T) {
	c := typicalCommand(t, 1)
	b, err := schema.Msgpack.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = schema.Msgpack.Marshal(c) }); n > 12 {
		t.Errorf("Marshal of a command: %.1f allocations, want at most 12", n)
	}
	if n := testing.AllocsPerRun(200, func() {
		var got schema.Command
		_ = schema.Msgpack.Unmarshal(b, &got)
	}); n > 12.5 {
		t.Errorf("Unmarshal of a command: %.1f allocations, want at most 12.5", n)
	}
}

// TestCodecReuseKeepsNoState: a reused decoder does not carry the strict
// mode, a failure or trailing bytes of one call into the next, and values
// encoded at once by many goroutines decode to what each encoded.
func TestCodecReuseKeepsNoState(t *testing.T) {
	extra, err := schema.Msgpack.Marshal(map[string]any{"workflow_id": "o-1", "no_such_field": 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var strict schema.Command
		if err := schema.UnmarshalStrict(extra, &strict); err == nil {
			t.Fatal("strict decode of an unknown field succeeded")
		}
		var lenient schema.Command
		if err := schema.Msgpack.Unmarshal(extra, &lenient); err != nil || lenient.WorkflowID != "o-1" {
			t.Fatalf("lenient decode after a strict one: %+v, %v", lenient, err)
		}
		var trailing schema.Command
		if err := schema.Msgpack.Unmarshal(append(extra, 0xc0), &trailing); err == nil || !strings.Contains(err.Error(), "1 trailing bytes") {
			t.Fatalf("decode with a trailing byte: %v", err)
		}
		var truncated schema.Command
		if err := schema.Msgpack.Unmarshal(extra[:len(extra)-1], &truncated); err == nil {
			t.Fatal("decode of a truncated body succeeded")
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				want := typicalCommand(t, g*1000+i)
				b, err := schema.Msgpack.Marshal(want)
				if err != nil {
					t.Error(err)
					return
				}
				var got schema.Command
				if err := schema.Msgpack.Unmarshal(b, &got); err != nil || got.ID != want.ID || string(got.Input) != string(want.Input) {
					t.Errorf("round trip of command %d: %+v, %v", want.ID, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
