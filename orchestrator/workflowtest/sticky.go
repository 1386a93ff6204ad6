package workflowtest

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
)

// StickyReport counts how the decisions of CheckSticky were taken.
type StickyReport struct {
	// Decisions is the number of points of the history decided.
	Decisions int
	// Hits were decided by the live workflow fed only the new events;
	// Replays by a full replay (the first decision, and every point where
	// the live workflow refused).
	Hits, Replays int
}

// CheckSticky decides a saved history step by step twice, as the
// orchestrator would at each wake: once with the workflow kept live
// between decisions (workflow.Start, then Live.Advance with the new events,
// falling back to a full replay when it refuses), once with a full replay
// of the history so far. It returns an error naming the first point where
// the two differ in any decision, the end, the block or the signals left.
//
// cuts are the history lengths (in events, the start event included) at
// which to decide, in increasing order; nil decides after every event.
// A workflow whose code passes the saved histories of its orders here
// behaves the same whether or not an orchestrator keeps it cached.
func CheckSticky(fn workflow.Func, id string, history []workflow.Event, cuts []int) (StickyReport, error) {
	var rep StickyReport
	if cuts == nil {
		for n := 1; n <= len(history); n++ {
			cuts = append(cuts, n)
		}
	}
	recorded := map[int]*schema.Command{}
	for _, ev := range history {
		if c, ok := ev.Value.(*schema.Command); ok {
			recorded[c.ID] = c
		}
	}
	var live *workflow.Live
	defer func() { live.Close() }()
	prev := 0
	for _, n := range cuts {
		if n <= prev || n > len(history) {
			return rep, fmt.Errorf("cut %d: want increasing lengths in 1..%d", n, len(history))
		}
		rep.Decisions++
		var sticky workflow.Outcome
		ok := false
		if live != nil {
			sticky, ok = live.Advance(history[prev:n])
		}
		if ok {
			rep.Hits++
		} else {
			live.Close()
			rep.Replays++
			sticky, live = workflow.Start(fn, id, history[:n], nil)
		}
		full := workflow.Replay(fn, id, history[:n], nil)
		// The orchestrator stamps each command it writes; the history
		// holds them stamped, and the next decision checks its own
		// decisions against what was written.
		stamp(sticky, recorded)
		stamp(full, recorded)
		if err := sameOutcome(sticky, full); err != nil {
			return rep, fmt.Errorf("after %d events (history event #%d): kept live: %w", n, history[n-1].Seq, err)
		}
		if live != nil && live.Closed() {
			live = nil
		}
		prev = n
	}
	return rep, nil
}

// stamp gives the fresh commands of o the idempotency key and reply
// subject the history recorded for them.
func stamp(o workflow.Outcome, recorded map[int]*schema.Command) {
	for _, d := range o.Decisions {
		if c, ok := d.(*schema.Command); ok {
			if rec := recorded[c.ID]; rec != nil {
				c.IdempotencyKey, c.ReplyTo = rec.IdempotencyKey, rec.ReplyTo
			}
		}
	}
}

// sameOutcome compares two outcomes by their encoded values.
func sameOutcome(a, b workflow.Outcome) error {
	if len(a.Decisions) != len(b.Decisions) {
		return fmt.Errorf("%d decisions, a full replay %d", len(a.Decisions), len(b.Decisions))
	}
	for i := range a.Decisions {
		if !sameValue(a.Decisions[i], b.Decisions[i]) {
			return fmt.Errorf("decision %d is %s %+v, a full replay's %s %+v", i+1, a.Decisions[i].Kind(), a.Decisions[i], b.Decisions[i].Kind(), b.Decisions[i])
		}
	}
	if (a.Finished == nil) != (b.Finished == nil) || (a.Finished != nil && !sameValue(a.Finished, b.Finished)) {
		return fmt.Errorf("finished %+v, a full replay %+v", a.Finished, b.Finished)
	}
	if (a.Blocked == nil) != (b.Blocked == nil) || (a.Blocked != nil && firstLine(a.Blocked.Reason) != firstLine(b.Blocked.Reason)) {
		return fmt.Errorf("blocked %+v, a full replay %+v", a.Blocked, b.Blocked)
	}
	if a.Waiting != b.Waiting {
		return fmt.Errorf("%d signals waiting, a full replay %d", a.Waiting, b.Waiting)
	}
	if len(a.Unreceived) != len(b.Unreceived) {
		return fmt.Errorf("%d signals unreceived, a full replay %d", len(a.Unreceived), len(b.Unreceived))
	}
	for i := range a.Unreceived {
		if a.Unreceived[i].Seq != b.Unreceived[i].Seq {
			return fmt.Errorf("unreceived signal %d is #%d, a full replay's #%d", i+1, a.Unreceived[i].Seq, b.Unreceived[i].Seq)
		}
	}
	return nil
}

func sameValue(a, b schema.Kinded) bool {
	x, ka, err := schema.Encode(a)
	if err != nil {
		return false
	}
	y, kb, err := schema.Encode(b)
	return err == nil && ka == kb && bytes.Equal(x, y)
}

// firstLine is a blocked reason without the stack a panic adds (it names
// goroutines, which differ from one run to the next).
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
