package workflowtest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

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
		if err := workflow.CompareOutcomes(sticky, full); err != nil {
			return rep, fmt.Errorf("after %d events (history event #%d): kept live (a) against a full replay (b): %w", n, history[n-1].Seq, err)
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

// stickyMismatches is a log handler that keeps the orchestrator's reports
// of a sticky decision that a full replay decided differently.
type stickyMismatches struct {
	mu   sync.Mutex
	msgs []string
}

func (h *stickyMismatches) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }

func (h *stickyMismatches) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "sticky decision differs from a full replay" {
		return nil
	}
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		msg += " " + a.String()
		return true
	})
	h.mu.Lock()
	h.msgs = append(h.msgs, msg)
	h.mu.Unlock()
	return nil
}

func (h *stickyMismatches) WithAttrs([]slog.Attr) slog.Handler { return h }

func (h *stickyMismatches) WithGroup(string) slog.Handler { return h }

func (h *stickyMismatches) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msgs
}
