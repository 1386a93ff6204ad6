package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// SignalRule checks signal Signal sent to a workflow of type WorkflowType
// against that workflow's recorded history before the signal router records
// it — or, when the workflow has finished, before it routes it as a late
// signal. Anyone who can publish on signal.> can send any body: a signal
// that moves money must be checked against what the workflow itself
// recorded, never believed.
type SignalRule struct {
	WorkflowType string
	Signal       string
	// Check, if set, decides from the history whether the signal may be
	// recorded, and returns the payload to record (and to hand to a late
	// route): derived from the history wherever the body makes a claim the
	// history can answer, so what is recorded is the workflow's own fact,
	// not the sender's word. An error dead-letters the signal to
	// dlq.signal with the error as its reason. Check must be deterministic:
	// the same history and body give the same payload (late routes are
	// keyed by it).
	Check func(h History, payload schema.Raw) (schema.Raw, error)
	// Once dead-letters a second signal of this name for the same workflow:
	// one already recorded in its history, or already routed late.
	Once bool
}

// History is a workflow's recorded history as a SignalRule's Check sees
// it: its decoded events in stream order, leaving out undecodable ones and
// messages published on a subject their value does not belong to.
type History struct {
	WorkflowID   string
	WorkflowType string
	// Status is the workflow's status: running, or how it ended when the
	// signal is a late one.
	Status schema.Status
	Events []workflow.Event
}

// RecordedResult is a command's result in a History.
type RecordedResult struct {
	// Seq is the stream sequence of the result event.
	Seq    uint64
	Result *schema.Result
}

// Results returns the recorded results of the commands to service.action,
// in history order.
func (h History) Results(service, action string) []RecordedResult {
	var out []RecordedResult
	for _, ev := range h.Events {
		if r, ok := ev.Value.(*schema.Result); ok && r.Service == service && r.Action == action {
			out = append(out, RecordedResult{Seq: ev.Seq, Result: r})
		}
	}
	return out
}

// RecordedSignal is a signal recorded in a History.
type RecordedSignal struct {
	// Seq is the stream sequence of the signal's history event.
	Seq     uint64
	Payload schema.Raw
}

// Signals returns the recorded signals called name, in history order.
func (h History) Signals(name string) []RecordedSignal {
	var out []RecordedSignal
	for _, ev := range h.Events {
		if s, ok := ev.Value.(*schema.Signal); ok && s.Name == name {
			out = append(out, RecordedSignal{Seq: ev.Seq, Payload: s.Payload})
		}
	}
	return out
}

// DefaultMaxPendingSignals is Config.MaxPendingSignals when it is zero.
const DefaultMaxPendingSignals = 1000

// routerConcurrency is how many signals one orchestrator routes at once.
// Below the cap minus this margin a signal is recorded without a fence:
// the signals in flight beside it cannot take the count past the cap.
const routerConcurrency = 64

// rule returns the rule for signal name of workflows of type wfType.
func (o *Orchestrator) rule(wfType, name string) *SignalRule {
	for i := range o.cfg.SignalRules {
		if r := &o.cfg.SignalRules[i]; r.WorkflowType == wfType && r.Signal == name {
			return r
		}
	}
	return nil
}

// admission is what the router does with one signal.
type admission struct {
	// payload is what to record, and what a late route receives.
	payload schema.Raw
	// key names the signal among the late signals of its workflow: two
	// signals with one key start one late workflow.
	key string
	// reason, when set, dead-letters the signal.
	reason string
	// recorded: the signal's own event is already in the history (a
	// redelivery); nothing to record.
	recorded bool
	// fenced: record it only if the tree's last sequence is still fence,
	// so the check (or the count) still holds when it lands.
	fenced bool
	fence  uint64
	// nearCap: the workflow has so many signals recorded that the exact
	// number waiting must be known (capWaiting) before recording.
	nearCap bool
	// waiting is that number, once known.
	waiting int
	// capLast, on a signal the cap refused, is the history's last sequence
	// the refusal was decided at.
	capLast uint64
	// evs is the history read for the rule, if any.
	evs []streams.Event
}

// admit applies the workflow's signal rule and its cap on waiting signals
// to the signal with stream sequence seq. A late signal (the workflow has
// finished) is checked against its rule only.
func (o *Orchestrator) admit(ctx context.Context, st *Summary, name string, payload schema.Raw, seq uint64) (admission, error) {
	adm := admission{payload: payload}
	rule := o.rule(st.Type, name)
	var evs []streams.Event
	var h *History
	if rule != nil {
		var err error
		if evs, err = o.hist.Read(ctx, st.ID, 0); err != nil {
			return adm, err
		}
		own := streams.SignalEventSubject(st.ID, seq)
		for _, ev := range evs {
			if sig, ok := ev.Value.(*schema.Signal); ok && ev.Subject == own {
				// Recorded already (checked then): a redelivery, or, after
				// the end, a late signal to route with what was recorded.
				adm.recorded, adm.payload = true, sig.Payload
				adm.key = lateKey(rule, name, sig.Payload, seq)
				return adm, nil
			}
		}
		h = newHistory(st, evs)
		if adm.payload, adm.reason = checkSignal(rule, *h, name, payload); adm.reason != "" {
			return adm, nil
		}
		adm.fenced, adm.fence = true, lastSeq(evs)
	}
	adm.key = lateKey(rule, name, adm.payload, seq)
	if st.Status.Terminal() {
		return adm, nil
	}

	// The cap on signals recorded and not yet received. The recorded ones
	// are counted from the subject index; only a workflow near the cap is
	// replayed for the exact number, once per history position.
	var count uint64
	if h != nil {
		for _, e := range h.Events {
			if _, ok := e.Value.(*schema.Signal); ok {
				count++
			}
		}
	} else {
		var err error
		if count, err = o.hist.Count(ctx, streams.SignalFilterOf(st.ID)); err != nil {
			return adm, err
		}
	}
	adm.nearCap = count+routerConcurrency >= uint64(o.cfg.MaxPendingSignals)
	adm.evs = evs
	return adm, nil
}

// capWaiting finds out, for a workflow near its cap, how many signals wait
// (recorded, not received) and fences the record on the history position
// it counted at; at the cap the signal is refused. Called with the
// workflow's lock held, so this process records one signal of a workflow
// near its cap at a time and the count stays exact.
func (o *Orchestrator) capWaiting(ctx context.Context, st *Summary, seq uint64, adm *admission) error {
	evs, last := adm.evs, adm.fence
	var tail *streams.Event
	if evs == nil {
		ev, err := o.hist.Last(ctx, streams.Tree(st.ID))
		if err != nil || ev == nil {
			return err
		}
		last, tail = ev.Seq, ev
	} else if len(evs) > 0 {
		tail = &evs[len(evs)-1]
	}
	if tail != nil {
		if _, end := tail.Value.(*schema.WorkflowFinished); end {
			// It ended since its status was read: no cap applies. Recorded
			// after the end, the signal is found late and routed as such.
			adm.fenced, adm.fence = true, last
			return nil
		}
	}
	n, ok := o.waiting.get(st.ID, last)
	if !ok {
		if evs == nil {
			var err error
			if evs, err = o.hist.Read(ctx, st.ID, 0); err != nil {
				return err
			}
			last = lastSeq(evs)
		}
		var err error
		if n, err = o.waitingSignals(st, evs); err != nil {
			return err
		}
		o.waiting.put(st.ID, last, n)
	}
	if limit := o.cfg.MaxPendingSignals; n >= limit {
		if ev, err := o.hist.Last(ctx, streams.SignalEventSubject(st.ID, seq)); err != nil || ev != nil {
			adm.recorded = ev != nil // a redelivery of a signal recorded before the cap was reached
			return err
		}
		adm.reason = fmt.Sprintf("workflow %s has %d signals waiting, the limit (--max-pending-signals)", st.ID, n)
		adm.capLast = last
		return nil
	}
	adm.fenced, adm.fence, adm.waiting = true, last, n
	return nil
}

// checkSignal runs rule on h and returns the payload to record, or the
// reason to refuse the signal.
func checkSignal(rule *SignalRule, h History, name string, payload schema.Raw) (schema.Raw, string) {
	if rule.Once {
		if prior := h.Signals(name); len(prior) > 0 {
			return nil, fmt.Sprintf("%s for %s already recorded at history seq %d", name, h.WorkflowID, prior[0].Seq)
		}
	}
	if rule.Check == nil {
		return payload, ""
	}
	out, err := rule.Check(h, payload)
	if err != nil {
		return nil, fmt.Sprintf("%s for %s refused: %v", name, h.WorkflowID, err)
	}
	return out, ""
}

// lateKey names a signal among its workflow's late signals. A Once signal
// is the only one of its name; a checked one is the fact its canonical
// payload states (two settlements of one charge are one); any other is
// itself, named by its sequence in the signals stream.
func lateKey(rule *SignalRule, name string, payload schema.Raw, seq uint64) string {
	sum := sha256.New()
	switch {
	case rule != nil && rule.Once:
		fmt.Fprintf(sum, "once\x00%s", name)
	case rule != nil && rule.Check != nil:
		fmt.Fprintf(sum, "fact\x00%s\x00", name)
		sum.Write(payload)
	default:
		fmt.Fprintf(sum, "seq\x00%d", seq)
	}
	return hex.EncodeToString(sum.Sum(nil)[:8])
}

// lateID is the ID of the workflow a late signal with key starts for the
// workflow id: in the engine's namespace, so no user workflow can hold it.
func lateID(id, key string) string { return streams.DerivedID("late", id, key) }

// newHistory builds what a rule sees from the events read.
func newHistory(st *Summary, evs []streams.Event) *History {
	h := &History{WorkflowID: st.ID, WorkflowType: st.Type, Status: st.Status}
	h.Events = replayable(evs)
	return h
}

// replayable keeps the events replay takes: decoded, on their own subject,
// from the start event on.
func replayable(evs []streams.Event) []workflow.Event {
	var out []workflow.Event
	for _, ev := range evs {
		if ev.DecodeErr != nil || !streams.OnItsSubject(ev) {
			continue
		}
		if len(out) == 0 {
			if _, ok := ev.Value.(*schema.WorkflowStarted); !ok {
				continue
			}
		}
		out = append(out, workflow.Event{Seq: ev.Seq, Time: ev.Time, Value: ev.Value})
	}
	return out
}

func lastSeq(evs []streams.Event) uint64 {
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// waitingSignals replays the workflow to count the signals it recorded and
// has not received.
func (o *Orchestrator) waitingSignals(st *Summary, evs []streams.Event) (int, error) {
	fn, ok := o.cfg.Registry.Lookup(st.Type)
	if !ok {
		return 0, fmt.Errorf("%w: %q", errUnknownType, st.Type)
	}
	wevs := replayable(evs)
	if len(wevs) == 0 {
		return 0, errors.New("history has no start event")
	}
	return workflow.Replay(fn, st.ID, wevs, o.log).Waiting, nil
}

// waitingMemo remembers, per workflow, the number of signals waiting at a
// history position, so a flood of signals the cap refuses (which leaves
// the history as it is) replays the workflow once, not once per signal.
type waitingMemo struct {
	mu sync.Mutex
	m  map[string]waitingCount
	// locks serialize, per workflow (by hash), the records of signals to
	// a workflow near its cap.
	locks [routerConcurrency]sync.Mutex
}

// lock takes the lock of workflow id and returns its unlock.
func (w *waitingMemo) lock(id string) func() {
	l := &w.locks[shard(id, len(w.locks))]
	l.Lock()
	return l.Unlock
}

type waitingCount struct {
	last uint64
	n    int
}

// waitingMemoSize bounds the memo; it is cleared when full.
const waitingMemoSize = 4096

func (w *waitingMemo) get(id string, last uint64) (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.m[id]
	if !ok || c.last != last {
		return 0, false
	}
	return c.n, true
}

func (w *waitingMemo) put(id string, last uint64, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil || len(w.m) >= waitingMemoSize {
		w.m = map[string]waitingCount{}
	}
	w.m[id] = waitingCount{last: last, n: n}
}

// shard maps a workflow ID to one of n slots.
func shard(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}
