package workflowtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
)

// More of the Temporal Go samples, ported as a user migrating would write
// them, each asserting the sample's documented behaviour on a real embedded
// server: timer, saga, pickfirst, mutex, expense and cancellation.

// sampleWait bounds how long a test waits for a stub's handler to be
// reached; it is a deadline, never a delay.
const sampleWait = 30 * time.Second

// received waits for a value on ch, failing the test after sampleWait.
func received[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(sampleWait):
		t.Fatalf("%s did not happen", what)
	}
	var zero T
	return zero
}

// callLog records the order in which stub handlers ran.
type callLog struct {
	mu   sync.Mutex
	list []string
}

func (c *callLog) add(s string) {
	c.mu.Lock()
	c.list = append(c.list, s)
	c.mu.Unlock()
}

func (c *callLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.list, " ")
}

// ---- timer ----

var (
	timerOrder  = workflow.Activity{Service: "orders", Action: "process", Options: workflow.StepOptions{StartToClose: time.Minute}}
	timerNotify = workflow.Activity{Service: "orders", Action: "notify"}
)

// TimerSample (Temporal's timer): process an order; if processing takes
// longer than the threshold, send the customer one notification and keep
// waiting. The processing result ends the workflow.
func TimerSample(ctx workflow.Context, order string) (string, error) {
	processed := workflow.ExecuteAsync[string](ctx, timerOrder, order)
	threshold := workflow.NewTimer(ctx, time.Hour)
	var out string
	var err error
	done := false
	sel := workflow.NewSelector(ctx).
		AddFuture(processed, func() {
			out, err = processed.Get(ctx)
			done = true
		}).
		AddFuture(threshold, func() {
			_, err = workflow.Execute[string](ctx, timerNotify, order)
		})
	for !done && err == nil {
		if serr := sel.Select(ctx); serr != nil {
			return "", serr
		}
	}
	return out, err
}

func TestSampleTemporalTimer(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "timer", TimerSample)
	started := make(chan struct{}, 1)
	finish := make(chan struct{})
	env.Stub(timerOrder, func(ctx context.Context, _ *participants.Command) (any, error) {
		started <- struct{}{}
		select {
		case <-finish:
			return "processed", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	var mu sync.Mutex
	emails := 0
	env.Stub(timerNotify, func(context.Context, *participants.Command) (any, error) {
		mu.Lock()
		emails++
		mu.Unlock()
		return "sent", nil
	})
	env.Run()
	env.Start("timer", "t-1", "o-1")
	received(t, started, "the order's processing")
	env.WaitFor("t-1", func(d *orchestrator.Description) bool { return len(d.Timers) == 1 })
	env.Advance(time.Hour)
	// The notification is recorded while the processing still runs.
	env.WaitFor("t-1", func(d *orchestrator.Description) bool {
		for _, e := range d.History {
			if e.Type == string(schema.KindResult) && e.Step == timerNotify.String() {
				return true
			}
		}
		return false
	})
	close(finish)
	d := env.Wait("t-1")
	if d.Status != schema.StatusCompleted {
		t.Fatalf("status %s (%s)", d.Status, d.Error)
	}
	var out string
	if err := env.Output("t-1", &out); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if out != "processed" || emails != 1 {
		t.Fatalf("output %q after %d notifications: want \"processed\" after exactly one", out, emails)
	}
}

// ---- saga ----

var (
	sagaWithdraw        = workflow.Activity{Service: "bank", Action: "withdraw"}
	sagaWithdrawUndo    = workflow.Activity{Service: "bank", Action: "withdraw-undo"}
	sagaDeposit         = workflow.Activity{Service: "bank", Action: "deposit"}
	sagaDepositUndo     = workflow.Activity{Service: "bank", Action: "deposit-undo"}
	sagaNotifyTransfer  = workflow.Activity{Service: "bank", Action: "notify"}
	sagaTransferDetails = Transfer{From: "alice", To: "bob", Amount: 30}
)

// Transfer moves Amount from account From to account To. FailAt names the
// stub action made to fail, for the test.
type Transfer struct {
	From, To string
	Amount   int
	FailAt   string
}

// TransferMoney (Temporal's saga): withdraw, deposit, notify; when a step
// fails, the steps done so far are undone in reverse order, each
// compensation registered only once its step succeeded.
func TransferMoney(ctx workflow.Context, tr Transfer) (string, error) {
	saga := workflow.NewSaga(ctx)
	if _, err := workflow.Execute[string](ctx, sagaWithdraw, tr); err != nil {
		return "", saga.Compensate(err)
	}
	saga.AddCompensation(sagaWithdrawUndo, tr)
	if _, err := workflow.Execute[string](ctx, sagaDeposit, tr); err != nil {
		return "", saga.Compensate(err)
	}
	saga.AddCompensation(sagaDepositUndo, tr)
	if _, err := workflow.Execute[string](ctx, sagaNotifyTransfer, tr); err != nil {
		return "", saga.Compensate(err)
	}
	return "transferred", nil
}

func TestSampleTemporalSaga(t *testing.T) {
	for _, tc := range []struct {
		failAt, calls string
	}{
		// The deposit fails: only the withdrawal is undone.
		{"deposit", "withdraw deposit withdraw-undo"},
		// The deposit ran: it is undone first, then the withdrawal.
		{"notify", "withdraw deposit notify deposit-undo withdraw-undo"},
	} {
		t.Run(tc.failAt, func(t *testing.T) {
			env := workflowtest.New(t)
			workflow.Register(env.Registry(), "transfer", TransferMoney)
			var mu sync.Mutex
			ledger := map[string]int{"alice": 100, "bob": 0}
			var log callLog
			move := func(action, from, to string) participants.HandlerFunc {
				return func(_ context.Context, cmd *participants.Command) (any, error) {
					var tr Transfer
					if err := cmd.Decode(&tr); err != nil {
						return nil, participants.NonRetryable("bad_input", err)
					}
					log.add(action)
					if tr.FailAt == action {
						return nil, participants.NonRetryable("refused", errors.New(action+" refused"))
					}
					mu.Lock()
					defer mu.Unlock()
					acct := map[string]string{"alice": tr.From, "bob": tr.To}
					if from != "" {
						ledger[acct[from]] -= tr.Amount
					}
					if to != "" {
						ledger[acct[to]] += tr.Amount
					}
					return action + " done", nil // a compensation's value is recorded, not decoded
				}
			}
			env.Stub(sagaWithdraw, move("withdraw", "alice", ""))
			env.Stub(sagaWithdrawUndo, move("withdraw-undo", "", "alice"))
			env.Stub(sagaDeposit, move("deposit", "", "bob"))
			env.Stub(sagaDepositUndo, move("deposit-undo", "bob", ""))
			env.Stub(sagaNotifyTransfer, move("notify", "", ""))
			env.Run()
			tr := sagaTransferDetails
			tr.FailAt = tc.failAt
			env.Start("transfer", "tr-1", tr)
			d := env.Wait("tr-1")
			if d.Status != schema.StatusCompensated {
				t.Fatalf("status %s (%s), calls %s: want compensated", d.Status, d.Error, &log)
			}
			if log.String() != tc.calls {
				t.Fatalf("calls %q, want %q", &log, tc.calls)
			}
			mu.Lock()
			defer mu.Unlock()
			if ledger["alice"] != 100 || ledger["bob"] != 0 {
				t.Fatalf("ledger %v after compensation: want alice 100, bob 0", ledger)
			}
		})
	}
}

// ---- pickfirst ----

var (
	pickFast = workflow.Activity{Service: "race", Action: "fast", Options: workflow.StepOptions{StartToClose: time.Minute}}
	pickSlow = workflow.Activity{Service: "race", Action: "slow", Options: workflow.StepOptions{StartToClose: time.Minute}}
)

// PickFirst (Temporal's pickfirst): run two steps in one cancellable
// scope, take the first result and cancel the other.
func PickFirst(ctx workflow.Context, _ string) (string, error) {
	sctx, cancel := workflow.WithCancel(ctx)
	fast := workflow.ExecuteAsync[string](sctx, pickFast, "a")
	slow := workflow.ExecuteAsync[string](sctx, pickSlow, "b")
	var winner string
	var err error
	sel := workflow.NewSelector(ctx).
		AddFuture(fast, func() { winner, err = fast.Get(ctx) }).
		AddFuture(slow, func() { winner, err = slow.Get(ctx) })
	if serr := sel.Select(ctx); serr != nil {
		return "", serr
	}
	cancel()
	if err != nil {
		return "", err
	}
	_, lerr := slow.Get(ctx)
	if winner == "slow" {
		_, lerr = fast.Get(ctx)
	}
	if !errors.Is(lerr, workflow.ErrCanceled) {
		return "", fmt.Errorf("the loser's Get returned %v, want ErrCanceled", lerr)
	}
	return winner, nil
}

func TestSampleTemporalPickFirst(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "pickfirst", PickFirst)
	slowStarted := make(chan struct{})
	slowTold := make(chan error, 1)
	env.Stub(pickFast, func(ctx context.Context, _ *participants.Command) (any, error) {
		// Answer only once the slow step runs, so its cancellation reaches
		// a running handler.
		select {
		case <-slowStarted:
			return "fast", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	env.Stub(pickSlow, func(ctx context.Context, _ *participants.Command) (any, error) {
		close(slowStarted)
		<-ctx.Done()
		slowTold <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	env.Run()
	env.Start("pickfirst", "pf-1", "")
	d := env.Wait("pf-1")
	if d.Status != schema.StatusCompleted {
		t.Fatalf("status %s (%s)", d.Status, d.Error)
	}
	var out string
	if err := env.Output("pf-1", &out); err != nil {
		t.Fatal(err)
	}
	if out != "fast" {
		t.Fatalf("winner %q, want fast", out)
	}
	if cause := received(t, slowTold, "the loser's cancellation"); cause == nil || cause.Error() != "the workflow cancelled this step" {
		t.Fatalf("the loser's handler context ended by %v, want the workflow's cancellation", cause)
	}
}

// ---- mutex ----

var (
	mutexGrant    = workflow.Activity{Service: "lock", Action: "grant"}
	mutexRequest  = workflow.Activity{Service: "lock", Action: "request"}
	mutexRelease  = workflow.Activity{Service: "lock", Action: "release"}
	mutexCritical = workflow.Activity{Service: "shared", Action: "use"}
)

// LockWorkflow (Temporal's mutex, simplified): grants the lock to the
// requesters one at a time, in the order they asked, n grants in all.
// The grant is a step whose participant signals the requester.
func LockWorkflow(ctx workflow.Context, n int) (int, error) {
	for i := 0; i < n; i++ {
		who, err := workflow.WaitSignal[string](ctx, "acquire")
		if err != nil {
			return i, err
		}
		if _, err := workflow.Execute[string](ctx, mutexGrant, who); err != nil {
			return i, err
		}
		if _, err := workflow.WaitSignal[string](ctx, "release"); err != nil {
			return i, err
		}
	}
	return n, nil
}

// LockedWork asks the lock workflow for the lock, uses the shared resource
// once granted, and releases the lock.
func LockedWork(ctx workflow.Context, lock string) (string, error) {
	if _, err := workflow.Execute[string](ctx, mutexRequest, lock); err != nil {
		return "", err
	}
	if _, err := workflow.WaitSignal[string](ctx, "granted"); err != nil {
		return "", err
	}
	out, err := workflow.Execute[string](ctx, mutexCritical, workflow.WorkflowID(ctx))
	if err != nil {
		return "", err
	}
	if _, err := workflow.Execute[string](ctx, mutexRelease, lock); err != nil {
		return "", err
	}
	return out, nil
}

// lockEvent is a grant, use or release of the lock as a stub saw it.
type lockEvent struct {
	what, who string
	at        time.Time
}

func TestSampleTemporalMutex(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "lock", LockWorkflow)
	workflow.Register(env.Registry(), "locked-work", LockedWork)
	var mu sync.Mutex
	var events []lockEvent
	note := func(what, who string) {
		mu.Lock()
		events = append(events, lockEvent{what: what, who: who, at: time.Now()})
		mu.Unlock()
	}
	signal := func(ctx context.Context, id, name, payload string) error {
		body, _ := json.Marshal(payload)
		_, err := orchestrator.SendSignal(ctx, env.JS(), id, name, body)
		return err
	}
	env.Stub(mutexRequest, func(ctx context.Context, cmd *participants.Command) (any, error) {
		var lock string
		_ = cmd.Decode(&lock)
		return "asked", signal(ctx, lock, "acquire", cmd.WorkflowID)
	})
	env.Stub(mutexGrant, func(ctx context.Context, cmd *participants.Command) (any, error) {
		var who string
		_ = cmd.Decode(&who)
		note("grant", who)
		return "granted", signal(ctx, who, "granted", cmd.WorkflowID)
	})
	env.Stub(mutexRelease, func(ctx context.Context, cmd *participants.Command) (any, error) {
		var lock string
		_ = cmd.Decode(&lock)
		note("release", cmd.WorkflowID)
		return "released", signal(ctx, lock, "release", cmd.WorkflowID)
	})
	env.Stub(mutexCritical, func(_ context.Context, cmd *participants.Command) (any, error) {
		note("use", cmd.WorkflowID)
		return "used by " + cmd.WorkflowID, nil
	})
	env.Run()
	env.Start("lock", "lock-1", 2)
	env.Start("locked-work", "w-1", "lock-1")
	env.Start("locked-work", "w-2", "lock-1")
	for _, id := range []string{"w-1", "w-2", "lock-1"} {
		if d := env.Wait(id); d.Status != schema.StatusCompleted {
			t.Fatalf("%s: status %s (%s)", id, d.Status, d.Error)
		}
	}
	for _, id := range []string{"w-1", "w-2"} {
		var out string
		if err := env.Output(id, &out); err != nil || out != "used by "+id {
			t.Fatalf("%s: output %q, %v", id, out, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var seq []string
	for _, e := range events {
		seq = append(seq, e.what+" "+e.who)
	}
	// Each holder is granted, uses and releases the lock before the next
	// is granted: the holding times [grant, release] never overlap.
	if len(events) != 6 || events[0].who == events[3].who {
		t.Fatalf("lock events %q: want grant, use, release for each workflow in turn", seq)
	}
	for i, want := range []string{"grant", "use", "release", "grant", "use", "release"} {
		if events[i].what != want || events[i].who != events[i/3*3].who {
			t.Fatalf("lock events %q: want grant, use, release for each workflow in turn", seq)
		}
	}
	if first, second := events[2], events[3]; second.at.Before(first.at) {
		t.Fatalf("%s granted at %s, before %s released it at %s", second.who, second.at, first.who, first.at)
	}
}

// ---- expense ----

var (
	expenseCreate = workflow.Activity{Service: "expense", Action: "create"}
	expensePay    = workflow.Activity{Service: "expense", Action: "pay"}
)

// Expense (Temporal's expense): create an expense report, wait up to ten
// minutes for a manager's "approve" or "reject", and pay it when approved.
func Expense(ctx workflow.Context, id string) (string, error) {
	if _, err := workflow.Execute[string](ctx, expenseCreate, id); err != nil {
		return "", err
	}
	decision := ""
	sel := workflow.NewSelector(ctx).
		AddSignal(ctx, "decision", func(p workflow.Payload) { _ = p.Decode(&decision) }).
		AddFuture(workflow.NewTimer(ctx, 10*time.Minute), func() { decision = "timeout" })
	if err := sel.Select(ctx); err != nil {
		return "", err
	}
	switch decision {
	case "approve":
		return workflow.Execute[string](ctx, expensePay, id)
	case "reject":
		return "rejected", nil
	case "timeout":
		return "", workflow.NewApplicationError("timeout", "no decision within 10 minutes", true)
	}
	return "", workflow.NewApplicationError("bad_decision", fmt.Sprintf("decision %q: want approve or reject", decision), true)
}

func TestSampleTemporalExpense(t *testing.T) {
	for _, tc := range []struct {
		name, decision string
		status         schema.Status
		out            string
		paid           int
	}{
		{"approve", "approve", schema.StatusCompleted, "paid", 1},
		{"reject", "reject", schema.StatusCompleted, "rejected", 0},
		{"timeout", "", schema.StatusFailed, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := workflowtest.New(t)
			workflow.Register(env.Registry(), "expense", Expense)
			var mu sync.Mutex
			paid := 0
			env.Stub(expenseCreate, func(context.Context, *participants.Command) (any, error) { return "created", nil })
			env.Stub(expensePay, func(context.Context, *participants.Command) (any, error) {
				mu.Lock()
				paid++
				mu.Unlock()
				return "paid", nil
			})
			env.Run()
			env.Start("expense", "e-1", "e-1")
			env.WaitFor("e-1", func(d *orchestrator.Description) bool { return len(d.Timers) == 1 })
			if tc.decision != "" {
				env.Signal("e-1", "decision", tc.decision)
			} else {
				env.Advance(10 * time.Minute)
			}
			d := env.Wait("e-1")
			if d.Status != tc.status {
				t.Fatalf("status %s (%s), want %s", d.Status, d.Error, tc.status)
			}
			if tc.status == schema.StatusCompleted {
				var out string
				if err := env.Output("e-1", &out); err != nil || out != tc.out {
					t.Fatalf("output %q (%v), want %q", out, err, tc.out)
				}
			} else if !strings.Contains(d.Error, "no decision within 10 minutes") {
				t.Fatalf("error %q: want the timeout", d.Error)
			}
			mu.Lock()
			defer mu.Unlock()
			if paid != tc.paid {
				t.Fatalf("paid %d times, want %d", paid, tc.paid)
			}
		})
	}
}

// ---- cancellation ----

var (
	cancelWork = workflow.Activity{Service: "jobs", Action: "work", Options: workflow.StepOptions{
		StartToClose: time.Minute, HeartbeatTimeout: 10 * time.Second,
	}}
	cancelCleanup = workflow.Activity{Service: "jobs", Action: "cleanup"}
)

// Cancellation (Temporal's cancellation): a long step heartbeats; when the
// workflow is cancelled, the step is told, and a cleanup step runs on a
// disconnected context before the workflow ends cancelled.
func Cancellation(ctx workflow.Context, _ string) (string, error) {
	out, err := workflow.Execute[string](ctx, cancelWork, "job")
	if errors.Is(err, workflow.ErrCanceled) {
		dctx := workflow.NewDisconnectedContext(ctx)
		if _, cerr := workflow.Execute[string](dctx, cancelCleanup, "job"); cerr != nil {
			return "", errors.Join(err, cerr)
		}
	}
	return out, err
}

func TestSampleTemporalCancellation(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "cancellation", Cancellation)
	started := make(chan struct{}, 1)
	told := make(chan struct{}, 1)
	env.Stub(cancelWork, func(ctx context.Context, cmd *participants.Command) (any, error) {
		started <- struct{}{}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				told <- struct{}{}
				return nil, ctx.Err()
			case <-tick.C:
				if err := cmd.Heartbeat(ctx, nil); err != nil && ctx.Err() == nil {
					return nil, err
				}
			}
		}
	})
	var mu sync.Mutex
	cleanups := 0
	env.Stub(cancelCleanup, func(context.Context, *participants.Command) (any, error) {
		mu.Lock()
		cleanups++
		mu.Unlock()
		return "cleaned", nil
	})
	env.Run()
	env.Start("cancellation", "cx-1", "")
	received(t, started, "the heartbeating step")
	if _, err := orchestrator.Cancel(context.Background(), env.JS(), "cx-1", orchestrator.Request{Identity: "ops", Reason: "not needed"}); err != nil {
		t.Fatal(err)
	}
	d := env.Wait("cx-1")
	if d.Status != schema.StatusCancelled {
		t.Fatalf("status %s (%s), want cancelled", d.Status, d.Error)
	}
	received(t, told, "the step's cancellation")
	mu.Lock()
	defer mu.Unlock()
	if cleanups != 1 {
		t.Fatalf("cleanup ran %d times, want once", cleanups)
	}
}
