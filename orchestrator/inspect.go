package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// HistoryEntry is one history event, decoded for people and programs.
type HistoryEntry struct {
	Seq     uint64    `json:"seq"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	// Step is "service.action" for commands and results.
	Step string `json:"step,omitempty"`
	// CommandID links a result to its command.
	CommandID    int  `json:"command_id,omitempty"`
	Compensation bool `json:"compensation,omitempty"`
	// Error is a failed result's error, or why the event could not be decoded.
	Error string `json:"error,omitempty"`
	// Operator and Reason are who asked and why, on an operator request
	// (Step is its verb) and on an end an operator asked for.
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Attempts is how many attempts a result took.
	Attempts int `json:"attempts,omitempty"`
	// Data is the whole event body as JSON.
	Data json.RawMessage `json:"data,omitempty"`
}

// Description is the state and history of one workflow.
type Description struct {
	ID     string        `json:"id"`
	Type   string        `json:"type"`
	Status schema.Status `json:"status"`
	// Reason says why a workflow is manual or blocked.
	Reason    string    `json:"reason,omitempty"`
	Error     string    `json:"error,omitempty"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Waiting lists the steps sent and not yet answered.
	Waiting []string `json:"waiting,omitempty"`
	// Steps are the same steps with their attempts so far.
	Steps []WaitingStep `json:"steps,omitempty"`
	// Timers lists the timers started and neither fired nor cancelled.
	Timers []PendingTimer `json:"timers,omitempty"`
	// Run is the run described, of a workflow that continued as new
	// (1 for the first run), RunID its history ID (wf.<run id>.>), and
	// Runs every run of the workflow, when it has more than one.
	Run   int          `json:"run,omitempty"`
	RunID string       `json:"run_id,omitempty"`
	Runs  []RunSummary `json:"runs,omitempty"`
	// Parent names the workflow that started this one as its child.
	Parent *ParentRef `json:"parent,omitempty"`
	// Children lists the child workflows it started, in start order.
	Children []ChildSummary `json:"children,omitempty"`
	History  []HistoryEntry `json:"history"`
	// Archived is set when the history was read from the archive: the
	// workflow ended more than the retention ago and is read-only.
	Archived   bool      `json:"archived,omitempty"`
	ArchivedAt time.Time `json:"archived_at,omitzero"`
}

// RunSummary is one run of a workflow that continued as new.
type RunSummary struct {
	Run int `json:"run"`
	// RunID is the run's history ID: the workflow ID for the first run,
	// <workflow id>=<run> after (`jetflow show ID --run N`).
	RunID     string        `json:"run_id"`
	Status    schema.Status `json:"status"`
	StartedAt time.Time     `json:"started_at,omitzero"`
}

// WaitingStep is a step a workflow waits on: sent, not yet answered.
type WaitingStep struct {
	CommandID    int       `json:"command_id"`
	Step         string    `json:"step"`
	Compensation bool      `json:"compensation,omitempty"`
	SentAt       time.Time `json:"sent_at"`
	// FailedAttempts is the number of the last attempt that failed and
	// will be retried (0: none failed). The fields below describe it.
	FailedAttempts int       `json:"failed_attempts,omitempty"`
	LastErrorKind  string    `json:"last_error_kind,omitempty"`
	LastError      string    `json:"last_error,omitempty"`
	LastFailedAt   time.Time `json:"last_failed_at,omitzero"`
	NextRetry      time.Time `json:"next_retry,omitzero"`
}

// Describe reads the history of workflow id and returns its state. The
// steps it waits on come with their last failed attempt, which
// participants note in the attempts bucket (one direct get per step).
//
// id is a workflow ID, whose current run is described (with the list of
// its runs when it continued as new), or a run's history ID
// (streams.RunID), which describes that run; DescribeRun names the run.
func Describe(ctx context.Context, h *streams.History, id string) (*Description, error) {
	return DescribeRun(ctx, h, id, 0)
}

// DescribeRun is Describe for run number run of workflow id (1 the first);
// 0 is the current run.
func DescribeRun(ctx context.Context, h *streams.History, id string, run int) (*Description, error) {
	wid, _ := streams.ParseRunID(id)
	id, err := runToDescribe(ctx, h, id, run)
	if err != nil {
		return nil, err
	}
	evs, err := h.Read(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	arch, evs, id, all, err := orArchived(ctx, h, id, run == 0, evs)
	if err != nil {
		return nil, err
	}
	return describe(ctx, h, wid, id, arch, evs, all)
}

// describe builds the description of history id of workflow wid from its
// events evs; arch is its archive record when it was read from one, with
// all, every event of the record (every run).
func describe(ctx context.Context, h *streams.History, wid, id string, arch *schema.ArchivedHistory, evs, all []streams.Event) (*Description, error) {
	d := &Description{ID: id, Status: schema.StatusRunning, History: []HistoryEntry{}}
	if arch != nil {
		d.Archived, d.ArchivedAt = true, arch.ArchivedAt
	}
	open := map[int]*schema.Command{}
	sentAt := map[int]time.Time{}
	timers := map[int]*schema.TimerStarted{}
	started := false
	for _, ev := range evs {
		e := HistoryEntry{Seq: ev.Seq, Type: string(ev.Kind), Time: ev.Time, Subject: ev.Subject}
		if ev.DecodeErr != nil {
			e.Error = ev.DecodeErr.Error()
		} else if js, err := schema.ToJSON(ev.Body); err == nil {
			e.Data = js
		}
		value := ev.Value
		if !streams.OnItsSubject(ev) {
			e.Error, value = "not on its subject: ignored by replay", nil
		}
		switch v := value.(type) {
		case *schema.WorkflowStarted:
			started = true
			d.Type, d.StartedAt = v.Type, ev.Time
		case *schema.Command:
			e.Step, e.CommandID, e.Compensation = v.Service+"."+v.Action, v.ID, v.Compensation
			open[v.ID], sentAt[v.ID] = v, ev.Time
		case *schema.Result:
			e.Step, e.CommandID, e.Attempts = v.Service+"."+v.Action, v.CommandID, v.Attempts
			if v.Error != nil {
				e.Error = v.Error.Kind + ": " + v.Error.Message
			}
			delete(open, v.CommandID)
		case *schema.TimerStarted:
			e.Step, e.CommandID = "timer "+v.Duration.String(), v.ID
			timers[v.ID] = v
		case *schema.TimerCancelled:
			e.Step, e.CommandID = fmt.Sprintf("cancel timer #%d", v.TimerID), v.ID
			delete(timers, v.TimerID)
		case *schema.StepCancelled:
			e.Step, e.CommandID = fmt.Sprintf("cancel step #%d", v.CommandID), v.ID
			delete(open, v.CommandID)
		case *schema.TimerFired:
			e.Step, e.CommandID = "timer", v.TimerID
			if t := timers[v.TimerID]; t != nil && t.Due.Equal(v.Due) {
				delete(timers, v.TimerID)
			}
		case *schema.Signal:
			e.Step = v.Name
		case *schema.Marker:
			e.Step, e.CommandID = v.Name, v.ID
		case *schema.UpdateAccepted:
			e.Step = "update " + v.Name + " " + v.UpdateID
		case *schema.UpdateCompleted:
			e.Step, e.CommandID, e.Error = "update "+v.Name+" "+v.UpdateID, v.ID, v.Error
		case *schema.WorkflowFinished:
			d.Status, d.Reason, d.Error = v.Status, v.Reason, v.Error
			e.Step, e.Operator = string(v.Status), v.Identity
			if v.Identity != "" {
				e.Reason = v.Reason
			}
		case *schema.WorkflowBlocked:
			d.Status, d.Reason = schema.StatusBlocked, v.Reason
		case *schema.OperatorRequest:
			e.Step, e.Operator, e.Reason = v.Verb, v.Identity, v.Reason
		default:
			linkEntry(&e, value)
		}
		d.UpdatedAt = ev.Time
		d.History = append(d.History, e)
	}
	if !started {
		return nil, fmt.Errorf("%w: %s", streams.ErrNotFound, id)
	}
	// The status is the engine's reading of the history: a retried manual
	// workflow runs again, a resumed one is no longer blocked.
	st := &state{id: id}
	st.add(evs)
	d.Parent, d.Children = familyOf(st)
	switch d.Status = st.status; {
	case st.finished != nil:
		d.Reason, d.Error = st.finished.Reason, st.finished.Error
	case st.status == schema.StatusBlocked:
		d.Reason, d.Error = st.blocked, ""
	default:
		d.Reason, d.Error = "", ""
	}
	if !d.Status.Terminal() && arch == nil { // an archived run ended: nothing to look up
		ids := make([]int, 0, len(open))
		for id := range open {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, n := range ids {
			c := open[n]
			step := WaitingStep{CommandID: n, Step: c.Service + "." + c.Action, Compensation: c.Compensation, SentAt: sentAt[n]}
			a, err := h.LastAttempt(ctx, c.Service, c.IdempotencyKey)
			if err != nil {
				return nil, err
			}
			if a != nil && a.WorkflowID == id && a.CommandID == n {
				step.FailedAttempts, step.LastErrorKind, step.LastError = a.Attempt, a.Kind, a.Error
				step.LastFailedAt, step.NextRetry = a.At, a.NextRetry
			}
			d.Steps = append(d.Steps, step)
			d.Waiting = append(d.Waiting, fmt.Sprintf("%s (command %d)", step.Step, n))
		}
		for _, t := range timers {
			d.Timers = append(d.Timers, PendingTimer{ID: t.ID, Due: t.Due, Duration: t.Duration, Key: TimerKey(id, t.ID)})
		}
		sort.Slice(d.Timers, func(i, j int) bool { return d.Timers[i].ID < d.Timers[j].ID })
	}
	if arch != nil {
		archivedRuns(d, wid, id, all)
		return d, nil
	}
	if err := describeRuns(ctx, h, d, wid, id); err != nil {
		return nil, err
	}
	return d, nil
}

// PendingTimer is a timer a workflow waits on.
type PendingTimer struct {
	ID       int           `json:"id"`
	Due      time.Time     `json:"due"`
	Duration time.Duration `json:"duration"`
	// Key is its key in the jetflow_timers bucket.
	Key string `json:"key"`
}

// Summary is one line of List and ListPage.
type Summary struct {
	ID     string        `json:"id"`
	Status schema.Status `json:"status"`
	// Type is the workflow type, when known.
	Type string `json:"type,omitempty"`
	// StartedAt is when its start event was stored (ListPage).
	StartedAt time.Time `json:"started_at,omitzero"`
	// UpdatedAt is when its last event was stored (ListPage).
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Reason says why it is manual or blocked, or how it failed
	// (ListPage).
	Reason string `json:"reason,omitempty"`

	lastBlocked string // its last blocked event, as the index names it
	lastDone    string // the end that made its final status, as the index names it
}

// List returns every workflow with its status, sorted by ID; status ""
// lists all. It reads subject counts from the history stream (one request
// per page), not the histories.
func List(ctx context.Context, js jetstream.JetStream, status schema.Status) ([]Summary, error) {
	streams.LearnLayout(ctx, js)
	var hist []jetstream.Stream
	names := streams.HistoryStreams()
	for _, name := range names {
		stream, err := js.Stream(ctx, name)
		if err != nil {
			return nil, err
		}
		hist = append(hist, stream)
	}
	// A workflow's subjects are all in one stream: the streams' subjects
	// add up without overlap.
	subjects := func(filter string) (map[string]uint64, error) {
		all := map[string]uint64{}
		for i, stream := range hist {
			info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
			if err != nil {
				return nil, err
			}
			for subj, n := range info.State.Subjects {
				// A subject stored in a partition its workflow does
				// not hash to is no part of its history.
				if id, _, _ := streams.ParseSubject(subj); len(names) > 1 && streams.HistoryStreamOf(id) != names[i] {
					continue
				}
				all[subj] += n
			}
		}
		return all, nil
	}
	starts, err := subjects(streams.StartFilter)
	if err != nil {
		return nil, err
	}
	marks := make(map[string]*subjectMarks, len(starts))
	for subj := range starts {
		if id, _, ok := streams.ParseSubject(subj); ok {
			marks[id] = &subjectMarks{}
		}
	}
	for _, filter := range []string{streams.BlockedFilter, streams.DoneFilter, streams.OperatorFilter} {
		subjs, err := subjects(filter)
		if err != nil {
			return nil, err
		}
		for subj := range subjs {
			if id, rest, ok := streams.ParseSubject(subj); ok && marks[id] != nil {
				marks[id].add(rest)
			}
		}
	}
	st := make(map[string]schema.Status, len(marks))
	for id, m := range marks {
		st[id] = m.status()
	}
	out := make([]Summary, 0, len(st))
	for id, s := range st {
		if status == "" || s == status {
			out = append(out, Summary{ID: id, Status: s})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// subjectMarks is what the subject names of one history say of its
// status, without reading a message: its ends, blocked events and operator
// requests, with the sequences their subjects carry.
type subjectMarks struct {
	// ends maps the retry each end follows (0: the first run) to its
	// status; resolved wins over the manual end it settles.
	ends map[uint64]schema.Status
	// lastRetry, lastResume and lastBlocked are the highest sequences of
	// those subjects (blocked.<seq> carries the sequence it was decided
	// on, below its own).
	lastRetry, lastResume, lastBlocked uint64
	blocked                            bool
}

func (m *subjectMarks) add(rest string) {
	if status, retry, ok := streams.ParseDone(rest); ok {
		if m.ends == nil {
			m.ends = map[uint64]schema.Status{}
		}
		if cur := m.ends[retry]; cur == "" || schema.Status(status) == schema.StatusResolved {
			m.ends[retry] = schema.Status(status)
		}
		return
	}
	if at, verb, ok := streams.ParseOperator(rest); ok {
		switch verb {
		case schema.VerbRetry:
			m.lastRetry = max(m.lastRetry, at+1)
		case schema.VerbResume:
			m.lastResume = max(m.lastResume, at+1)
		}
		return
	}
	if b, ok := strings.CutPrefix(rest, "blocked."); ok {
		m.blocked = true
		if n, err := strconv.ParseUint(b, 10, 64); err == nil {
			m.lastBlocked = max(m.lastBlocked, n+1)
		}
	}
}

// status is the workflow's status: the end of its latest run, running if
// an operator retried it since, blocked if its last blocked event is more
// recent than the last resume. Sequences compare as "at least": an
// operator request fenced on sequence n is stored after n, so it is stored
// at n+1 or later, and a blocked event decided on n likewise.
func (m *subjectMarks) status() schema.Status {
	var gen uint64
	var end schema.Status
	for g, s := range m.ends {
		if end == "" || g > gen {
			gen, end = g, s
		}
	}
	if end != "" && (m.lastRetry == 0 || gen+1 >= m.lastRetry) {
		return end
	}
	// A retry's end carries the retry's own sequence, which is at least
	// lastRetry (its fence + 1): gen+1 >= lastRetry above means the end
	// follows the retry.
	if m.blocked && m.lastBlocked > m.lastResume {
		return schema.StatusBlocked
	}
	return schema.StatusRunning
}
