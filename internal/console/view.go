package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
)

// funcs are the template helpers.
var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"dur": func(d time.Duration) string { return roundDur(d).String() },
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return roundDur(time.Since(t)).String() + " ago"
	},
	"until": func(t time.Time) string {
		d := time.Until(t)
		if d < 0 {
			return "due " + roundDur(-d).String() + " ago"
		}
		return "in " + roundDur(d).String()
	},
	"sub": func(a, b int) int { return a - b },
}

// roundDur rounds a duration to what a person reads.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Hour:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// workflowView is one workflow's page.
type workflowView struct {
	base
	D       *orchestrator.Description
	Input   string
	Output  string
	Rows    []row
	Timers  []timerView
	Actions []Verb
	// Signal: whether a signal may be sent now.
	Signal bool
	// Compensations counts the compensation commands.
	Compensations int
	// Total events; Hidden of them, after the first HiddenAt, not shown.
	Total, Hidden, HiddenAt int
}

// row is one event of the timeline.
type row struct {
	orchestrator.HistoryEntry
	// Label names the kind of event for people.
	Label string
	// Class styles the row: command, result, failed, timer, signal,
	// decision, end.
	Class string
	// Attempts of a result; Duration from its command to it.
	Attempts int
	Duration time.Duration
	// Due of a timer started.
	Due time.Time
	// Body is the decoded body, indented.
	Body string
}

type timerView struct {
	orchestrator.PendingTimer
}

// labels name the event kinds.
var labels = map[schema.Kind]string{
	schema.KindWorkflowStarted:  "started",
	schema.KindCommand:          "command",
	schema.KindResult:           "result",
	schema.KindMarker:           "decision",
	schema.KindTimerStarted:     "timer started",
	schema.KindTimerCancelled:   "timer cancelled",
	schema.KindTimerFired:       "timer fired",
	schema.KindSignal:           "signal",
	schema.KindWorkflowFinished: "finished",
	schema.KindWorkflowBlocked:  "blocked",
	schema.KindStepCancelled:    "step cancelled",
	schema.KindUpdateAccepted:   "update accepted",
	schema.KindUpdateCompleted:  "update completed",
	// The operator requests: "operator cancel", ...
	schema.KindCancelRequested:    "operator cancel",
	schema.KindTerminateRequested: "operator terminate",
	schema.KindRetryRequested:     "operator retry",
	schema.KindResolveRequested:   "operator resolve",
	schema.KindResumeRequested:    "operator resume",
}

// actionsFor lists the verbs that apply to a workflow in status s.
func actionsFor(s schema.Status) []Verb {
	switch s {
	case schema.StatusRunning:
		return []Verb{VerbCancel, VerbTerminate}
	case schema.StatusBlocked:
		return []Verb{VerbResume, VerbResolve, VerbCancel, VerbTerminate}
	case schema.StatusManual:
		return []Verb{VerbRetry, VerbResolve}
	}
	return nil
}

func newWorkflowView(b base, d *orchestrator.Description, readOnly bool) workflowView {
	v := workflowView{base: b, D: d, Signal: !d.Status.Terminal()}
	if !readOnly && !d.Archived {
		v.Actions = actionsFor(d.Status)
	} else {
		v.Signal = false
	}
	for _, t := range d.Timers {
		v.Timers = append(v.Timers, timerView{t})
	}
	sent := map[int]time.Time{}
	for _, e := range d.History {
		r := row{HistoryEntry: e, Label: labels[schema.Kind(e.Type)], Body: body(e.Data)}
		if r.Label == "" {
			r.Label = e.Type
		}
		var f struct {
			Attempts int             `json:"attempts"`
			Due      time.Time       `json:"due"`
			Input    json.RawMessage `json:"input"`
			Output   json.RawMessage `json:"output"`
			Status   string          `json:"status"`
		}
		_ = json.Unmarshal(e.Data, &f)
		switch schema.Kind(e.Type) {
		case schema.KindWorkflowStarted:
			r.Class = "start"
			v.Input = body(f.Input)
		case schema.KindCommand:
			r.Class = "command"
			sent[e.CommandID] = e.Time
			if e.Compensation {
				v.Compensations++
			}
		case schema.KindResult:
			r.Class = "result"
			if e.Error != "" {
				r.Class = "failed"
			}
			r.Attempts = f.Attempts
			if e.Attempts != 0 {
				r.Attempts = e.Attempts
			}
			if t, ok := sent[e.CommandID]; ok {
				r.Duration = e.Time.Sub(t)
			}
		case schema.KindTimerStarted:
			r.Class, r.Due = "timer", f.Due
		case schema.KindTimerCancelled, schema.KindTimerFired:
			r.Class = "timer"
		case schema.KindSignal:
			r.Class = "signal"
		case schema.KindMarker:
			r.Class = "decision"
		case schema.KindCancelRequested, schema.KindTerminateRequested, schema.KindRetryRequested,
			schema.KindResolveRequested, schema.KindResumeRequested:
			r.Class = "operator"
		case schema.KindWorkflowFinished, schema.KindWorkflowBlocked:
			r.Class = "end"
			if r.Step == "" {
				r.Step = f.Status
			}
			v.Output = body(f.Output)
		}
		v.Rows = append(v.Rows, r)
	}
	// A result belongs to a compensation when its command does.
	comp := map[int]bool{}
	for _, r := range v.Rows {
		if r.Class == "command" && r.Compensation {
			comp[r.CommandID] = true
		}
	}
	for i := range v.Rows {
		if (v.Rows[i].Class == "result" || v.Rows[i].Class == "failed") && comp[v.Rows[i].CommandID] {
			v.Rows[i].Compensation = true
		}
	}
	// A very long history (a signal flood) shows its beginning and its
	// end; the JSON view has all of it.
	if n := len(v.Rows); n > maxRows {
		v.Total, v.Hidden, v.HiddenAt = n, n-maxRows, headRows
		v.Rows = append(v.Rows[:headRows:headRows], v.Rows[n-(maxRows-headRows):]...)
	}
	return v
}

// maxRows bounds the events a timeline shows, headRows of them from the
// beginning.
const (
	maxRows  = 1000
	headRows = 100
)

// body renders a JSON value for people; "" for none.
func body(js json.RawMessage) string {
	s := strings.TrimSpace(string(js))
	if s == "" || s == "null" {
		return ""
	}
	return indent(js)
}

// String names a verb for a button.
func (v Verb) String() string { return string(v) }

// Title names the verb on its form and button.
func (v Verb) Title() string {
	switch v {
	case VerbCancel:
		return "Cancel workflow"
	case VerbTerminate:
		return "Terminate workflow"
	}
	return strings.ToUpper(string(v[:1])) + string(v[1:])
}

// Help says what a verb does, under its button.
func (v Verb) Help() string {
	switch v {
	case VerbCancel:
		return "Ask the workflow to stop; it compensates what it did."
	case VerbTerminate:
		return "End the workflow at once, without compensation."
	case VerbRetry:
		return "Send the failed compensations again, with fresh attempts."
	case VerbResolve:
		return "Close the workflow as settled by hand."
	case VerbResume:
		return "Let the blocked workflow decide again."
	}
	return fmt.Sprint(v)
}
