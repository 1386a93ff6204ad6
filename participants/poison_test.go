package participants_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestPoisonCommandEndsAtMaxDeliver: a command whose handler crashes or
// panics on every attempt, under a retry policy without a limit, is not run
// again and again: the delivery that reaches MaxDeliver is dead-lettered
// unhandled with "crashed or timed out N deliveries" and answered with a
// final undeliverable failure, published as its result, so its
// workflow goes on with its compensation.
func TestPoisonCommandEndsAtMaxDeliver(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  func() error
	}{
		{"handler crashes every time", func() error { return participants.ErrCrash }},
		{"handler panics every time", func() error { panic("poison input") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			var runs atomic.Int64
			svc := participants.Service{Name: "unit", Handlers: map[string]participants.Handler{
				"do": participants.HandlerFunc(func(context.Context, *participants.Command) (any, error) {
					runs.Add(1)
					return nil, tc.err()
				}),
			}}
			h.run(participants.Config{AckWait: 300 * time.Millisecond, MaxDeliver: 3}, svc)
			c := command(t, "wf-poison", "unit", "do", map[string]string{"x": "y"})
			c.Retry.MaxAttempts = 0 // unlimited: only MaxDeliver ends it
			seq := h.send(c, "cmd-wf-poison-1")

			res := h.result("wf-poison")
			want := "crashed or timed out 2 deliveries"
			if res.Error == nil || res.Error.Kind != participants.KindUndeliverable || res.Error.Message != want || res.Attempts != 3 {
				t.Fatalf("result %+v error %+v, want a final %s failure %q at attempt 3", res, res.Error, participants.KindUndeliverable, want)
			}
			if n := runs.Load(); n != 2 {
				t.Errorf("handler ran %d times, want 2 (the last delivery is not handled)", n)
			}
			dls := h.deadLetters()
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dls))
			}
			dl := dls[0]
			if dl.Subject != streams.DeadLetterSubject("cmd.unit") || dl.Header.Get(schema.HeaderReason) != want ||
				dl.Header.Get(schema.HeaderSourceSeq) != strconv.FormatUint(seq, 10) {
				t.Errorf("dead letter on %s, reason %q, source seq %s; want dlq.cmd.unit, %q, %d",
					dl.Subject, dl.Header.Get(schema.HeaderReason), dl.Header.Get(schema.HeaderSourceSeq), want, seq)
			}
			h.waitAcked("unit", seq)
		})
	}
}

// TestMaxDeliverUpgradesTheConsumer: a consumer created by an earlier
// version, without MaxDeliver, is updated in place when the service starts.
func TestMaxDeliverUpgradesTheConsumer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	old := streams.ParticipantConsumerConfig("unit", time.Second, 16, 0)
	old.MaxDeliver = -1
	if _, err := h.env.JS.CreateOrUpdateConsumer(h.ctx, streams.HistoryStream, old); err != nil {
		t.Fatal(err)
	}
	svc := participants.Service{Name: "unit", Handlers: map[string]participants.Handler{
		"do": participants.HandlerFunc(func(context.Context, *participants.Command) (any, error) { return nil, nil }),
	}}
	h.run(participants.Config{AckWait: time.Second, Concurrency: 16}, svc)
	// The consumer existed already: wait for Run to update it.
	natstest.Eventually(t, within, func() bool {
		cons, err := h.env.JS.Consumer(h.ctx, streams.HistoryStream, streams.ParticipantConsumerPrefix+"unit")
		if err != nil {
			return false
		}
		info, err := cons.Info(h.ctx)
		if err != nil {
			return false
		}
		return info.Config.MaxDeliver == streams.DefaultParticipantMaxDeliver
	}, "consumer not upgraded to MaxDeliver %d", streams.DefaultParticipantMaxDeliver)
}
