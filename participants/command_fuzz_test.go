package participants

import (
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/fuzzcheck"
	"github.com/jetflow-io/jetflow/schema"
)

// FuzzDecodeCommand decodes anything delivered to a participant the way it
// is read: as a command and its input as a handler decodes it. No panic, and what decodes holds no more than its
// bytes carry.
func FuzzDecodeCommand(f *testing.F) {
	in, _ := schema.EncodeRaw(map[string]any{"order_id": "o-1", "amount_cents": 100, "items": []any{map[string]any{"sku": "a", "qty": 1}}})
	good := &schema.Command{WorkflowID: "o-1", ID: 1, Service: "payment", Action: "charge", Input: in,
		IdempotencyKey: "o-1.1", ReplyTo: "wf.o-1.res.1.payment.charge", StartToClose: time.Second,
		Retry: schema.RetryPolicy{MaxAttempts: 3, NonRetryable: []string{"declined"}}}
	body, _, _ := schema.Encode(good)
	f.Add(body)
	for _, b := range [][]byte{
		[]byte("\x81\xa5input\xdd\xff\xff\xff\xff\x01"),                  // an input array of 2^32-1 elements
		[]byte("\x81\xa5retry\x81\xadnon_retryable\xdd\xff\xff\xff\xff"), // a []string of 2^32-1
		[]byte("\x81\xa5input\xdf\xff\xff\xff\xff"),                      // a map of 2^32-1 entries
		[]byte("\x81\xa5retry\x92\x30\xc0"),                              // an array-encoded struct with a nil
		[]byte("\x81\xa5input\x91\x91\x91\x91\xc0"),                      // nested input
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if sc, _ := decodeCommand(string(schema.KindCommand), schema.SchemaString, data); sc != nil {
			if err := fuzzcheck.Check(data, sc); err != nil {
				t.Fatalf("command %x: %v", data, err)
			}
			var input any
			cmd := &Command{Input: sc.Input}
			if err := cmd.Decode(&input); err == nil {
				if err := fuzzcheck.Check(data, input); err != nil {
					t.Fatalf("input of %x: %v", data, err)
				}
			}
		}
	})
}
