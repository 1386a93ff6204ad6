// Package workflowtest is a test environment for your own workflows, in the
// spirit of Temporal's: a real embedded nats-server with its data in
// t.TempDir(), an orchestrator on a clock the test moves, and stub
// participants written as plain functions. Nothing is mocked: histories,
// fences, timers and signals go through JetStream exactly as in production.
//
//	env := workflowtest.New(t)
//	workflow.Register(env.Registry(), "greet", Greet)
//	env.Stub(SendEmail, func(ctx context.Context, cmd *participants.Command) (any, error) { return "sent", nil })
//	env.Run()
//	env.Start("greet", "g-1", "Ada")
//	env.Advance(24 * time.Hour)               // fire the day-long timer at once
//	d := env.Wait("g-1")                      // status, decoded history
package workflowtest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Env is a running test environment.
type Env struct {
	t     testing.TB
	env   *natstest.Env
	clock *orchestrator.ManualClock
	reg   *workflow.Registry
	stubs map[string]map[string]participants.Handler
	late  []orchestrator.LateSignalRoute
	rules []orchestrator.SignalRule
	ran   bool
	// advanced is the total of every Advance: how far the test clock is
	// ahead of the wall clock.
	advanced time.Duration
	// wait bounds WaitFor; see SetWaitTimeout.
	wait time.Duration
	// retention is the orchestrator's Config.Retention; see SetRetention.
	retention time.Duration
}

// SetRetention sets the orchestrator's Config.Retention (0, the default:
// finished workflows are never archived), on the test clock: Advance past
// it archives them. Call it before Run.
func (e *Env) SetRetention(d time.Duration) { e.retention = d }

// New starts an embedded nats-server with the jetflow streams. Register
// workflows and stubs, then call Run.
func New(t testing.TB) *Env {
	t.Helper()
	return &Env{
		t: t, env: natstest.RunJetStream(t), clock: &orchestrator.ManualClock{},
		reg: workflow.NewRegistry(), stubs: map[string]map[string]participants.Handler{},
		wait: 30 * time.Second,
	}
}

// Registry is where the test registers its workflows.
func (e *Env) Registry() *workflow.Registry { return e.reg }

// Stub serves act with fn: a participant whose handler is fn. Errors steer
// retries as in a real participant (participants.NonRetryable, ...).
func (e *Env) Stub(act workflow.Activity, fn participants.HandlerFunc) {
	if e.stubs[act.Service] == nil {
		e.stubs[act.Service] = map[string]participants.Handler{}
	}
	e.stubs[act.Service][act.Action] = fn
}

// RouteLateSignals gives the orchestrator late-signal routes (see
// orchestrator.Config.LateSignals). Call it before Run.
func (e *Env) RouteLateSignals(routes ...orchestrator.LateSignalRoute) {
	e.late = append(e.late, routes...)
}

// CheckSignals gives the orchestrator signal rules (see
// orchestrator.Config.SignalRules). Call it before Run.
func (e *Env) CheckSignals(rules ...orchestrator.SignalRule) {
	e.rules = append(e.rules, rules...)
}

// JS is the environment's JetStream context, for what the Env does not
// wrap.
func (e *Env) JS() jetstream.JetStream { return e.env.JS }

// Run starts the orchestrator and the stub participants; they stop when the
// test ends.
func (e *Env) Run() {
	e.t.Helper()
	if e.ran {
		e.t.Fatal("workflowtest: Run called twice")
	}
	e.ran = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 1+len(e.stubs))
	// Every decision the orchestrator takes on a workflow kept live is
	// checked against a full replay: a difference fails the test.
	mismatches := &stickyMismatches{}
	e.t.Cleanup(func() {
		cancel()
		for i := 0; i < cap(done); i++ {
			<-done
		}
		for _, m := range mismatches.take() {
			e.t.Errorf("workflowtest: %s", m)
		}
	})
	o, err := orchestrator.New(orchestrator.Config{NC: e.env.NC, JS: e.env.JS, Registry: e.reg, Clock: e.clock, AckWait: 5 * time.Second, LateSignals: e.late, SignalRules: e.rules,
		Retention: e.retention, VerifySticky: true, Logger: slog.New(mismatches)})
	if err != nil {
		e.t.Fatalf("workflowtest: %v", err)
	}
	go func() { _ = o.Run(ctx); done <- struct{}{} }()
	for name, handlers := range e.stubs {
		svc := participants.Service{Name: name, Handlers: handlers}
		go func() {
			_ = participants.Run(ctx, participants.Config{JS: e.env.JS, AckWait: 5 * time.Second}, svc)
			done <- struct{}{}
		}()
	}
}

// Start starts workflow id of type wfType with input in. The workflow's
// clock is the test clock: after Advance(2h), it starts 2h ahead of the
// wall clock, as the timers do.
func (e *Env) Start(wfType, id string, in any) {
	e.t.Helper()
	if err := e.start(wfType, id, in); err != nil {
		e.t.Fatalf("workflowtest: start %s: %v", id, err)
	}
}

func (e *Env) start(wfType, id string, in any) error {
	if e.advanced == 0 {
		_, err := orchestrator.Start(context.Background(), e.env.JS, wfType, id, in, "workflowtest")
		return err
	}
	// The clock was moved: record how far in the start event, which is
	// what the workflow's time is computed from on every replay.
	if err := streams.ValidUserID(id); err != nil {
		return err
	}
	raw, err := schema.EncodeRaw(in)
	if err != nil {
		return fmt.Errorf("encode input: %w", err)
	}
	m, err := streams.NewMsg(streams.StartSubject(id), &schema.WorkflowStarted{
		WorkflowID: id, Type: wfType, Input: raw, Source: "workflowtest", ClockOffset: e.advanced,
	})
	if err != nil {
		return err
	}
	m.Header.Set(jetstream.MsgIDHeader, "start-"+id)
	m.Header.Set(schema.HeaderWorkflowID, id)
	_, err = streams.PublishFirst(context.Background(), e.env.JS, m)
	return err
}

// Signal sends signal name with payload (encoded as JSON, as `nats pub`
// would) to workflow id.
func (e *Env) Signal(id, name string, payload any) {
	e.t.Helper()
	body, err := json.Marshal(payload)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.env.JS.Publish(context.Background(), streams.SignalSubject(name, id), body); err != nil {
		e.t.Fatalf("workflowtest: signal %s: %v", id, err)
	}
}

// Advance moves the timer service's clock forward: timers due within d fire.
// Workflows started afterwards start on the moved clock.
func (e *Env) Advance(d time.Duration) {
	e.clock.Advance(d)
	e.advanced += d
}

// Describe returns the workflow's current state and history.
func (e *Env) Describe(id string) (*orchestrator.Description, error) {
	return orchestrator.Describe(context.Background(), streams.NewHistory(e.env.NC, e.env.JS), id)
}

// DescribeRun returns the state and history of run number run of
// workflow id (1 the first), of a workflow that continued as new.
func (e *Env) DescribeRun(id string, run int) (*orchestrator.Description, error) {
	return orchestrator.DescribeRun(context.Background(), streams.NewHistory(e.env.NC, e.env.JS), id, run)
}

// SetWaitTimeout sets how long WaitFor and Wait poll before failing the
// test. Default 30 seconds.
func (e *Env) SetWaitTimeout(d time.Duration) { e.wait = d }

// WaitFor polls until cond holds for workflow id, for up to 30 seconds (see
// SetWaitTimeout). On failure it reports the last state it saw.
func (e *Env) WaitFor(id string, cond func(*orchestrator.Description) bool) *orchestrator.Description {
	e.t.Helper()
	var d *orchestrator.Description
	natstest.Eventually(e.t, e.wait, func() bool {
		var err error
		d, err = e.Describe(id)
		return err == nil && cond(d)
	}, "workflow %s: condition not met; last state %s", id, lastState(func() *orchestrator.Description { return d }))
	return d
}

// Wait waits until workflow id is finished or blocked and returns it. A
// workflow that continues as new is waited for until its last run ends.
func (e *Env) Wait(id string) *orchestrator.Description {
	e.t.Helper()
	return e.WaitFor(id, func(d *orchestrator.Description) bool {
		return d.Status != schema.StatusContinuedAsNew && (d.Status.Terminal() || d.Status == schema.StatusBlocked)
	})
}

// Output decodes the output of a completed workflow into v (of its
// current run, when it continued as new).
func (e *Env) Output(id string, v any) error {
	h := streams.NewHistory(e.env.NC, e.env.JS)
	id, err := h.CurrentRun(context.Background(), id)
	if err != nil {
		return err
	}
	evs, err := h.Read(context.Background(), id, 0)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if f, ok := ev.Value.(*schema.WorkflowFinished); ok {
			if f.Status != schema.StatusCompleted {
				return fmt.Errorf("workflow %s is %s: %s", id, f.Status, f.Error)
			}
			return schema.DecodeRaw(f.Output, v)
		}
	}
	return fmt.Errorf("workflow %s has not finished", id)
}

// lastState prints the state a poll saw last, when the message is built
// (after the polling), not when WaitFor was called.
type lastState func() *orchestrator.Description

func (l lastState) String() string {
	d := l()
	if d == nil {
		return "not started"
	}
	return string(d.Status)
}
