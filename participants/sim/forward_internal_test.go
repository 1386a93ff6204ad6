package sim

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// The retries of a callback whose signal cannot be sent span about two
// hours, and each comes within the signals' default duplicate window (2
// minutes) of the one before: a send stored although it failed, retried
// at once, is not a second signal.
func TestCallbackRetriesSpanTwoHoursInsideTheDuplicateWindow(t *testing.T) {
	var total time.Duration
	for n := uint64(1); n < streams.CallbackMaxDeliver; n++ {
		d := callbackRetryDelay(&jetstream.MsgMetadata{NumDelivered: n})
		if d <= 0 || d > 2*time.Minute-callbackSendTimeout {
			t.Fatalf("delay %s after delivery %d: past the duplicate window", d, n)
		}
		total += d
	}
	if total < 90*time.Minute || total > 150*time.Minute {
		t.Fatalf("the retries span %s, want about two hours", total)
	}
	if d := streams.CallbackConsumerConfig("x").AckWait; d >= 2*time.Minute {
		t.Fatalf("AckWait %s: a redelivery after a lost acknowledgement falls past the duplicate window", d)
	}
}
