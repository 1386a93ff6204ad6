package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Replayer checks workflow code against saved histories, as Temporal's
// replayer does: in CI, a change that would block the workflows in flight
// fails a test before it is deployed. Save histories with `jetflow show ID
// --output json`, replay them with ReplayHistoryJSON (or `jetflow replay
// --history FILE`).
type Replayer struct {
	reg    *Registry
	logger *slog.Logger
}

// NewReplayer returns a Replayer for the workflows registered in reg.
func NewReplayer(reg *Registry) *Replayer { return &Replayer{reg: reg} }

// DivergenceError is the first point where the code no longer matches a
// saved history.
type DivergenceError struct {
	WorkflowID string
	// Decision is the 1-based number of the decision that differs (0 when
	// the difference is in how the workflow ended).
	Decision int
	// EventSeq is the history event at which the code diverged (0 if none).
	EventSeq uint64
	// Recorded is what the history holds there; Issued what the code did.
	Recorded string
	Issued   string
	// Reason is the full explanation.
	Reason string
}

func (e *DivergenceError) Error() string {
	return fmt.Sprintf("workflow %s diverges from its history: %s", e.WorkflowID, e.Reason)
}

// ReplayHistory replays one history (starting with its WorkflowStarted
// event) through the function its start event names. It returns nil when
// the code makes every recorded decision in order and, if the history
// ended, ends the same way; a *DivergenceError at the first difference;
// another error when the history cannot be replayed at all (no start event,
// a type not registered).
func (rp *Replayer) ReplayHistory(id string, history []Event) error {
	if len(history) == 0 {
		return fmt.Errorf("workflow %s: empty history", id)
	}
	started, ok := history[0].Value.(*schema.WorkflowStarted)
	if !ok {
		return fmt.Errorf("workflow %s: history event #%d is not workflow.started", id, history[0].Seq)
	}
	fn, ok := rp.reg.Lookup(started.Type)
	if !ok {
		return fmt.Errorf("workflow %s: type %q is not registered (registered: %v)", id, started.Type, rp.reg.Names())
	}
	var recorded *schema.WorkflowFinished
	var finishedSeq uint64
	for _, ev := range history {
		if f, ok := ev.Value.(*schema.WorkflowFinished); ok && recorded == nil {
			recorded, finishedSeq = f, ev.Seq
		}
	}
	o := Replay(fn, id, history, rp.logger)
	div := &DivergenceError{WorkflowID: id}
	switch {
	case o.Blocked != nil:
		div.EventSeq, div.Recorded, div.Issued, div.Reason = o.Blocked.EventSeq, o.Blocked.Recorded, o.Blocked.Issued, o.Blocked.Reason
		div.Decision, _ = decisionOf(o.Blocked.Reason)
		return div
	case recorded == nil:
		return nil // in flight: the code may go on with new decisions
	case len(o.Decisions) > 0:
		div.EventSeq, div.Recorded = finishedSeq, "workflow.finished "+string(recorded.Status)
		div.Issued = describe(o.Decisions[0])
		if n, ok := decisionNumber(o.Decisions[0]); ok {
			div.Decision = n
		}
	case o.Finished == nil:
		div.EventSeq, div.Recorded = finishedSeq, "workflow.finished "+string(recorded.Status)
		div.Issued = "nothing: the code still waits"
	case o.Finished.Status != recorded.Status:
		div.EventSeq, div.Recorded = finishedSeq, "workflow.finished "+string(recorded.Status)
		div.Issued = "workflow.finished " + string(o.Finished.Status)
	default:
		return nil
	}
	div.Reason = fmt.Sprintf("at history event #%d: history has %s, code issued %s", div.EventSeq, div.Recorded, div.Issued)
	return div
}

// decisionOf reads the decision number out of a nondeterminism reason.
func decisionOf(reason string) (int, bool) {
	var n int
	var seq uint64
	if _, err := fmt.Sscanf(reason, "nondeterminism at decision %d (history event #%d)", &n, &seq); err == nil {
		return n, true
	}
	return 0, false
}

// decisionNumber is the ID of a decision.
func decisionNumber(d schema.Kinded) (int, bool) {
	switch v := d.(type) {
	case *schema.Command:
		return v.ID, true
	case *schema.Marker:
		return v.ID, true
	case *schema.TimerStarted:
		return v.ID, true
	case *schema.TimerCancelled:
		return v.ID, true
	}
	return 0, false
}

// ReplayHistoryJSON reads a history as `jetflow show ID --output json`
// prints it and replays it (see ReplayHistory).
func (rp *Replayer) ReplayHistoryJSON(r io.Reader) error {
	id, evs, err := ReadHistoryJSON(r)
	if err != nil {
		return err
	}
	return rp.ReplayHistory(id, evs)
}

// historyJSON is the part of `jetflow show --output json` a replay needs.
type historyJSON struct {
	ID string `json:"id"`
	// RunID is the history ID of a run after the first, which replays as
	// that run (RunNumber).
	RunID   string `json:"run_id"`
	History []struct {
		Seq     uint64          `json:"seq"`
		Type    string          `json:"type"`
		Time    time.Time       `json:"time"`
		Subject string          `json:"subject"`
		Data    json.RawMessage `json:"data"`
	} `json:"history"`
}

// ReadHistoryJSON reads a history as `jetflow show ID --output json`
// prints it into the events a replay takes. Events the orchestrator skips
// are skipped the same way: undecodable ones, unknown kinds, values on a
// subject they do not belong to, anything before the start event.
func ReadHistoryJSON(r io.Reader) (id string, evs []Event, err error) {
	var h historyJSON
	if err := json.NewDecoder(r).Decode(&h); err != nil {
		return "", nil, fmt.Errorf("read history: %w", err)
	}
	if h.ID == "" || len(h.History) == 0 {
		return "", nil, errors.New("read history: no workflow id or no events: want the output of `jetflow show ID --output json`")
	}
	if h.RunID != "" {
		h.ID = h.RunID
	}
	for _, e := range h.History {
		if len(e.Data) == 0 || string(e.Data) == "null" {
			continue
		}
		v, err := schema.FromJSON(schema.Kind(e.Type), e.Data)
		if err != nil {
			continue
		}
		if !streams.OnItsSubject(streams.Event{Seq: e.Seq, Subject: e.Subject, Value: v}) {
			continue
		}
		if len(evs) == 0 {
			if _, ok := v.(*schema.WorkflowStarted); !ok {
				continue
			}
		}
		evs = append(evs, Event{Seq: e.Seq, Time: e.Time, Value: v})
	}
	if len(evs) == 0 {
		return h.ID, nil, fmt.Errorf("read history of %s: no workflow.started event", h.ID)
	}
	return h.ID, evs, nil
}
