package participants_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/streams"
)

// flaky is a service whose one action always fails retryably, counting
// its calls.
func (h *harness) flaky(calls *atomic.Int32) {
	h.t.Helper()
	h.run(participants.Config{AckWait: 5 * time.Second}, participants.Service{Name: "flaky", Handlers: map[string]participants.Handler{
		"try": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			calls.Add(1)
			return nil, errors.New("still down")
		}),
	}})
}

// A step retried without a count (MaxAttempts 0 on the wire) ends when its
// schedule-to-close timeout passes: a final "timeout" failure, not the
// consumer's MaxDeliver.
func TestScheduleToCloseEndsUnlimitedRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var calls atomic.Int32
	h.flaky(&calls)
	c := command(t, "wf-s2c", "flaky", "try", 1)
	c.Retry.MaxAttempts = 0
	c.Retry.InitialInterval = 100 * time.Millisecond
	c.ScheduleToClose = 2 * time.Second
	h.send(c, "cmd-wf-s2c-1")
	res := h.result("wf-s2c")
	if res.Error == nil || res.Error.Kind != participants.KindTimeout || !strings.Contains(res.Error.Message, "schedule-to-close timeout 2s") ||
		!strings.Contains(res.Error.Message, "still down") {
		t.Fatalf("result error %+v, want a schedule-to-close timeout quoting the last error", res.Error)
	}
	// It ends after a failed attempt whose retry would pass the deadline,
	// or at a retry delivered just after it; either way the attempts are
	// the handler's calls.
	if res.Attempts < 2 || int(calls.Load()) != res.Attempts {
		t.Fatalf("%d attempts, %d calls: want the step retried until its deadline", res.Attempts, calls.Load())
	}
}

// TestScheduleToCloseQuotesTheLastFailureOfALateRetry: a retry that comes
// back after the step's deadline (its participant was away, or busy) ends
// the step with a timeout that still says why it was being retried.
func TestScheduleToCloseQuotesTheLastFailureOfALateRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var calls atomic.Int32
	svc := participants.Service{Name: "flaky", Handlers: map[string]participants.Handler{
		"try": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			calls.Add(1)
			return nil, errors.New("still down")
		}),
	}}
	stop := h.run(participants.Config{AckWait: 2 * time.Second}, svc)
	c := command(t, "wf-late-retry", "flaky", "try", 1)
	c.Retry.MaxAttempts = 0
	c.Retry.InitialInterval = 2 * time.Second // the retry is due before the deadline
	c.ScheduleToClose = 3 * time.Second
	deadline := time.Now().Add(c.ScheduleToClose)
	h.send(c, "cmd-wf-late-retry-1")
	// The first attempt fails and is noted; the participant then stops,
	// before its retry is due, until the deadline has passed.
	kv, err := h.env.JS.KeyValue(h.ctx, streams.AttemptsBucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, within, func() bool {
		keys, err := kv.Keys(h.ctx)
		return err == nil && len(keys) == 1
	}, "the first attempt's failure was not noted")
	stop()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d attempts before the stop, want 1", n)
	}
	natstest.Eventually(t, within, func() bool { return time.Now().After(deadline) }, "the deadline did not pass")
	h.run(participants.Config{AckWait: 2 * time.Second}, svc)
	res := h.result("wf-late-retry")
	const want = "passed before attempt 2; attempt 1 failed: still down"
	if res.Error == nil || res.Error.Kind != participants.KindTimeout || !strings.Contains(res.Error.Message, want) {
		t.Fatalf("result error %+v, want a timeout ending %q", res.Error, want)
	}
	if res.Attempts != 1 || calls.Load() != 1 {
		t.Fatalf("%d attempts, %d calls: want the one attempt made", res.Attempts, calls.Load())
	}
}

// A command whose schedule-to-close timeout passed before it reached the
// participant fails at once without running its handler.
func TestScheduleToClosePassedBeforeTheAttempt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var calls atomic.Int32
	h.flaky(&calls)
	c := command(t, "wf-late", "flaky", "try", 1)
	c.ScheduleToClose = time.Microsecond
	h.send(c, "cmd-wf-late-1")
	res := h.result("wf-late")
	if res.Error == nil || res.Error.Kind != participants.KindTimeout || !strings.Contains(res.Error.Message, "passed before attempt 1") {
		t.Fatalf("result error %+v, want a schedule-to-close timeout before the attempt", res.Error)
	}
	if n := calls.Load(); n != 0 || res.Attempts != 0 {
		t.Fatalf("handler ran %d times, %d attempts reported: want 0", n, res.Attempts)
	}
}
