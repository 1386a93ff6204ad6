package schema

import (
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"
)

// goldens pins the bytes of every persisted type. A change here changes what
// is on disk: it must be deliberate, backwards compatible, and come with a
// schema version bump when old readers cannot read the new bytes.
var goldens = []struct {
	name string
	v    Kinded
}{
	{"workflow.started", &WorkflowStarted{WorkflowID: "o-1", Type: "order.fulfillment", Input: mustRaw(map[string]any{"order_id": "o-1", "amount_cents": 12999}), Source: "order.created#7"}},
	{"workflow.started.clock_offset", &WorkflowStarted{WorkflowID: "t-1", Type: "nap", Input: mustRaw(0), Source: "workflowtest", ClockOffset: 2 * time.Hour}},
	{"command", &Command{WorkflowID: "o-1", ID: 1, Service: "payment", Action: "charge", Input: mustRaw(map[string]any{"amount_cents": 12999}),
		IdempotencyKey: "o-1.1", ReplyTo: "wf.o-1.res.payment.charge", StartToClose: 10 * time.Second,
		Retry: RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaxInterval: 5 * time.Second, MaxAttempts: 5, NonRetryable: []string{"declined"}}}},
	{"command.compensation", &Command{WorkflowID: "o-1", ID: 4, Service: "payment", Action: "refund", IdempotencyKey: "o-1.4",
		ReplyTo: "wf.o-1.res.payment.refund", StartToClose: time.Second, Compensation: true}},
	{"command.timeouts", &Command{WorkflowID: "o-1", ID: 2, Service: "payment", Action: "charge", IdempotencyKey: "o-1.2",
		ReplyTo: "wf.o-1.res.payment.charge", StartToClose: time.Second, ScheduleToClose: time.Minute, HeartbeatTimeout: 5 * time.Second}},
	{"marker", &Marker{ID: 2, Name: "side_effect", Value: mustRaw(42)}},
	{"result.ok", &Result{WorkflowID: "o-1", CommandID: 1, Service: "payment", Action: "charge", Output: mustRaw(map[string]any{"charge_id": "ch_1"}), Attempts: 1}},
	{"result.error", &Result{WorkflowID: "o-1", CommandID: 2, Service: "inventory", Action: "reserve", Error: &Error{Kind: "out_of_stock", Message: "sku-1"}, Attempts: 1}},
	{"workflow.finished", &WorkflowFinished{Status: StatusManual, Error: "boom", Reason: "compensation failed"}},
	{"workflow.finished.failed", &WorkflowFinished{Status: StatusFailed, Error: "invalid_order: no items", ErrorKind: "invalid_order", NonRetryable: true}},
	{"workflow.blocked", &WorkflowBlocked{Reason: "nondeterminism", EventSeq: 12, Recorded: "command payment.charge", Issued: "command inventory.reserve"}},
	{"timer.started", &TimerStarted{ID: 5, Duration: 72 * time.Hour, Due: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}},
	{"timer.cancelled", &TimerCancelled{ID: 7, TimerID: 5}},
	{"timer.fired", &TimerFired{TimerID: 5, Due: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}},
	{"workflow.finished.retryable", &WorkflowFinished{Status: StatusManual, Error: "boom", Reason: "compensation failed", Retryable: true}},
	{"workflow.finished.terminated", &WorkflowFinished{Status: StatusTerminated, Reason: "duplicate order", Identity: "alice@ops-1"}},
	{"operator.cancel", &OperatorRequest{Verb: VerbCancel, Reason: "customer asked", Identity: "alice@ops-1"}},
	{"operator.terminate", &OperatorRequest{Verb: VerbTerminate, Reason: "duplicate order", Identity: "alice@ops-1"}},
	{"operator.retry", &OperatorRequest{Verb: VerbRetry, Identity: "alice@ops-1"}},
	{"operator.resolve", &OperatorRequest{Verb: VerbResolve, Reason: "refunded by hand", Identity: "alice@ops-1"}},
	{"operator.resume", &OperatorRequest{Verb: VerbResume, Reason: "fix deployed", Identity: "bob@ops-2"}},
	{"step.cancelled", &StepCancelled{ID: 6, CommandID: 3}},
	{"signal", &Signal{Name: "carrier.picked_up", Payload: mustRaw(map[string]any{"carrier": "DHL"}), Source: "signal.carrier.picked_up.o-1#3"}},
	{"update.accepted", &UpdateAccepted{UpdateID: "u-1", Name: "add", Arg: mustRaw(5)}},
	{"update.completed", &UpdateCompleted{ID: 3, UpdateID: "u-1", Name: "add", Output: mustRaw(8)}},
	{"update.completed.error", &UpdateCompleted{ID: 4, UpdateID: "u-2", Name: "add", Error: "workflow finished before the update completed"}},
	{"workflow.started.run", &WorkflowStarted{WorkflowID: "loop-1", Type: "loop", Input: mustRaw(100), Source: "continue-as-new of loop-1", Run: 2}},
	{"workflow.finished.continued-as-new", &WorkflowFinished{Status: StatusContinuedAsNew, NextRun: 2, NextInput: mustRaw(100)}},
	// Children and signals between workflows.
	{"child.started", &ChildStarted{ID: 3, ChildID: "_child-o-1-3", Type: "payment", Input: mustRaw(map[string]any{"amount_cents": 12999}), ParentClose: ParentCloseTerminate}},
	{"child.cancel", &ChildCancelRequested{ID: 5, Child: 3}},
	{"child.ended", &ChildEnded{Child: 3, ChildID: "_child-o-1-3", Status: StatusFailed, Error: "declined: card refused", ErrorKind: "declined", NonRetryable: true}},
	{"child.ended.completed", &ChildEnded{Child: 3, ChildID: "_child-o-1-3", Status: StatusCompleted, Output: mustRaw("ch_1")}},
	{"signal.external", &SignalExternal{ID: 4, WorkflowID: "o-2", Name: "carrier.picked_up", Payload: mustRaw("DHL")}},
	{"signal.external.done", &SignalExternalDone{Signal: 4, Seq: 17}},
	{"signal.external.done.not_found", &SignalExternalDone{Signal: 4, Error: SignalExternalNotFound}},
	{"workflow.started.child", &WorkflowStarted{WorkflowID: "_child-o-1-3", Type: "payment", Input: mustRaw(1), Source: "child of o-1#3", Parent: &ChildOf{WorkflowID: "o-1", Child: 3}}},
	{"workflow.started.signal", &WorkflowStarted{WorkflowID: "w-1", Type: "collect", Input: mustRaw("in"), Source: "signal-with-start item", Signal: &Signal{Name: "item", Payload: mustRaw("x"), Source: "signal-with-start"}}},
}

func mustRaw(v any) Raw {
	r, err := EncodeRaw(v)
	if err != nil {
		panic(err)
	}
	return r
}

func TestGoldenBytes(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			body, kind, err := Encode(g.v)
			if err != nil {
				t.Fatal(err)
			}
			if kind != g.v.Kind() {
				t.Fatalf("kind %q", kind)
			}
			got := hex.EncodeToString(body)
			if os.Getenv("JETFLOW_PRINT_GOLDEN") != "" {
				t.Logf("%s: %s", g.name, got)
			}
			if got != goldenHex[g.name] {
				t.Fatalf("encoding of %s changed:\n got  %s\n want %s", g.name, got, goldenHex[g.name])
			}
			back, err := Decode(string(kind), SchemaString, body)
			if err != nil {
				t.Fatal(err)
			}
			again, _, _ := Encode(back)
			if hex.EncodeToString(again) != got {
				t.Fatalf("decode/encode round trip changed the bytes")
			}
		})
	}
}

func TestDecodeRefusesUnknownAndFuture(t *testing.T) {
	body, _, _ := Encode(&Marker{ID: 1, Name: "x"})
	if _, err := Decode("marker", "2", body); !errors.Is(err, ErrFutureSchema) {
		t.Errorf("future schema: %v", err)
	}
	if _, err := Decode("teleport", "1", body); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := Decode("marker", "1", []byte("\xc1garbage")); err == nil {
		t.Errorf("garbage decoded")
	}
	if _, err := Decode("marker", "1", append(body, 0x01)); err == nil {
		t.Errorf("trailing bytes accepted")
	}
}

func TestToJSONShowsNestedPayloads(t *testing.T) {
	body, _, _ := Encode(&Result{CommandID: 1, Output: mustRaw(map[string]any{"charge_id": "ch_1"})})
	js, err := ToJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"action":"","attempts":0,"command_id":1,"output":{"charge_id":"ch_1"},"service":"","workflow_id":""}`
	if string(js) != want {
		t.Fatalf("got %s\nwant %s", js, want)
	}
	if _, err := ToJSON([]byte(`{"order_id":"o-1"}`)); err == nil {
		t.Fatal("JSON text taken for msgpack")
	}
}

func TestRetryPolicyDelay(t *testing.T) {
	p := RetryPolicy{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaxInterval: time.Second, MaxAttempts: 5}
	for next, want := range map[int]time.Duration{2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 4: 400 * time.Millisecond, 5: 800 * time.Millisecond, 6: time.Second, 20: time.Second} {
		if got := p.Delay(next); got != want {
			t.Errorf("Delay(%d) = %v, want %v", next, got, want)
		}
	}
	if p.Exhausted(4) || !p.Exhausted(5) {
		t.Error("Exhausted wrong")
	}
	if (RetryPolicy{}).Exhausted(1000) {
		t.Error("MaxAttempts 0 must mean unlimited")
	}
}

func TestOperatorStatusesAreTerminalAndValid(t *testing.T) {
	for _, s := range []Status{StatusCancelled, StatusTerminated, StatusResolved} {
		if !s.Valid() || !s.Terminal() {
			t.Errorf("%s: valid %v, terminal %v; want both", s, s.Valid(), s.Terminal())
		}
	}
	if StatusBlocked.Terminal() || StatusRunning.Terminal() {
		t.Error("blocked and running must not be terminal")
	}
}

func TestOperatorRequestVerbMustMatchItsKind(t *testing.T) {
	body, kind, _ := Encode(&OperatorRequest{Verb: VerbCancel, Reason: "r"})
	if kind != KindCancelRequested {
		t.Fatalf("kind %q", kind)
	}
	v, err := Decode(string(kind), "1", body)
	if err != nil || v.(*OperatorRequest).Verb != VerbCancel {
		t.Fatalf("decode: %v %+v", err, v)
	}
	if _, err := Decode(string(KindTerminateRequested), "1", body); err == nil {
		t.Fatal("a cancel body under operator.terminate was accepted")
	}
}
