package workflowtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// runState is what the "run" query of account answers.
type runState struct {
	Run     int `json:"run"`
	Balance int `json:"balance"`
}

// account keeps a balance that "deposit" updates add to, answers "run"
// queries, and continues as new, balance carried, at each "rollover"
// signal.
func account(ctx workflow.Context, balance int) (int, error) {
	if err := workflow.SetQueryHandler(ctx, "run", func(struct{}) (runState, error) {
		return runState{Run: workflow.RunNumber(ctx), Balance: balance}, nil
	}); err != nil {
		return 0, err
	}
	if err := workflow.SetUpdateHandler(ctx, "deposit", func(_ workflow.Context, n int) (int, error) {
		balance += n
		return balance, nil
	}, nil); err != nil {
		return 0, err
	}
	if _, err := workflow.WaitSignal[struct{}](ctx, "rollover"); err != nil {
		return balance, err
	}
	return 0, workflow.ContinueAsNew(ctx, balance)
}

// TestContinueAsNewAddressesTheCurrentRun: after a continue-as-new, a
// query, an update and an operator's cancel sent to the workflow ID all
// act on the new run; the old run stays as it ended.
func TestContinueAsNewAddressesTheCurrentRun(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "account", account)
	env.Run()
	env.Start("account", "acct-1", 0)
	var bal int
	if err := env.Update("acct-1", "deposit", 5, &bal); err != nil || bal != 5 {
		t.Fatalf("deposit in run 1: %d, %v; want 5", bal, err)
	}
	env.Signal("acct-1", "rollover", struct{}{})
	env.WaitFor("acct-1", func(d *orchestrator.Description) bool { return d.Run == 2 })
	var rs runState
	if err := env.Query("acct-1", "run", nil, &rs); err != nil || rs != (runState{Run: 2, Balance: 5}) {
		t.Fatalf("query after the rollover: %+v, %v; want run 2, balance 5", rs, err)
	}
	if err := env.Update("acct-1", "deposit", 7, &bal); err != nil || bal != 12 {
		t.Fatalf("deposit in run 2: %d, %v; want 12", bal, err)
	}
	// A signal sent by the workflow ID, and its verdict, are run 2's.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if v, err := orchestrator.SignalAndWait(ctx, env.JS(), "acct-1", "ping", nil); err != nil || !v.Recorded {
		t.Fatalf("signal to run 2: %+v, %v; want it recorded", v, err)
	}
	if _, err := orchestrator.Cancel(context.Background(), env.JS(), "acct-1", orchestrator.Request{Reason: "closed", Identity: "test"}); err != nil {
		t.Fatal(err)
	}
	d := env.Wait("acct-1")
	if d.Status != schema.StatusCancelled || d.Run != 2 {
		t.Fatalf("after cancel: %s in run %d; want cancelled in run 2", d.Status, d.Run)
	}
	// Every request after the rollover landed in run 2's tree; run 1
	// holds the first update, the rollover and its end alone.
	for run, want := range map[int][]string{
		1: {"update.accepted", "update.completed", "signal", "workflow.finished"},
		2: {"update.accepted", "update.completed", "signal", "operator.cancel", "workflow.finished"},
	} {
		rd, err := env.DescribeRun("acct-1", run)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range rd.History {
			switch e.Type {
			case "update.accepted", "update.completed", "signal", "operator.cancel", "workflow.finished":
				got = append(got, e.Type)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("run %d: %v, want %v", run, got, want)
		}
	}
	if first, _ := env.DescribeRun("acct-1", 1); first.Status != schema.StatusContinuedAsNew {
		t.Errorf("run 1: %s, want %s", first.Status, schema.StatusContinuedAsNew)
	}
}

// TestContinueAsNewStartWrittenOnRedelivery: the history an orchestrator
// leaves when it dies between a run's continued-as-new end and the next
// run's start. The redelivered wake (here the start event, delivered to
// the orchestrator that starts afterwards) finds the run ended and writes
// the next run's start from the end, which then runs to completion.
func TestContinueAsNewStartWrittenOnRedelivery(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "counting-loop", countingLoop)
	ctx := context.Background()
	in, _ := schema.EncodeRaw(loopState{Done: 3, Target: 5, Every: 10})
	for _, ev := range []struct {
		subject string
		v       schema.Kinded
	}{
		{streams.StartSubject("crash-1"), &schema.WorkflowStarted{WorkflowID: "crash-1", Type: "counting-loop", Input: in}},
		{streams.DoneSubject("crash-1", string(schema.StatusContinuedAsNew)), &schema.WorkflowFinished{Status: schema.StatusContinuedAsNew, NextRun: 2, NextInput: in}},
	} {
		m, err := streams.NewMsg(ev.subject, ev.v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS().PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Before any orchestrator ran: the workflow's current run is the
	// ended one, whose next run is not started.
	if d, err := env.Describe("crash-1"); err != nil || d.Status != schema.StatusContinuedAsNew {
		t.Fatalf("before the redelivery: %v, %v", d, err)
	}
	env.Run()
	d := env.Wait("crash-1")
	var n int
	if err := env.Output("crash-1", &n); err != nil || n != 5 || d.Run != 2 {
		t.Fatalf("output %d (%v) in run %d; want 5 in run 2", n, err, d.Run)
	}
}

// napper starts an hour's timer it never waits for and continues as new;
// the second run sleeps 30 minutes and returns.
func napper(ctx workflow.Context, _ struct{}) (string, error) {
	if workflow.RunNumber(ctx) == 1 {
		workflow.NewTimer(ctx, time.Hour)
		return "", workflow.ContinueAsNew(ctx, struct{}{})
	}
	if err := workflow.Sleep(ctx, 30*time.Minute); err != nil {
		return "", err
	}
	return "rested", nil
}

// TestContinueAsNewDropsTheOldRunsTimers: the pending timer of a run that
// continued as new leaves the timers bucket with the run's end, so it
// never fires; the new run's own timer does.
func TestContinueAsNewDropsTheOldRunsTimers(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "napper", napper)
	env.Run()
	env.Start("napper", "nap-1", struct{}{})
	env.WaitFor("nap-1", func(d *orchestrator.Description) bool { return d.Run == 2 && len(d.Timers) == 1 })
	kv, err := env.JS().KeyValue(context.Background(), streams.TimersBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(context.Background())
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		t.Fatal(err)
	}
	if len(keys) != 1 || !strings.HasPrefix(keys[0], streams.RunID("nap-1", 2)+".") {
		t.Fatalf("timers bucket holds %v; want run 2's timer alone", keys)
	}
	env.Advance(2 * time.Hour)
	if d := env.Wait("nap-1"); d.Status != schema.StatusCompleted {
		t.Fatalf("status %s", d.Status)
	}
	first, err := env.DescribeRun("nap-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range first.History {
		if e.Type == string(schema.KindTimerFired) {
			t.Errorf("run 1's timer fired after the run ended: %s", e.Subject)
		}
	}
	// Each run's saved history replays as that run: run 2 takes the
	// second run's path, and both end as recorded.
	for run := 1; run <= 2; run++ {
		d, err := env.DescribeRun("nap-1", run)
		if err != nil {
			t.Fatal(err)
		}
		saved, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		id, evs, err := workflow.ReadHistoryJSON(bytes.NewReader(saved))
		if err != nil {
			t.Fatal(err)
		}
		if err := workflow.NewReplayer(env.Registry()).ReplayHistory(id, evs); err != nil {
			t.Errorf("run %d replayed from its saved history: %v", run, err)
		}
	}
}
