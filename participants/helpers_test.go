package participants_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

const within = 15 * time.Second

// harness is one embedded server with the jetflow topology.
type harness struct {
	t    *testing.T
	env  *natstest.Env
	hist *streams.History
	ctx  context.Context
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	env := natstest.RunJetStream(t)
	return &harness{t: t, env: env, hist: streams.NewHistory(env.NC, env.JS), ctx: natstest.Context(t)}
}

// run starts a participant service and returns a func that stops it and
// checks that Run returned nil. It is also stopped at the end of the test.
func (h *harness) run(cfg participants.Config, svc participants.Service) (stop func()) {
	h.t.Helper()
	if cfg.JS == nil {
		cfg.NC, cfg.JS = h.env.NC, h.env.JS
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- participants.Run(ctx, cfg, svc) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("Run(%s) returned %v, want nil", svc.Name, err)
			}
		case <-time.After(within):
			h.t.Errorf("Run(%s) did not return after cancel", svc.Name)
		}
	}
	h.t.Cleanup(stop)
	// Wait until the consumer exists, so commands published next are seen
	// even by a test that inspects the consumer.
	natstest.Eventually(h.t, within, func() bool {
		_, err := h.env.JS.Consumer(h.ctx, streams.HistoryStream, streams.ParticipantConsumerPrefix+svc.Name)
		return err == nil
	}, "consumer of %s created", svc.Name)
	return stop
}

func (h *harness) system(name string) *sim.System {
	h.t.Helper()
	sys, err := sim.Open(h.ctx, h.env.JS, name, streams.Topology{})
	if err != nil {
		h.t.Fatal(err)
	}
	return sys
}

// command builds command 1 of workflow id with a fast retry policy.
func command(t *testing.T, id, service, action string, in any) schema.Command {
	t.Helper()
	raw, err := schema.EncodeRaw(in)
	if err != nil {
		t.Fatal(err)
	}
	return schema.Command{
		WorkflowID:     id,
		ID:             1,
		Service:        service,
		Action:         action,
		Input:          raw,
		IdempotencyKey: id + ".1",
		ReplyTo:        streams.ResultSubject(id, 1, service, action),
		StartToClose:   5 * time.Second,
		Retry: schema.RetryPolicy{
			InitialInterval:    10 * time.Millisecond,
			BackoffCoefficient: 1,
			MaxAttempts:        5,
		},
	}
}

// send publishes c on its command subject with msgID and returns its
// stream sequence.
func (h *harness) send(c schema.Command, msgID string) uint64 {
	h.t.Helper()
	m, err := streams.NewMsg(streams.CommandSubject(c.WorkflowID, c.ID, c.Service, c.Action), &c)
	if err != nil {
		h.t.Fatal(err)
	}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	return h.publish(m)
}

func (h *harness) publish(m *nats.Msg) uint64 {
	h.t.Helper()
	ack, err := h.env.JS.PublishMsg(h.ctx, m)
	if err != nil {
		h.t.Fatalf("publish %s: %v", m.Subject, err)
	}
	return ack.Sequence
}

// results returns the results in the history of workflow id, those on a
// result subject.
func (h *harness) results(id string) []*schema.Result {
	h.t.Helper()
	evs, err := h.hist.Read(h.ctx, id, 0)
	if err != nil {
		h.t.Fatalf("read history %s: %v", id, err)
	}
	var out []*schema.Result
	for _, ev := range evs {
		if _, rest, _ := streams.ParseSubject(ev.Subject); !strings.HasPrefix(rest, "res.") {
			continue
		}
		if r, ok := ev.Value.(*schema.Result); ok {
			out = append(out, r)
		}
	}
	return out
}

// result waits for the first result of workflow id.
func (h *harness) result(id string) *schema.Result {
	h.t.Helper()
	var res []*schema.Result
	natstest.Eventually(h.t, within, func() bool {
		res = h.results(id)
		return len(res) > 0
	}, "a result for %s", id)
	return res[0]
}

func (h *harness) effects(system, orderID string) []sim.Effect {
	h.t.Helper()
	effs, err := sim.List(h.ctx, h.env.JS, system, orderID)
	if err != nil {
		h.t.Fatalf("list %s: %v", system, err)
	}
	return effs
}

// deadLetters returns every message of the dead-letter stream.
func (h *harness) deadLetters() []*jetstream.RawStreamMsg {
	h.t.Helper()
	s, err := h.env.JS.Stream(h.ctx, streams.DeadLetterStream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(h.ctx, seq)
		if err != nil {
			h.t.Fatalf("get dead letter %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// waitAcked waits until the service's consumer has acknowledged every
// message up to stream sequence seq.
func (h *harness) waitAcked(service string, seq uint64) {
	h.t.Helper()
	natstest.Eventually(h.t, within, func() bool {
		c, err := h.env.JS.Consumer(h.ctx, streams.HistoryStream, streams.ParticipantConsumerPrefix+service)
		if err != nil {
			return false
		}
		info, err := c.Info(h.ctx)
		return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0
	}, "consumer of %s acked up to %d", service, seq)
}

// counted wraps a handler and counts its calls.
func counted(hd participants.Handler, n *atomic.Int32) participants.Handler {
	return participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
		n.Add(1)
		return hd.Handle(ctx, cmd)
	})
}

func decode[T any](t *testing.T, r schema.Raw) T {
	t.Helper()
	var v T
	if err := schema.DecodeRaw(r, &v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	return v
}
