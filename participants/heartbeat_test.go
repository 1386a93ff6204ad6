package participants_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/streams"
)

// A long task heartbeats its progress; the attempt after a failure reads it
// and resumes there instead of starting over. Once the command has its
// result the details are deleted.
func TestHeartbeatDetailsResumeTheNextAttempt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var mu sync.Mutex
	var seen []string // what each attempt found
	h.run(participants.Config{AckWait: 5 * time.Second}, participants.Service{Name: "copier", Handlers: map[string]participants.Handler{
		"copy": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			page := 0
			if err := cmd.HeartbeatDetails(&page); err != nil && !errors.Is(err, participants.ErrNoHeartbeatDetails) {
				return nil, err
			}
			mu.Lock()
			seen = append(seen, fmt.Sprintf("attempt %d from page %d (%v)", cmd.Attempt, page, cmd.HasHeartbeatDetails()))
			mu.Unlock()
			for ; page < 10; page++ {
				if cmd.Attempt == 1 && page == 4 {
					return nil, errors.New("disk full") // retryable: attempt 2 follows
				}
				if err := cmd.Heartbeat(ctx, page+1); err != nil {
					return nil, err
				}
			}
			return page, nil
		}),
	}})
	c := command(t, "wf-copy", "copier", "copy", nil)
	h.send(c, "cmd-wf-copy-1")
	res := h.result("wf-copy")
	if res.Error != nil || res.Attempts != 2 || decode[int](t, res.Output) != 10 {
		t.Fatalf("result %+v error %+v, want 10 pages after 2 attempts", res, res.Error)
	}
	mu.Lock()
	got := fmt.Sprint(seen)
	mu.Unlock()
	if want := "[attempt 1 from page 0 (false) attempt 2 from page 4 (true)]"; got != want {
		t.Fatalf("attempts %s, want %s", got, want)
	}
	kv, err := h.env.JS.KeyValue(h.ctx, streams.IdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Deleted after the result is published.
	natstest.Eventually(t, within, func() bool {
		_, err := kv.Get(h.ctx, "copier."+c.IdempotencyKey+".heartbeat")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, "heartbeat details deleted after the result")
}

// A handler that stops heartbeating is cancelled at its heartbeat timeout,
// long before its start-to-close, and the attempt fails as a timeout; one
// that heartbeats runs on.
func TestHeartbeatTimeoutCancelsASilentHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.run(participants.Config{AckWait: 5 * time.Second}, participants.Service{Name: "worker", Handlers: map[string]participants.Handler{
		"silent": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}),
		"chatty": participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
			// Longer than the heartbeat timeout, heartbeating all along.
			for i := 0; i < 15; i++ {
				if err := cmd.Heartbeat(ctx, nil); err != nil {
					return nil, err
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(cmd.HeartbeatTimeout / 10):
				}
			}
			return "done", nil
		}),
	}})
	c := command(t, "wf-silent", "worker", "silent", nil)
	c.StartToClose = time.Minute
	c.HeartbeatTimeout = 100 * time.Millisecond
	c.Retry.MaxAttempts = 1
	h.send(c, "cmd-wf-silent-1")
	c = command(t, "wf-chatty", "worker", "chatty", nil)
	c.StartToClose = time.Minute
	c.HeartbeatTimeout = time.Second
	c.Retry.MaxAttempts = 1
	h.send(c, "cmd-wf-chatty-1")

	res := h.result("wf-silent")
	if res.Error == nil || res.Error.Kind != participants.KindTimeout || !strings.Contains(res.Error.Message, "no heartbeat within 100ms") {
		t.Fatalf("result error %+v, want a heartbeat timeout", res.Error)
	}
	if res := h.result("wf-chatty"); res.Error != nil {
		t.Fatalf("a heartbeating handler failed: %+v", res.Error)
	}
}
