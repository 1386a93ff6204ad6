package orchestrator

import (
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// TestForwardedMsgMetadata: a forwarded delivery reads its metadata from
// its ack subject, in the server's old and new formats, as the jetstream
// package does for its own deliveries, and refuses a subject that is not
// an ack subject.
func TestForwardedMsgMetadata(t *testing.T) {
	for _, ack := range []string{
		"$JS.ACK.JETFLOW_HISTORY.jetflow-orchestrator.3.1234.77.1733000000000000000.12",
		"$JS.ACK._.ACCHASH.JETFLOW_HISTORY.jetflow-orchestrator.3.1234.77.1733000000000000000.12.RANDOM",
	} {
		md, err := (&forwardedMsg{ack: ack}).Metadata()
		if err != nil {
			t.Fatalf("%s: %v", ack, err)
		}
		if md.Stream != "JETFLOW_HISTORY" || md.Consumer != "jetflow-orchestrator" || md.NumDelivered != 3 ||
			md.Sequence.Stream != 1234 || md.Sequence.Consumer != 77 || md.NumPending != 12 ||
			!md.Timestamp.Equal(time.Unix(0, 1733000000000000000)) || md.Domain != "" {
			t.Errorf("%s: %+v", ack, md)
		}
	}
	for _, bad := range []string{"_INBOX.x.y", "$JS.ACK.S.C.1.2.3.4", "$JS.ACK.S.C.x.2.3.4.5"} {
		if _, err := (&forwardedMsg{ack: bad}).Metadata(); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestAffinityOwner: every member computes the same owner for a workflow;
// the workflows spread over the members; a member that leaves hands over
// its own workflows only, and one that expires without a word is dropped
// after affinityExpiry.
func TestAffinityOwner(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	names := []string{"m1", "m2", "m3"}
	views := map[string]*affinity{}
	for _, self := range names {
		a := &affinity{self: self, members: map[string]time.Time{}, now: clock, log: slog.New(slog.DiscardHandler)}
		for _, other := range names {
			if other != self {
				a.members[other] = now
			}
		}
		views[self] = a
	}
	owners := map[string]string{}
	share := map[string]int{}
	for i := range 3000 {
		id := fmt.Sprintf("o-%d", i)
		o := views["m1"].owner(id)
		for _, self := range names[1:] {
			if got := views[self].owner(id); got != o {
				t.Fatalf("%s: m1 says %s owns it, %s says %s", id, o, self, got)
			}
		}
		owners[id] = o
		share[o]++
	}
	for _, m := range names {
		if share[m] < 800 {
			t.Errorf("shares %v: %s owns too few", share, m)
		}
	}
	views["m1"].forget("m3")
	for id, o := range owners {
		got := views["m1"].owner(id)
		if o != "m3" && got != o {
			t.Fatalf("%s moved from %s to %s when m3 left", id, o, got)
		}
		if got == "m3" {
			t.Fatalf("%s still owned by m3, which left", id)
		}
	}
	now = now.Add(affinityExpiry + time.Second)
	a := views["m2"]
	a.live = nil // as the hello ticker does
	for id := range owners {
		if got := a.owner(id); got != "m2" {
			t.Fatalf("%s owned by %s, whose hellos stopped", id, got)
		}
	}
}
