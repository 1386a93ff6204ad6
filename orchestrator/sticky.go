package orchestrator

import (
	"container/list"
	"context"
	"slices"
	"time"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// DefaultStickyWorkflows is the default of Config.StickyWorkflows.
const DefaultStickyWorkflows = 10000

// sticky is the part of a workflow's state that sticky execution adds: the
// workflow kept live since this process's last decision.
type sticky struct {
	// live is parked here between decisions, guarded by the cache's lock;
	// the loop deciding the workflow takes it out (cache.takeLive) and
	// hands it back (cache.keepLive), so an eviction never closes a live
	// workflow in use.
	live *workflow.Live
	// keptAt is the state's element in the cache's list of kept lives.
	keptAt *list.Element
}

// keptLives is the LRU of the states that hold a live workflow, bounded
// apart from the history cache: a live workflow holds goroutines.
type keptLives struct {
	max     int
	ll      *list.List
	metrics *metrics.Metrics
	// closed is set once the orchestrator stops: nothing is kept after.
	closed bool
}

// takeLive takes st's live workflow out of the cache for the loop that
// decides st, or returns nil.
func (c *cache) takeLive(st *state) *workflow.Live {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := st.live
	c.unkeep(st)
	return l
}

// keepLive hands l back to the cache after a decision on st whose
// decisions were recorded as the live workflow issued them. It is closed
// instead when the state has left the cache meanwhile, when sticky
// execution is off, or when the orchestrator stopped; keeping it may close
// the live workflow kept longest ago, beyond the bound.
func (c *cache) keepLive(st *state, l *workflow.Live) {
	if l.Closed() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := &c.kept
	if e, ok := c.items[st.id]; k.max <= 0 || k.closed || !ok || e.Value.(*state) != st {
		l.Close()
		return
	}
	c.release(st) // one loop decides st at a time: nothing is parked here
	if k.ll == nil {
		k.ll = list.New()
	}
	st.live, st.keptAt = l, k.ll.PushFront(st)
	for k.ll.Len() > k.max {
		c.release(k.ll.Back().Value.(*state))
	}
	k.metrics.StickyWorkflows(k.ll.Len())
}

// unkeep takes st's live workflow off the list without closing it. The
// caller holds c.mu.
func (c *cache) unkeep(st *state) {
	if st.keptAt != nil {
		c.kept.ll.Remove(st.keptAt)
		c.kept.metrics.StickyWorkflows(c.kept.ll.Len())
	}
	st.live, st.keptAt = nil, nil
}

// release closes st's parked live workflow, if any: its goroutines exit
// before release returns. The caller holds c.mu.
func (c *cache) release(st *state) {
	l := st.live
	c.unkeep(st)
	l.Close()
}

// releaseAll closes every parked live workflow and keeps none from now on.
func (c *cache) releaseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kept.closed = true
	for c.kept.ll != nil && c.kept.ll.Len() > 0 {
		c.release(c.kept.ll.Front().Value.(*state))
	}
}

// replay decides on st's history. live, when set, is the workflow kept
// from this process's last decision on st: it is fed only the events read
// since, and decides if it can confirm its own last decisions among them;
// otherwise, and without live, the whole history is replayed. It returns
// the outcome and the live workflow to keep, if any.
func (w *worker) replay(fn workflow.Func, id string, st *state, live *workflow.Live) (workflow.Outcome, *workflow.Live) {
	m := w.o.cfg.Metrics
	begin := time.Now()
	defer func() { m.Replay(time.Since(begin)) }()
	if w.o.cfg.StickyWorkflows <= 0 {
		return workflow.Replay(fn, id, st.events, w.o.log), nil
	}
	if live != nil {
		out, ok := live.Advance(st.eventsAfter(live.At()))
		if ok && w.o.cfg.VerifySticky {
			if full, err := verifySticky(fn, id, st, out); err != nil {
				w.o.log.Error("sticky decision differs from a full replay", "workflow_id", id, "err", err)
				m.StickyMismatch()
				live.Close()
				return full, nil
			}
		}
		m.StickyLookup(ok)
		if ok {
			return out, live
		}
	} else {
		m.StickyLookup(false)
	}
	return workflow.Start(fn, id, st.events, w.o.log)
}

// verifySticky checks a sticky outcome against a full replay of st's
// history, and returns the full replay's outcome with the first
// difference. A side effect drawn fresh is drawn again by the second run,
// and may differ: an outcome that draws one is checked instead by replaying
// the history followed by its decisions, which must confirm them all and
// end the same way.
func verifySticky(fn workflow.Func, id string, st *state, out workflow.Outcome) (workflow.Outcome, error) {
	full := workflow.Replay(fn, id, st.events, nil)
	err := workflow.CompareOutcomes(out, full)
	if err == nil || !drawsSideEffect(out) {
		return full, err
	}
	evs := slices.Clip(st.events)
	at := st.events[len(st.events)-1]
	for i, d := range out.Decisions {
		evs = append(evs, workflow.Event{Seq: st.lastSeq + uint64(i) + 1, Time: at.Time, Value: d})
	}
	confirmed := workflow.Replay(fn, id, evs, nil)
	rest := out
	rest.Decisions = nil
	if err := workflow.CompareOutcomes(rest, confirmed); err != nil {
		return full, err
	}
	return full, nil
}

// drawsSideEffect reports whether the outcome records a side effect.
func drawsSideEffect(out workflow.Outcome) bool {
	for _, d := range out.Decisions {
		if m, ok := d.(*schema.Marker); ok && m.Name == "side_effect" {
			return true
		}
	}
	return false
}

// readTail reads what is new in st's history. Read costs the number of
// subjects of the workflow's tree, ReadAfter the messages the stream
// stored since the last read (every workflow's) plus a fixed cost: the
// server counts what is pending by walking the whole message block the
// read starts in (one message per subject makes it check each subject's
// last block), thousands of messages. So a long history (more than
// readAfterMin events) woken after fewer messages than it has events is
// read the second way, so that neither the replay nor the read of a wake
// grows with the history; a short one always the first.
func (w *worker) readTail(ctx context.Context, st *state, wake uint64) ([]streams.Event, error) {
	if len(st.events) > readAfterMin && st.lastSeq > 0 && wake > st.lastSeq && wake-st.lastSeq < uint64(len(st.events)) {
		return w.o.hist.ReadAfter(ctx, st.id, st.lastSeq)
	}
	return w.o.hist.Read(ctx, st.id, st.lastSeq)
}

// readAfterMin is the history length above which a wake may be read by
// walking the stream (ReadAfter) rather than the tree (Read).
const readAfterMin = 1024

// eventsAfter returns the events of the history after stream sequence seq.
// It looks from the end: what is new is short.
func (s *state) eventsAfter(seq uint64) []workflow.Event {
	i := len(s.events)
	for i > 0 && s.events[i-1].Seq > seq {
		i--
	}
	return s.events[i:]
}

// recordedAsIssued reports whether vals, the messages a decision appends,
// are the outcome's decisions as the code issued them, nothing else: the
// decision was not turned into a blocked event (a message too large, a bad
// subject token) and did not end the workflow.
func recordedAsIssued(out workflow.Outcome, vals []schema.Kinded) bool {
	if out.Finished != nil || out.Blocked != nil || len(vals) != len(out.Decisions) {
		return false
	}
	for i, v := range vals {
		if v != out.Decisions[i] {
			return false
		}
	}
	return true
}
