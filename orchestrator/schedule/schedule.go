// Package schedule runs workflows on a cron-like schedule, durably.
//
// Each run of a schedule is a workflow of its own (RunType) whose ID is
// derived from the schedule's name and the time slot it is due at
// (RunID). It waits on a durable timer until its slot, then one step
// (the fire action of ServiceName) starts the schedule's target workflow
// (TargetID: derived from the name and the slot) and the run of the next
// slot, and the run ends. A history therefore never grows with the
// schedule's age: a daily schedule adds one short run a day.
//
// Every start is idempotent by its derived ID, so a redelivered fire, a
// crash between the two starts, several orchestrators calling Ensure at
// once, or a restart after an outage converge on one run per slot and one
// target per slot. After an outage the overdue run fires once on restart
// (one catch-up run, not one per missed slot) and the chain continues
// from the next slot after the present.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// RunType is the registered name of the workflow that is one run of a
// schedule.
const RunType = "jetflow.schedule"

// ServiceName is the participant service that fires the runs; a process
// that runs schedules runs it (Scheduler.Service).
const ServiceName = "jetflow-schedule"

// fire is the step of a run that starts the target and the next run.
var fire = workflow.Activity{Service: ServiceName, Action: "fire"}

// fireOptions retry a fire for about an hour (a server outage, a
// permission missing), then the run ends failed with the cause; Ensure,
// which the scheduler repeats, starts the chain again.
var fireOptions = workflow.StepOptions{
	StartToClose: 30 * time.Second,
	Retry: workflow.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaxInterval:        time.Minute,
		MaxAttempts:        70,
	},
}

// slotLayout formats a slot in an ID: UTC to the second.
const slotLayout = "20060102T150405Z"

// Schedule is a workflow to start on a specification.
type Schedule struct {
	// Name identifies the schedule: 1 to 64 of [A-Za-z0-9_-].
	Name string
	// Spec says when it is due; see Spec.
	Spec string
	// WorkflowType is the registered workflow each slot starts.
	WorkflowType string
	// Input is the target's input, the same for every slot.
	Input any
}

// Run is the input of a run: the schedule as it was when the run was
// started, and the slot it is due at.
type Run struct {
	Name string    `msgpack:"name" json:"name"`
	Spec string    `msgpack:"spec" json:"spec"`
	Type string    `msgpack:"type" json:"type"`
	At   time.Time `msgpack:"at" json:"at"`
}

// Fire is the input of the fire step: the run and the next slot, decided
// by the workflow so that every attempt starts the same next run.
type Fire struct {
	Run  Run       `msgpack:"run" json:"run"`
	Next time.Time `msgpack:"next" json:"next"`
}

// Result is the output of a run.
type Result struct {
	// WorkflowID is the target the run started ("" when skipped).
	WorkflowID string `msgpack:"workflow_id,omitempty" json:"workflow_id,omitempty"`
	// Next is the slot of the run it started.
	Next time.Time `msgpack:"next,omitempty" json:"next,omitzero"`
	// Skipped says why the run started nothing: its schedule was removed
	// or its specification changed since the run was started.
	Skipped string `msgpack:"skipped,omitempty" json:"skipped,omitempty"`
}

// RunID is the ID of the run of schedule name due at at.
func RunID(name string, at time.Time) string {
	return streams.DerivedID("schedule", name, at.UTC().Format(slotLayout))
}

// TargetID is the ID of the workflow schedule name starts for the slot at.
func TargetID(name string, at time.Time) string {
	return streams.DerivedID(name, at.UTC().Format(slotLayout))
}

// Register adds the run workflow to reg; an orchestrator that runs
// schedules registers it.
func Register(reg *workflow.Registry) { workflow.Register(reg, RunType, runSchedule) }

// runSchedule waits until the run's slot, then fires it once.
func runSchedule(ctx workflow.Context, r Run) (Result, error) {
	if d := r.At.Sub(workflow.Now(ctx)); d > 0 {
		if err := workflow.Sleep(ctx, d); err != nil {
			return Result{}, err
		}
	}
	spec, err := Parse(r.Spec)
	if err != nil {
		return Result{}, &workflow.ManualError{Reason: "unreadable schedule", Cause: err}
	}
	from := workflow.Now(ctx)
	if from.Before(r.At) {
		from = r.At
	}
	next := spec.Next(from)
	return workflow.Execute[Result](ctx, fire.WithOptions(fireOptions), Fire{Run: r, Next: next})
}

// Scheduler fires the runs of a set of schedules and starts their chains.
type Scheduler struct {
	js     jetstream.JetStream
	byName map[string]Schedule
	specs  map[string]Spec
}

// New checks the schedules and returns their scheduler on js. The
// error names the schedule and what is wrong with it.
func New(js jetstream.JetStream, schedules ...Schedule) (*Scheduler, error) {
	s := &Scheduler{js: js, byName: map[string]Schedule{}, specs: map[string]Spec{}}
	for _, sc := range schedules {
		if err := streams.ValidToken(sc.Name); err != nil || len(sc.Name) > 64 {
			return nil, fmt.Errorf("schedule name %q: want 1 to 64 of [A-Za-z0-9_-]", sc.Name)
		}
		if _, dup := s.byName[sc.Name]; dup {
			return nil, fmt.Errorf("schedule %q: configured twice", sc.Name)
		}
		spec, err := Parse(sc.Spec)
		if err != nil {
			return nil, err
		}
		if spec.Next(time.Now()).IsZero() {
			return nil, fmt.Errorf("schedule %q: %q is never due", sc.Name, sc.Spec)
		}
		if sc.WorkflowType == "" {
			return nil, fmt.Errorf("schedule %q: no workflow type", sc.Name)
		}
		s.byName[sc.Name], s.specs[sc.Name] = sc, spec
	}
	return s, nil
}

// Service is the participant service that fires the runs. Run it (with
// participants.Run) wherever the schedules are configured: it starts what
// the present configuration says, so a run of a schedule since removed or
// changed starts nothing and ends the old chain.
func (s *Scheduler) Service() participants.Service {
	return participants.Service{
		Name:     ServiceName,
		Handlers: map[string]participants.Handler{fire.Action: participants.HandlerFunc(s.fire)},
	}
}

func (s *Scheduler) fire(ctx context.Context, cmd *participants.Command) (any, error) {
	var f Fire
	if err := cmd.Decode(&f); err != nil {
		return nil, participants.NonRetryable("bad_request", err)
	}
	sc, ok := s.byName[f.Run.Name]
	switch {
	case !ok:
		return Result{Skipped: fmt.Sprintf("schedule %q is no longer configured", f.Run.Name)}, nil
	case sc.Spec != f.Run.Spec:
		return Result{Skipped: fmt.Sprintf("schedule %q is now %q, not %q", sc.Name, sc.Spec, f.Run.Spec)}, nil
	}
	target := TargetID(sc.Name, f.Run.At)
	if _, err := orchestrator.StartDerived(ctx, s.js, sc.WorkflowType, target, sc.Input, "schedule:"+sc.Name); err != nil {
		return nil, fmt.Errorf("schedule %s: start %s: %w", sc.Name, target, err)
	}
	res := Result{WorkflowID: target}
	if !f.Next.IsZero() {
		if _, err := s.startRun(ctx, sc, f.Next); err != nil {
			return nil, err
		}
		res.Next = f.Next
	}
	return res, nil
}

// startRun starts the run of sc due at at, unless it was started before.
func (s *Scheduler) startRun(ctx context.Context, sc Schedule, at time.Time) (bool, error) {
	id := RunID(sc.Name, at)
	started, err := orchestrator.StartDerived(ctx, s.js, RunType, id,
		Run{Name: sc.Name, Spec: sc.Spec, Type: sc.WorkflowType, At: at.UTC()}, "schedule:"+sc.Name)
	if err != nil {
		return false, fmt.Errorf("schedule %s: start run %s: %w", sc.Name, id, err)
	}
	return started, nil
}

// Ensure starts, for every schedule, the run of its next slot after now
// unless it exists: the first run of a new schedule, and the chain again
// after one was broken. Calling it on every start of a process, and now
// and then, is safe: it starts nothing a running chain has not started
// or will not start itself.
func (s *Scheduler) Ensure(ctx context.Context, now time.Time) error {
	var errs []error
	for _, name := range s.names() {
		if _, err := s.startRun(ctx, s.byName[name], s.specs[name].Next(now)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Keep calls Ensure now and then every interval until ctx is done; errors
// go to report (nil: dropped). It returns ctx.Err().
func (s *Scheduler) Keep(ctx context.Context, interval time.Duration, report func(error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Ensure(ctx, time.Now()); err != nil && report != nil && ctx.Err() == nil {
			report(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Scheduler) names() []string {
	out := make([]string, 0, len(s.byName))
	for n := range s.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Info is one schedule as its runs show it (List).
type Info struct {
	Name string `json:"name"`
	Spec string `json:"spec"`
	// Type is the workflow type it starts.
	Type string `json:"type"`
	// NextRun is the slot of its pending run (zero: none pending).
	NextRun time.Time `json:"next_run,omitzero"`
	// LastRun is the slot of the latest run that started its target.
	LastRun time.Time `json:"last_run,omitzero"`
	// LastWorkflow is that target's ID; LastStatus its status and
	// LastResult its output as JSON, or its error.
	LastWorkflow string        `json:"last_workflow,omitempty"`
	LastStatus   schema.Status `json:"last_status,omitempty"`
	LastResult   string        `json:"last_result,omitempty"`
}

// List returns the schedules whose runs started since since, by name:
// the pending run gives the next slot, the latest fired run the last one
// with its target's status and result. A daily schedule needs since to
// reach two days back (its last fired run started the day before it
// fired); a weekly one two weeks. It reads the start events of that
// window and the histories of the runs it finds.
func List(ctx context.Context, js jetstream.JetStream, since time.Time) ([]Info, error) {
	h := streams.NewHistory(js.Conn(), js)
	byName := map[string]*Info{}
	cursor := ""
	for {
		page, err := orchestrator.ListPage(ctx, js, orchestrator.ListOptions{Type: RunType, Since: since, Limit: orchestrator.MaxListLimit, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		for _, w := range page.Workflows {
			if err := addRun(ctx, h, byName, w.ID); err != nil {
				return nil, err
			}
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	out := make([]Info, 0, len(byName))
	for _, in := range byName {
		if in.LastWorkflow != "" {
			in.LastStatus, in.LastResult = outcome(ctx, h, in.LastWorkflow)
		}
		out = append(out, *in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// addRun folds run id into its schedule's Info.
func addRun(ctx context.Context, h *streams.History, byName map[string]*Info, id string) error {
	evs, err := h.Read(ctx, id, 0)
	if err != nil {
		return fmt.Errorf("schedule run %s: %w", id, err)
	}
	var run *Run
	var fin *schema.WorkflowFinished
	for _, ev := range evs {
		switch v := ev.Value.(type) {
		case *schema.WorkflowStarted:
			var r Run
			if err := schema.DecodeRaw(v.Input, &r); err == nil {
				run = &r
			}
		case *schema.WorkflowFinished:
			fin = v
		}
	}
	if run == nil {
		return nil
	}
	in := byName[run.Name]
	if in == nil {
		in = &Info{Name: run.Name}
		byName[run.Name] = in
	}
	switch {
	case fin == nil:
		if run.At.After(in.NextRun) {
			in.NextRun, in.Spec, in.Type = run.At, run.Spec, run.Type
		}
	case fin.Status == schema.StatusCompleted:
		var res Result
		if err := schema.DecodeRaw(fin.Output, &res); err == nil && res.WorkflowID != "" && run.At.After(in.LastRun) {
			in.LastRun, in.LastWorkflow = run.At, res.WorkflowID
		}
	}
	if in.Spec == "" {
		in.Spec, in.Type = run.Spec, run.Type
	}
	return nil
}

// outcome is the status of workflow id and its output as JSON, or its
// error or reason.
func outcome(ctx context.Context, h *streams.History, id string) (schema.Status, string) {
	evs, err := h.Read(ctx, id, 0)
	if errors.Is(err, streams.ErrNotFound) || (err == nil && len(evs) == 0) {
		return "", "not found (removed?)"
	}
	if err != nil {
		return "", err.Error()
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if fin, ok := evs[i].Value.(*schema.WorkflowFinished); ok {
			switch {
			case len(fin.Output) > 0:
				if js, err := schema.ToJSON(fin.Output); err == nil {
					return fin.Status, strings.TrimSpace(string(js))
				}
			case fin.Reason != "":
				return fin.Status, fin.Reason
			}
			return fin.Status, fin.Error
		}
	}
	return schema.StatusRunning, ""
}
