package orchestrator

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Errors that decide what happens to the event that woke a decision.
var (
	// errUnknownWorkflow: the event belongs to no started workflow.
	errUnknownWorkflow = errors.New("no workflow.started event in this workflow's history")
	// errUnknownType: no workflow function of that type is registered here.
	errUnknownType = errors.New("workflow type not registered in this orchestrator")
	// errStaleRead: the history read did not reach the waking event.
	errStaleRead = errors.New("history read behind the event that woke it")
)

// state is what an orchestrator knows of one workflow: its history from the
// start event on, and the sequence of the last message of its tree.
type state struct {
	id      string
	lastSeq uint64
	// trace is the traceparent of the start event: the workflow's trace.
	trace   string
	events  []workflow.Event
	start   *schema.WorkflowStarted
	status  schema.Status
	blocked string // reason of the last blocked event, if it is the last decision
	// decidedSeq is the lastSeq of the last decision this process stored
	// (or found empty) for the workflow; 0 before any.
	decidedSeq uint64
	// timers are the started timers that have not fired or been cancelled.
	timers map[int]*schema.TimerStarted
	// ensured are the pending timers this process knows to be in the
	// timers bucket: it put them there after its own append, or made sure
	// of them. A pending timer read from the history that is not among them
	// (a cold load, or a timer another orchestrator appended and may have
	// died before putting in the bucket) is ensured before deciding.
	ensured map[int]bool
	ops
	// links are its children and the signals it sent (children.go).
	links linkState
	sticky
	// startChecked: the start's parent, run and signal were found
	// believable (forgery.go).
	startChecked bool
}

// unensured returns the pending timers not yet known to be in the bucket.
func (s *state) unensured() map[int]*schema.TimerStarted {
	var out map[int]*schema.TimerStarted
	for id, t := range s.timers {
		if !s.ensured[id] {
			if out == nil {
				out = map[int]*schema.TimerStarted{}
			}
			out[id] = t
		}
	}
	return out
}

// markEnsured records that timer id is in the bucket.
func (s *state) markEnsured(id int) {
	if s.ensured == nil {
		s.ensured = map[int]bool{}
	}
	s.ensured[id] = true
}

func (s *state) add(evs []streams.Event) {
	for _, ev := range evs {
		s.lastSeq = ev.Seq
		if ev.DecodeErr != nil || !streams.OnItsSubject(ev) {
			// Skipped on every replay alike: undecodable (dead-lettered when
			// it woke us), or a value published by hand on a subject it does
			// not belong to (a "fire" of timer 3 on wf.<id>.fired.5).
			continue
		}
		if s.start == nil {
			st, ok := ev.Value.(*schema.WorkflowStarted)
			if !ok {
				continue // stray message before the start
			}
			s.start, s.status = st, schema.StatusRunning
			s.trace = ev.TraceParent
		}
		s.operator(ev)
		s.links.link(ev.Value)
		switch v := ev.Value.(type) {
		case *schema.TimerStarted:
			if s.timers == nil {
				s.timers = map[int]*schema.TimerStarted{}
			}
			s.timers[v.ID] = v
		case *schema.TimerCancelled:
			delete(s.timers, v.TimerID)
		case *schema.TimerFired:
			if t := s.timers[v.TimerID]; t != nil && t.Due.Equal(v.Due) {
				delete(s.timers, v.TimerID)
			}
		case *schema.WorkflowFinished:
			s.status = v.Status
			s.timers = nil
			s.finished, s.ending = v, nil
		case *schema.WorkflowBlocked:
			s.status, s.blocked = schema.StatusBlocked, v.Reason
		case *schema.Command, *schema.Marker, *schema.UpdateCompleted, *schema.ChildStarted, *schema.ChildCancelRequested, *schema.SignalExternal:
			if s.status == schema.StatusBlocked {
				s.status, s.blocked = schema.StatusRunning, ""
			}
		}
		s.events = append(s.events, workflow.Event{Seq: ev.Seq, Time: ev.Time, Value: ev.Value})
	}
}

// cache is an LRU of workflow states shared by the decision loops. The
// lock guards the list and the map only: a state is read and written by the
// loop that holds its workflow (scheduler.take), and by no other. A state
// evicted while its loop uses it stays that loop's until the decision ends;
// the next wake of that workflow loads it afresh.
type cache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[string]*list.Element
	kept  keptLives
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *cache) get(id string) *state {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[id]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*state)
	}
	s := &state{id: id}
	c.items[id] = c.ll.PushFront(s)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*state).id)
		c.release(old.Value.(*state))
	}
	return s
}

// peek returns the cached state of id, or nil, without creating one.
func (c *cache) peek(id string) *state {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[id]; ok {
		return e.Value.(*state)
	}
	return nil
}

func (c *cache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[id]; ok {
		c.ll.Remove(e)
		delete(c.items, id)
		c.release(e.Value.(*state))
	}
}

// worker is one decision loop; the loops share the orchestrator's cache.
type worker struct {
	o     *Orchestrator
	cache *cache
	// trace holds the trace headers of the decision being taken: every
	// message it appends carries them.
	trace nats.Header
}

// admit makes the checks that concern one message, before it joins its
// workflow's batch: a subject that names no workflow or an event that does
// not decode is dead-lettered here, on its own. It returns the message's
// stream sequence, and ok=false when the message is settled.
func (w *worker) admit(ctx context.Context, m jetstream.Msg) (seq uint64, ok bool) {
	if w.o.lastDelivery(ctx, m, "wf", w.o.cfg.MaxDeliver.Decisions, w.parkUndeliverable) {
		return 0, false
	}
	id, _, ok := streams.ParseSubject(m.Subject())
	if !ok || streams.ValidHistoryID(id) != nil {
		w.deadLetter(ctx, m, "subject is not a workflow history subject")
		return 0, false
	}
	if _, err := schema.Decode(m.Headers().Get(schema.HeaderKind), m.Headers().Get(schema.HeaderSchema), m.Data()); err != nil {
		w.deadLetter(ctx, m, "undecodable history event: "+err.Error())
		return 0, false
	}
	if md, err := m.Metadata(); err == nil {
		// A partitioned history keeps each workflow in the stream its
		// ID hashes to; a message published by hand to another
		// partition's subjects (wfp.<p>.<id>.…) is not part of its
		// history, and its sequence is another stream's.
		if home := streams.HistoryStreamOf(id); md.Stream != home {
			w.deadLetter(ctx, m, "event stored in "+md.Stream+", not in "+home+", the history stream of "+id)
			return 0, false
		}
		seq = md.Sequence.Stream
	}
	return seq, true
}

// handleBatch processes every message waiting for workflow id, which this
// loop holds (scheduler.take). The messages that pass admit wake one
// decision, woken by the highest of their sequences: this is where the
// events that came in while the workflow waited or was decided — a flood of
// signals, say — are taken in one replay instead of one replay each. Each
// message is acked only once the decision it led to is stored.
func (w *worker) handleBatch(ctx context.Context, id string, msgs []jetstream.Msg) {
	batch := msgs[:0:0]
	var wake uint64
	for _, m := range msgs {
		seq, ok := w.admit(ctx, m)
		if !ok {
			continue
		}
		batch = append(batch, m)
		wake = max(wake, seq)
	}
	if len(batch) == 0 {
		return
	}
	err := w.decideWake(ctx, id, wake)
	log := w.o.log
	switch {
	case err == nil:
		for _, m := range batch {
			if err := m.Ack(); err != nil {
				log.Debug("ack", "workflow_id", id, "err", err)
			}
		}
	case errors.Is(err, errUnknownWorkflow):
		w.cache.drop(id)
		reason, archived := w.o.orphanReason(ctx, id, err)
		for _, m := range batch {
			w.deadLetter(ctx, m, reason)
		}
		if archived {
			// Late events of an archived workflow: in the dead letters now.
			w.o.dropOrphan(ctx, id, wake+1)
		}
	case errors.Is(err, errUnknownType):
		log.Warn("cannot decide", "workflow_id", id, "err", err)
		for _, m := range batch {
			_ = m.NakWithDelay(5 * time.Second)
		}
	default:
		w.cache.drop(id)
		log.Warn("decision failed, will retry", "workflow_id", id, "err", err, "events", len(batch))
		for _, m := range batch {
			_ = m.NakWithDelay(retryDelay(m))
		}
	}
}

// decideWake decides for a wake at sequence wake, unless the last decision
// of this process already covered it: when the wake's events were all in
// the history that decision replayed (wake <= decidedSeq), that decision is
// stored and a replay would find nothing new to do, so the wake is done
// without reading or replaying. A flood whose events were read in one
// batch's replay thus costs the following batches nothing but their acks.
// Events that arrived since have sequences above decidedSeq and decide as
// usual.
func (w *worker) decideWake(ctx context.Context, id string, wake uint64) error {
	if st := w.cache.peek(id); wake > 0 && st != nil && wake <= st.decidedSeq {
		return nil
	}
	begin := time.Now()
	err := w.decide(ctx, id, wake)
	w.o.cfg.Metrics.Decision(time.Since(begin))
	if err != nil {
		return err
	}
	// decide leaves the state at the sequence its stored (or empty)
	// decision was taken on; a finished workflow has left the cache.
	if st := w.cache.peek(id); st != nil {
		st.decidedSeq = st.lastSeq
	}
	return nil
}

func retryDelay(m jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := m.Metadata(); err == nil {
		n = md.NumDelivered
	}
	d := 100 * time.Millisecond << min(n, 8)
	return min(d, 10*time.Second)
}

func (w *worker) deadLetter(ctx context.Context, m jetstream.Msg, reason string) {
	w.o.refuse(ctx, m, "wf", reason)
}

// maxBlockedText bounds the reason and the steps a blocked event names.
const maxBlockedText = 4096

// maxFenceRetries bounds how often one wake re-reads and re-decides after
// losing the fence before it lets JetStream redeliver the event.
const maxFenceRetries = 8

// decide brings workflow id up to date: read what is new in its history,
// replay, and append the next decision fenced on the last sequence read.
// wakeSeq is the stream sequence of the event that woke the decision: a
// read that does not reach it (a stale replica answering a direct get on a
// clustered stream) is retried rather than taken for "nothing to do".
func (w *worker) decide(ctx context.Context, id string, wakeSeq uint64) error {
	st := w.cache.get(id)
	w.o.cfg.Metrics.CacheLookup(st.lastSeq > 0)
	defer func() { w.trace = nil }()
	// The workflow kept live since the last decision, if any: handed back
	// to the cache once a decision is recorded as it issued it, closed on
	// every other way out.
	live := w.cache.takeLive(st)
	defer func() { live.Close() }()
	for attempt := 0; attempt < maxFenceRetries; attempt++ {
		evs, err := w.readTail(ctx, st, wakeSeq)
		if err != nil {
			return err
		}
		w.o.cfg.Metrics.HistoryRead(len(evs))
		st.add(evs)
		if st.lastSeq < wakeSeq {
			if attempt == maxFenceRetries-1 {
				return fmt.Errorf("%w: read up to %d, woken by %d", errStaleRead, st.lastSeq, wakeSeq)
			}
			time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
			continue
		}
		if missing := st.unensured(); len(missing) > 0 {
			if err := w.o.timers.ensure(ctx, id, missing); err != nil {
				return err
			}
			for tid := range missing {
				st.markEnsured(tid)
			}
		}
		if st.start == nil {
			return errUnknownWorkflow
		}
		if err := w.o.ensureLinks(w.traced(ctx), id, st, st.finishedEnd()); err != nil {
			return err
		}
		if st.status.Terminal() {
			// A run that continued as new: its next run is started, again
			// if the wake is redelivered after a crash (continueasnew.go).
			if err := w.o.startNextRun(ctx, id, st.start, st.finished, nil); err != nil {
				return err
			}
			w.cache.drop(id) // late results for it are ignored; a miss costs one read
			return nil
		}
		span := w.startDecision(ctx, id, st)
		defer span.End()
		first := !hasDecision(st.events)
		var out workflow.Outcome
		if end := st.operatorEnd(); end != nil {
			// terminate, resolve: the end is the operator's, the code is
			// not run again.
			out.Finished = end
		} else if end, err := w.o.archivedEnd(ctx, id, first, st); err != nil {
			return err
		} else if end != nil {
			// The ID belongs to an archived workflow: refused, no command.
			out.Finished = end
		} else if reason, err := w.o.startForgery(ctx, id, st); err != nil {
			return err
		} else if reason != "" {
			// A start whose parent, run or signal is not believed: parked,
			// nothing is decided from it.
			out.Blocked = &schema.WorkflowBlocked{Reason: reason}
		} else {
			fn, ok := w.o.cfg.Registry.Lookup(st.start.Type)
			if !ok {
				return fmt.Errorf("%w: %q", errUnknownType, st.start.Type)
			}
			out, live = w.replay(fn, id, st, live)
		}
		msgs, vals, err := w.messages(id, st, out)
		if err != nil || len(msgs) == 0 {
			if err == nil && recordedAsIssued(out, vals) {
				w.cache.keepLive(st, live) // nothing to record: it waits on
				live = nil
			}
			return err
		}
		if out.Finished != nil && vals[len(vals)-1] != schema.Kinded(out.Finished) {
			// messages parked the workflow instead (a message too large):
			// it has not finished, and nothing may act as if it had.
			out = workflow.Outcome{Blocked: vals[len(vals)-1].(*schema.WorkflowBlocked)}
		}
		if out.Finished != nil && len(out.Unreceived) > 0 && out.Finished.Status != schema.StatusContinuedAsNew {
			// Signals the workflow will never receive are late ones: their
			// routes start before the end is appended, so a crash in between
			// only starts them again (idempotently) on the next wake.
			if err := w.o.routeUnreceived(ctx, id, st.start.Type, out.Finished.Status, out.Unreceived); err != nil {
				return err
			}
		}
		failpoint.Hit("orchestrator.before-append")
		_, acked, err := w.o.hist.Append(ctx, id, st.lastSeq, msgs)
		if err == nil {
			failpoint.Hit("orchestrator.after-append")
			w.logOutcome(id, out)
			w.observeAppend(st, first, out, span)
			if err := w.applyTimers(ctx, id, st, vals); err != nil {
				return err
			}
			if err := w.applyLinks(ctx, id, st, vals, out.Finished); err != nil {
				return err
			}
			// The cache is not advanced past what was read: on a clustered
			// stream an event proposed before our write may be stored before
			// it without the fence seeing it, so the next wake reads our own
			// messages back with anything that landed among them.
			if out.Finished != nil {
				w.cache.drop(id)
				if err := w.o.startNextRun(ctx, id, st.start, out.Finished, w.trace); err != nil {
					return err
				}
			} else if recordedAsIssued(out, vals) {
				w.cache.keepLive(st, live)
				live = nil
			}
			return nil
		}
		// The live workflow issued decisions that are not recorded, or not
		// all: the next attempt replays in full.
		live.Close()
		live = nil
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.Header.Get(jetstream.MsgIDHeader)
		}
		n, tail, rerr := w.o.hist.Landed(ctx, id, st.lastSeq, ids)
		if rerr != nil {
			return fmt.Errorf("append: %w; and re-reading the tail: %v", err, rerr)
		}
		// A stale replica may not show what the server acknowledged.
		n = max(n, acked)
		st.add(tail)
		if errors.Is(err, streams.ErrSubjectTaken) {
			// Something other than this decision sits on the subject of
			// message n: no re-read can make room for it.
			if err := w.applyTimers(ctx, id, st, vals[:n]); err != nil {
				return err
			}
			taken := msgs[min(n, len(msgs)-1)].Subject
			perr := w.park(ctx, id, st, fmt.Sprintf("decision cannot be recorded: %s already holds a message that is not this decision (%v)", taken, err))
			// The tail read above is not all replayed: the next wake reads
			// and replays afresh rather than count its events as decided.
			w.cache.drop(id)
			return perr
		}
		if n > 0 {
			// A prefix of the decision is recorded (all of it after a lost
			// ack): its timers are kept, and the next replay finds those
			// messages recorded and issues the rest.
			if err := w.applyTimers(ctx, id, st, vals[:n]); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, streams.ErrFenced) {
			return err
		}
		w.o.cfg.Metrics.FenceConflict()
		// Another decision got in first: decide again on the new tail.
	}
	return fmt.Errorf("%w %d times in a row", streams.ErrFenced, maxFenceRetries)
}

// applyTimers mirrors the timer decisions among vals, which are in the
// history, into the timers bucket.
func (w *worker) applyTimers(ctx context.Context, id string, st *state, vals []schema.Kinded) error {
	ctx = w.traced(ctx) // a timer's entry keeps its decision's trace
	if err := w.o.timers.apply(ctx, id, vals); err != nil {
		return err
	}
	if n := len(vals); n > 0 {
		if _, ok := vals[n-1].(*schema.WorkflowFinished); ok {
			// An end drops the timers still pending (a terminated
			// workflow's, or one started by the ending decision itself, as
			// a run that continues as new may): none of them will be
			// waited for.
			if err := w.o.timers.dropAll(ctx, id, withStarted(st.timers, vals)); err != nil {
				return err
			}
		}
	}
	for _, v := range vals {
		if t, ok := v.(*schema.TimerStarted); ok {
			st.markEnsured(t.ID)
		}
	}
	return nil
}

// withStarted returns pending with the timers started among vals added.
func withStarted(pending map[int]*schema.TimerStarted, vals []schema.Kinded) map[int]*schema.TimerStarted {
	out := maps.Clone(pending)
	for _, v := range vals {
		if t, ok := v.(*schema.TimerStarted); ok {
			if out == nil {
				out = map[int]*schema.TimerStarted{}
			}
			out[t.ID] = t
		}
	}
	return out
}

// park appends a blocked event with reason, fenced on what was read, so an
// operator sees why the workflow cannot go on.
func (w *worker) park(ctx context.Context, id string, st *state, reason string) error {
	out := workflow.Outcome{Blocked: &schema.WorkflowBlocked{Reason: reason}}
	msgs, _, err := w.messages(id, st, out)
	if err != nil || len(msgs) == 0 {
		return err
	}
	w.logOutcome(id, out)
	if _, _, err := w.o.hist.Append(ctx, id, st.lastSeq, msgs); err != nil {
		return fmt.Errorf("park: %w", err)
	}
	return nil
}

func (w *worker) logOutcome(id string, out workflow.Outcome) {
	switch {
	case out.Blocked != nil:
		w.o.log.Error("workflow blocked", "workflow_id", id, "reason", out.Blocked.Reason)
	case out.Finished != nil:
		w.o.log.Info("workflow finished", "workflow_id", id, "status", out.Finished.Status)
	}
}

// messages turns a replay outcome into the history messages to append.
// Message IDs are derived from the workflow and the sequence decided on, so
// two orchestrators deciding the same thing write the same IDs.
func (w *worker) messages(id string, st *state, out workflow.Outcome) ([]*nats.Msg, []schema.Kinded, error) {
	var msgs []*nats.Msg
	var vals []schema.Kinded
	add := func(subject string, v schema.Kinded) error {
		vals = append(vals, v)
		m, err := streams.NewMsg(subject, v)
		if err != nil {
			return err
		}
		m.Header.Set(jetstream.MsgIDHeader, id+":"+strconv.FormatUint(st.lastSeq, 10)+":"+strconv.Itoa(len(msgs)))
		m.Header.Set(schema.HeaderWorkflowID, id)
		for k, v := range w.trace {
			m.Header[k] = v
		}
		msgs = append(msgs, m)
		return nil
	}
	if out.Blocked != nil {
		// A reason quotes an error or a panic, and Issued names a step: both
		// are bounded, so the blocked event itself always fits.
		out.Blocked.Reason = streams.Clip(out.Blocked.Reason, maxBlockedText)
		out.Blocked.Issued = streams.Clip(out.Blocked.Issued, maxBlockedText)
		out.Blocked.Recorded = streams.Clip(out.Blocked.Recorded, maxBlockedText)
		if st.status == schema.StatusBlocked && st.blocked == out.Blocked.Reason {
			return nil, nil, nil // already parked for this reason
		}
		return msgs, vals, add(streams.BlockedSubject(id, st.lastSeq), out.Blocked)
	}
	for _, d := range out.Decisions {
		var err error
		switch v := d.(type) {
		case *schema.Command:
			if bad := errors.Join(streams.ValidToken(v.Service), streams.ValidToken(v.Action)); bad != nil {
				return w.messages(id, st, workflow.Outcome{Blocked: &schema.WorkflowBlocked{
					Reason: fmt.Sprintf("decision %d: %v", v.ID, bad), Issued: v.Service + "." + v.Action}})
			}
			v.IdempotencyKey = id + "." + strconv.Itoa(v.ID)
			v.ReplyTo = streams.ResultSubject(id, v.ID, v.Service, v.Action)
			err = add(streams.CommandSubject(id, v.ID, v.Service, v.Action), v)
		case *schema.Marker:
			err = add(streams.MarkerSubject(id, v.ID), v)
		case *schema.TimerStarted:
			err = add(streams.TimerSubject(id, v.ID), v)
		case *schema.TimerCancelled:
			err = add(streams.TimerSubject(id, v.ID), v)
		case *schema.StepCancelled:
			err = add(streams.StepCancelSubject(id, v.CommandID), v)
		case *schema.UpdateCompleted:
			err = add(streams.UpdateDoneSubject(id, v.UpdateID), v)
		case *schema.ChildStarted:
			err = add(streams.ChildSubject(id, v.ID), v)
		case *schema.ChildCancelRequested:
			err = add(streams.ChildCancelSubject(id, v.Child), v)
		case *schema.SignalExternal:
			err = add(streams.SignalOutSubject(id, v.ID), v)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if out.Finished != nil {
		if err := add(streams.DoneSubjectAfter(id, string(out.Finished.Status), st.retrySeq), out.Finished); err != nil {
			return nil, nil, err
		}
		msgs[len(msgs)-1].Header.Set(schema.HeaderStatus, string(out.Finished.Status))
	}
	if reason := w.tooLarge(st, msgs); reason != "" {
		return w.messages(id, st, workflow.Outcome{Blocked: &schema.WorkflowBlocked{Reason: reason}})
	}
	return msgs, vals, nil
}
