package orchestrator

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Continue-as-new, on the runtime's side. A run that returns
// workflow.ContinueAsNew ends like any workflow: its decision appends the
// end (schema.StatusContinuedAsNew, naming the next run and carrying its
// input), fenced on its history. Only then is the next run's start written
// on its own tree (streams.RunID), with an expected last subject sequence
// of 0, and after it the run pointer (streams.RunPointerSubject). The wake that led to the end is acked after
// both: an orchestrator that dies between the end and the start leaves the
// wake unacked, and its redelivery finds the run ended continued-as-new
// and writes the start and the pointer again, each at most once.

// startNextRun writes the start of the run that end (the end of run hid,
// started by prev) continues in, then the run pointer. Both writes are
// idempotent: a start or pointer already stored is left as it is.
func (o *Orchestrator) startNextRun(ctx context.Context, hid string, prev *schema.WorkflowStarted, end *schema.WorkflowFinished, trace nats.Header) error {
	if end == nil || end.Status != schema.StatusContinuedAsNew {
		return nil
	}
	id, run := streams.ParseRunID(hid)
	if end.NextRun != run+1 {
		return fmt.Errorf("continue as new: run %d of %s names next run %d", run, id, end.NextRun)
	}
	failpoint.Hit("orchestrator.continue-as-new")
	next := streams.RunID(id, end.NextRun)
	st := &schema.WorkflowStarted{
		WorkflowID: id, Type: prev.Type, Input: end.NextInput,
		Source: "continue-as-new of " + hid, ClockOffset: prev.ClockOffset, Run: end.NextRun,
		// A child's runs are all its parent's child: the last run's end
		// is the one written into the parent (ensureLinks).
		Parent: prev.Parent,
	}
	for i, subject := range []string{streams.StartSubject(next), streams.RunPointerSubject(id, end.NextRun)} {
		m, err := streams.NewMsg(subject, st)
		if err != nil {
			return err
		}
		m.Header.Set(jetstream.MsgIDHeader, "run-"+next+"-"+[]string{"start", "pointer"}[i])
		m.Header.Set(schema.HeaderWorkflowID, next)
		for k, v := range trace {
			m.Header[k] = v
		}
		if _, err := streams.PublishFirst(ctx, o.cfg.JS, m); err != nil {
			return fmt.Errorf("continue as new: write %s: %w", subject, err)
		}
	}
	o.log.Info("workflow continued as new", "workflow_id", id, "run", end.NextRun)
	return nil
}

// currentRun returns the history ID of the current run of workflow id
// (id itself for a workflow that never continued as new).
func currentRun(ctx context.Context, h *streams.History, id string) (string, error) {
	return h.CurrentRun(ctx, id)
}

// signalMsgID is the Nats-Msg-Id of the record of the signal with
// sequence seq in history hid: a signal recorded in a run that had just
// ended continued-as-new is recorded again in the next run, which the
// server's duplicate window must not take for the same message.
func signalMsgID(hid string, seq uint64) string {
	if _, run := streams.ParseRunID(hid); run > 1 {
		return "signal-" + hid + "-" + strconv.FormatUint(seq, 10)
	}
	return "signal-" + strconv.FormatUint(seq, 10)
}

// signalInCurrentRun reports whether the signal with sequence seq is
// recorded in the current run of workflow id, when that is not the first
// (signalSettled has looked in the first).
func (o *Orchestrator) signalInCurrentRun(ctx context.Context, id string, seq uint64) (bool, error) {
	hid, err := currentRun(ctx, o.hist, id)
	if err != nil || hid == id {
		return false, err
	}
	ev, err := o.hist.Last(ctx, streams.SignalEventSubject(hid, seq))
	return ev != nil, err
}

// runStatus is status for the current run of workflow id: its Summary's
// ID is the run's history ID.
func (o *Orchestrator) runStatus(ctx context.Context, id string) (*Summary, error) {
	hid, err := currentRun(ctx, o.hist, id)
	if err != nil {
		return nil, err
	}
	return o.status(ctx, hid)
}

// describeRuns fills the run fields of d, the description of run hid of
// workflow id: the runs are listed from the run pointers (one read);
// every run before the latest ended continued-as-new.
func describeRuns(ctx context.Context, h *streams.History, d *Description, id, hid string) error {
	_, run := streams.ParseRunID(hid)
	d.ID = id
	if run > 1 {
		d.Run, d.RunID = run, hid
	}
	starts, err := h.Runs(ctx, id)
	if err != nil || (len(starts) == 0 && run == 1) {
		return err
	}
	d.Run, d.RunID = run, hid
	first := RunSummary{Run: 1, RunID: id, Status: schema.StatusContinuedAsNew}
	if run == 1 {
		first.Status, first.StartedAt = d.Status, d.StartedAt
	}
	d.Runs = append(d.Runs, first)
	for i, st := range starts {
		r := RunSummary{Run: st.Run, RunID: streams.RunID(id, st.Run), Status: schema.StatusContinuedAsNew}
		if i == len(starts)-1 && st.Run != run {
			r.Status = schema.StatusRunning
			done, err := h.Last(ctx, streams.DoneFilterOf(r.RunID))
			if err != nil {
				return err
			}
			if f, ok := doneValue(done); ok {
				r.Status = f.Status
			}
		}
		if st.Run == run {
			r.Status, r.StartedAt = d.Status, d.StartedAt
		}
		d.Runs = append(d.Runs, r)
	}
	return nil
}

func doneValue(ev *streams.Event) (*schema.WorkflowFinished, bool) {
	if ev == nil {
		return nil, false
	}
	f, ok := ev.Value.(*schema.WorkflowFinished)
	return f, ok
}

// runToDescribe is the history ID of run of workflow id, the current run
// when run is 0.
func runToDescribe(ctx context.Context, h *streams.History, id string, run int) (string, error) {
	if run < 0 {
		return "", fmt.Errorf("run %d: want a run number from 1 (0: the current run)", run)
	}
	if run == 0 {
		return currentRun(ctx, h, id)
	}
	if err := streams.ValidID(id); err != nil {
		return "", err
	}
	return streams.RunID(id, run), nil
}

// nextRun returns the history ID of the run that run hid continued in, ""
// while hid has not ended continued-as-new. It reads hid's end by a
// subject-addressed direct get, which a role allowed wf.*.done.* may make.
func nextRun(ctx context.Context, nc *nats.Conn, hid string) (string, error) {
	m, err := streams.LastBySubject(ctx, nc, streams.HistoryStreamOf(hid), streams.DoneFilterOf(hid))
	if err != nil || m == nil {
		return "", err
	}
	v, err := schema.Decode(m.Header.Get(schema.HeaderKind), m.Header.Get(schema.HeaderSchema), m.Data)
	if err != nil {
		return "", nil
	}
	f, ok := v.(*schema.WorkflowFinished)
	if !ok || f.Status != schema.StatusContinuedAsNew {
		return "", nil
	}
	id, run := streams.ParseRunID(hid)
	if f.NextRun != run+1 {
		return "", nil
	}
	return streams.RunID(id, f.NextRun), nil
}
