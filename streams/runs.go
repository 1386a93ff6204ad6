package streams

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jetflow-io/jetflow/schema"
)

// A workflow that continues as new (workflow.ContinueAsNew) runs again
// under the same workflow ID with a history that starts empty. The history
// stream keeps one message per subject (a tree is purged only when a
// finished workflow is archived), so a run cannot reuse its predecessor's subjects: each run has a subject tree of its own.
// Run 1 keeps the tree every workflow has, wf.<id>.>; run N > 1 lives on
// wf.<id>=<N>.>. '=' is not an ID character (ValidID), so no user's
// workflow can take a run's tree, and it is valid in subjects and KV keys
// alike (timers, idempotency and ledger keys embed the history ID).
//
// A run's tree is a history like any other: the decision loop, the
// participants, the timer service and replay see a history ID and need no
// notion of runs. What addresses a workflow ID (signals, operator verbs,
// queries, updates, show) finds its current run with History.CurrentRun.

// RunSeparator separates a workflow ID from its run number in the history
// ID of a run after the first.
const RunSeparator = "="

// runsToken names the tree of a workflow's run pointers,
// wf.<id>=runs.<N>: outside every run's tree (no run's history, read or
// replayed, grows with the number of runs), and matched by no consumer.
const runsToken = "runs"

// maxRunHops bounds how many continued runs CurrentRun follows past the
// pointer. The pointer is written right after each run's start, so it is
// behind by one run at most (a crash between the two writes, repaired on
// the redelivered wake); more is a damaged chain.
const maxRunHops = 16

// RunID returns the history ID of run n of workflow id: id itself for the
// first run (n <= 1), id=<n> after.
func RunID(id string, n int) string {
	if n <= 1 {
		return id
	}
	return id + RunSeparator + strconv.Itoa(n)
}

// ParseRunID splits a history ID into the workflow ID and the run number
// (1 for a history ID without a run).
func ParseRunID(hid string) (id string, run int) {
	id, n, found := strings.Cut(hid, RunSeparator)
	if !found {
		return hid, 1
	}
	run, err := strconv.Atoi(n)
	if err != nil || run < 2 {
		return hid, 0
	}
	return id, run
}

// ValidHistoryID reports an error unless hid names a history: a workflow
// ID (ValidID), or the history ID of one of its runs after the first.
func ValidHistoryID(hid string) error {
	id, run := ParseRunID(hid)
	if run == 0 || (run > 1 && strconv.Itoa(run) != hid[len(id)+1:]) {
		return fmt.Errorf("invalid history id %q: want a workflow id, or <workflow id>%s<run number from 2>", Clip(hid, 200), RunSeparator)
	}
	return ValidID(id)
}

// RunPointerSubject records that run n of workflow id was started:
// wf.<id>=runs.<n>, whose value is a copy of that run's start event. The
// last message of RunPointerFilter is the latest run known.
func RunPointerSubject(id string, n int) string {
	return "wf." + id + RunSeparator + runsToken + "." + strconv.Itoa(n)
}

// RunPointerFilter matches every run pointer of workflow id.
func RunPointerFilter(id string) string { return "wf." + id + RunSeparator + runsToken + ".*" }

// CurrentRun returns the history ID of the run of workflow id that is
// current: the latest run pointer's, followed through the continued-as-new
// ends written since (normally none). A run whose end names a next run
// whose start is not stored yet (the orchestrator died between the two:
// the redelivered wake writes it) is still returned: its status says it
// continued as new, and a caller that must reach a running run asks again.
// It costs two direct gets for a workflow that never continued (the pointer
// and the first run's end) and does not grow with the number of runs.
func (h *History) CurrentRun(ctx context.Context, id string) (string, error) {
	if err := ValidHistoryID(id); err != nil {
		return "", err
	}
	if _, run := ParseRunID(id); run > 1 {
		return id, nil // a run named explicitly
	}
	run := 1
	ptr, err := h.Last(ctx, RunPointerFilter(id))
	if err != nil {
		return "", err
	}
	if ptr != nil {
		if st, ok := ptr.Value.(*schema.WorkflowStarted); ok && st.Run > 1 {
			run = st.Run
		}
	}
	for hop := 0; ; hop++ {
		hid := RunID(id, run)
		done, err := h.Last(ctx, DoneFilterOf(hid))
		if err != nil {
			return "", err
		}
		f, ok := doneValue(done)
		if !ok || f.Status != schema.StatusContinuedAsNew || f.NextRun <= run {
			return hid, nil
		}
		if hop == maxRunHops {
			return "", fmt.Errorf("workflow %s: more than %d continued runs after run pointer %d: the run pointer is not being written", id, maxRunHops, run)
		}
		next, err := h.Last(ctx, StartSubject(RunID(id, f.NextRun)))
		if err != nil {
			return "", err
		}
		if next == nil {
			return hid, nil
		}
		run = f.NextRun
	}
}

func doneValue(ev *Event) (*schema.WorkflowFinished, bool) {
	if ev == nil {
		return nil, false
	}
	f, ok := ev.Value.(*schema.WorkflowFinished)
	return f, ok
}

// Runs returns the start events of every run of workflow id after the
// first, in run order, from its run pointers (one direct get).
func (h *History) Runs(ctx context.Context, id string) ([]*schema.WorkflowStarted, error) {
	evs, err := h.LastOfEach(ctx, []string{RunPointerFilter(id)})
	if err != nil {
		return nil, err
	}
	var out []*schema.WorkflowStarted
	for _, ev := range evs {
		if st, ok := ev.Value.(*schema.WorkflowStarted); ok && st.Run > 1 && ev.Subject == RunPointerSubject(id, st.Run) {
			out = append(out, st)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Run < out[j-1].Run; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}
