package orchestrator

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Clock tells the timer service what time it is. Tests inject a clock they
// move forward to fire days-long timers at once.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// ManualClock is a Clock a test moves by hand: it reads the wall clock plus
// the total of every Advance, so days-long timers fire at once.
type ManualClock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the wall clock plus the offset.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// TimerEntry is the value of a pending timer in the jetflow_timers bucket,
// under the key <workflow id>.<timer id>. It is JSON so `nats kv get` reads.
type TimerEntry struct {
	WorkflowID string    `json:"workflow_id"`
	TimerID    int       `json:"timer_id"`
	Due        time.Time `json:"due"`
	// Trace is the W3C traceparent of the decision that started the
	// timer: its fire joins the workflow's trace.
	Trace string `json:"trace,omitempty"`
}

// TimerKey is the bucket key of a timer.
func TimerKey(workflowID string, timerID int) string {
	return workflowID + "." + strconv.Itoa(timerID)
}

// timers writes timer decisions into the bucket and, in Run, fires them.
type timers struct {
	kv    jetstream.KeyValue
	js    jetstream.JetStream
	clock Clock
	log   *slog.Logger
	sweep time.Duration
	hist  *streams.History
	// park parks a workflow whose timer cannot fire, with the reason.
	park func(ctx context.Context, id, reason string) error
	// onFire observes the lateness of each fire recorded (metrics).
	onFire func(lateness time.Duration)

	mu   sync.Mutex
	live map[string]uint64 // key → revision of the entry we hold
	// tombs remembers deletes seen by the watch, so a sweep that read an
	// entry just before it was deleted cannot bring it back.
	tombs map[string]tomb
	due   timerHeap
	// fired counts the timers this instance fired (for tests and progress).
	fired int64
}

// apply mirrors timer decisions just stored in the history into the
// bucket: a started timer is put, a cancelled one deleted. It runs before the
// event that led to the decision is acked, so a crash in between leads to a
// redelivery that re-ensures the timers (see ensure).
func (t *timers) apply(ctx context.Context, id string, vals []schema.Kinded) error {
	for _, v := range vals {
		switch d := v.(type) {
		case *schema.TimerStarted:
			if err := t.put(ctx, id, d); err != nil {
				return err
			}
		case *schema.TimerCancelled:
			if err := t.kv.Delete(ctx, TimerKey(id, d.TimerID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("delete timer: %w", err)
			}
		}
	}
	return nil
}

// dropAll deletes the bucket entries of the pending timers of a workflow that
// ended.
func (t *timers) dropAll(ctx context.Context, id string, pending map[int]*schema.TimerStarted) error {
	for tid := range pending {
		if err := t.kv.Delete(ctx, TimerKey(id, tid)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("delete timer: %w", err)
		}
	}
	return nil
}

func (t *timers) put(ctx context.Context, id string, d *schema.TimerStarted) error {
	b, _ := json.Marshal(TimerEntry{WorkflowID: id, TimerID: d.ID, Due: d.Due, Trace: traceParent(ctx)})
	if _, err := t.kv.Put(ctx, TimerKey(id, d.ID), b); err != nil {
		return fmt.Errorf("put timer: %w", err)
	}
	return nil
}

// ensure makes sure every pending timer of a history is in the bucket. It
// creates missing entries only: an entry that exists is left alone.
func (t *timers) ensure(ctx context.Context, id string, pending map[int]*schema.TimerStarted) error {
	for _, d := range pending {
		b, _ := json.Marshal(TimerEntry{WorkflowID: id, TimerID: d.ID, Due: d.Due})
		if _, err := t.kv.Create(ctx, TimerKey(id, d.ID), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("ensure timer: %w", err)
		}
	}
	return nil
}

type tomb struct {
	rev uint64
	at  time.Time
}

type dueTimer struct {
	key   string
	rev   uint64
	entry TimerEntry
	at    time.Time // when to (re)try firing: Due, later after a failed fire
}

type timerHeap []*dueTimer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(*dueTimer)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

// hold records an entry seen in the bucket.
func (t *timers) hold(e jetstream.KeyValueEntry) {
	var te TimerEntry
	if err := json.Unmarshal(e.Value(), &te); err != nil || te.WorkflowID == "" {
		t.log.Warn("timer entry unreadable, ignored", "key", e.Key(), "err", err)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if rev, ok := t.live[e.Key()]; ok && rev >= e.Revision() {
		return
	}
	if tb, ok := t.tombs[e.Key()]; ok && tb.rev > e.Revision() {
		return
	}
	t.live[e.Key()] = e.Revision()
	heap.Push(&t.due, &dueTimer{key: e.Key(), rev: e.Revision(), entry: te, at: te.Due})
}

func (t *timers) forget(key string, rev uint64) {
	t.mu.Lock()
	delete(t.live, key)
	t.tombs[key] = tomb{rev: rev, at: time.Now()}
	t.mu.Unlock()
}

// buryBefore drops the tombstones older than a completed sweep that started
// at start: that sweep could not have seen the entries they cover.
func (t *timers) buryBefore(start time.Time) {
	t.mu.Lock()
	for k, tb := range t.tombs {
		if tb.at.Before(start) {
			delete(t.tombs, k)
		}
	}
	t.mu.Unlock()
}

// Pending returns the number of timers this instance holds.
func (t *timers) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live)
}

// popDue removes and returns the timers due at now.
func (t *timers) popDue(now time.Time, max int) []*dueTimer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*dueTimer
	for len(t.due) > 0 && len(out) < max && !t.due[0].at.After(now) {
		d := heap.Pop(&t.due).(*dueTimer)
		if t.live[d.key] != d.rev {
			continue // deleted or replaced since
		}
		delete(t.live, d.key)
		out = append(out, d)
	}
	return out
}

// run watches the bucket, sweeps it periodically (a watch can miss entries
// across reconnects), and fires due timers.
func (t *timers) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if err := t.load(ctx, true); err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(t.sweep)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				start := time.Now()
				if err := t.load(ctx, false); err != nil {
					if ctx.Err() == nil {
						t.log.Warn("timer sweep failed", "err", err)
					}
					continue
				}
				t.buryBefore(start)
			}
		}
	}()

	fire := make(chan *dueTimer, 1024)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range fire {
				t.fire(ctx, d)
			}
		}()
	}
	defer close(fire)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for {
			batch := t.popDue(t.clock.Now(), 4096)
			if len(batch) == 0 {
				break
			}
			for _, d := range batch {
				select {
				case fire <- d:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

// load reads every entry of the bucket into the heap. With watch set, it
// keeps the watcher running to follow puts and deletes.
func (t *timers) load(ctx context.Context, watch bool) error {
	var opts []jetstream.WatchOpt
	if !watch {
		opts = append(opts, jetstream.IgnoreDeletes())
	}
	w, err := t.kv.WatchAll(ctx, opts...)
	if err != nil {
		return fmt.Errorf("watch timers: %w", err)
	}
	initial := make(chan struct{})
	go func() {
		defer w.Stop()
		done := false
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if !done {
						done = true
						close(initial)
					}
					if !watch {
						return
					}
					continue
				}
				if e.Operation() == jetstream.KeyValuePut {
					t.hold(e)
				} else {
					t.forget(e.Key(), e.Revision())
				}
			}
		}
	}()
	select {
	case <-initial:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fire appends TimerFired to the workflow's history, then removes the entry
// if it is still the one fired.
func (t *timers) fire(ctx context.Context, d *dueTimer) {
	m, err := streams.NewMsg(streams.FiredSubject(d.entry.WorkflowID, d.entry.TimerID), &schema.TimerFired{TimerID: d.entry.TimerID, Due: d.entry.Due})
	if err != nil {
		t.log.Error("encode timer fire", "err", err)
		return
	}
	m.Header.Set(jetstream.MsgIDHeader, "fired-"+d.key+"-"+strconv.FormatInt(d.entry.Due.UnixNano(), 10))
	m.Header.Set(schema.HeaderWorkflowID, d.entry.WorkflowID)
	defer traceFire(ctx, d.entry, m.Header)()
	// A timer fires once: a second fire (another instance, a crash between
	// fire and delete) is refused by the server.
	written, err := streams.PublishFirst(ctx, t.js, m)
	if err == nil && !written {
		err = t.firedBefore(ctx, d, m.Header.Get(jetstream.MsgIDHeader))
	}
	if errors.Is(err, streams.ErrSubjectTaken) {
		// Something else holds the fire's subject: the timer can never fire
		// into the history. The workflow is parked with the reason, and the
		// entry dropped, instead of retrying for ever.
		reason := fmt.Sprintf("timer %d cannot fire: %s already holds a message that is not this fire", d.entry.TimerID, m.Subject)
		if perr := t.park(ctx, d.entry.WorkflowID, reason); perr != nil {
			err = fmt.Errorf("%w; and parking the workflow: %v", err, perr)
		} else {
			t.log.Error("timer cannot fire, workflow parked", "key", d.key, "reason", reason)
			t.drop(ctx, d)
			return
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			t.log.Warn("timer fire failed, will retry", "key", d.key, "err", err)
			d.at = t.clock.Now().Add(time.Second)
			t.mu.Lock()
			t.live[d.key] = d.rev
			heap.Push(&t.due, d)
			t.mu.Unlock()
		}
		return
	}
	t.mu.Lock()
	t.fired++
	t.mu.Unlock()
	if written && t.onFire != nil {
		t.onFire(t.clock.Now().Sub(d.entry.Due))
	}
	failpoint.Hit("timers.after-fire")
	t.drop(ctx, d)
}

// drop deletes the entry of a timer that is done with, if it is still the
// one held.
func (t *timers) drop(ctx context.Context, d *dueTimer) {
	err := t.kv.Delete(ctx, d.key, jetstream.LastRevision(d.rev))
	if err != nil && ctx.Err() == nil {
		t.log.Debug("timer entry changed or gone after fire", "key", d.key, "err", err)
	}
}

// firedBefore tells, when a fire was not written because its subject holds
// a message, whether that message is this fire (from another instance, or
// before a crash): nil when it is, streams.ErrSubjectTaken when it is
// anything else.
func (t *timers) firedBefore(ctx context.Context, d *dueTimer, msgID string) error {
	ev, err := t.hist.LastFromLeader(ctx, streams.FiredSubject(d.entry.WorkflowID, d.entry.TimerID))
	if err != nil {
		return err
	}
	if ev == nil {
		return fmt.Errorf("fire of %s refused, and its subject is empty", d.key)
	}
	if f, ok := ev.Value.(*schema.TimerFired); ev.MsgID == msgID || (ok && f.TimerID == d.entry.TimerID && f.Due.Equal(d.entry.Due)) {
		return nil
	}
	return fmt.Errorf("%w: %s holds message #%d", streams.ErrSubjectTaken, ev.Subject, ev.Seq)
}

// parkTaken parks workflow id with reason: a workflow.blocked event fenced
// on the last sequence of its tree, unless it has finished meanwhile.
func (o *Orchestrator) parkTaken(ctx context.Context, id, reason string) error {
	for attempt := 0; attempt < maxFenceRetries; attempt++ {
		last, err := o.hist.LastFromLeader(ctx, streams.Tree(id))
		if err != nil || last == nil {
			return err
		}
		done, err := o.hist.LastFromLeader(ctx, streams.DoneFilterOf(id))
		if err != nil || done != nil {
			return err
		}
		m, err := streams.NewMsg(streams.BlockedSubject(id, last.Seq), &schema.WorkflowBlocked{Reason: reason})
		if err != nil {
			return err
		}
		m.Header.Set(jetstream.MsgIDHeader, "blocked-"+id+"-"+strconv.FormatUint(last.Seq, 10))
		m.Header.Set(schema.HeaderWorkflowID, id)
		_, _, err = o.hist.Append(ctx, id, last.Seq, []*nats.Msg{m})
		if !errors.Is(err, streams.ErrFenced) {
			return err
		}
	}
	return fmt.Errorf("park %s: %w %d times in a row", id, streams.ErrFenced, maxFenceRetries)
}
