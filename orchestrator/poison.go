package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// MaxDeliver bounds how often JetStream delivers one message on each
// consumer of an orchestrator. Every delivery counts: a nak (a failed
// decision, start or record, retried on the schedule of retryDelay), an
// AckWait that ran out, a process that died with the message in hand. The
// last delivery is dead-lettered before it is handled, so a message that
// crashes or hangs its orchestrator cannot do so forever.
type MaxDeliver struct {
	// Decisions bounds the events that call for a decision
	// (jetflow-orchestrator). On the last delivery the event is
	// dead-lettered to dlq.wf and its workflow parked blocked with the
	// reason. Default streams.DefaultOrchestratorMaxDeliver (50).
	Decisions int
	// Intake bounds the deliveries of an order.created (jetflow-intake);
	// the last one goes to dlq.order.created. Default
	// streams.DefaultIntakeMaxDeliver (20).
	Intake int
	// Signals bounds the deliveries of a signal (jetflow-signals); the last
	// one goes to dlq.signal. Default streams.DefaultSignalsMaxDeliver (20).
	Signals int
}

// validate sets the defaults and refuses a bound that leaves no delivery
// to handle.
func (m *MaxDeliver) validate() error {
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"Decisions", &m.Decisions, streams.DefaultOrchestratorMaxDeliver},
		{"Intake", &m.Intake, streams.DefaultIntakeMaxDeliver},
		{"Signals", &m.Signals, streams.DefaultSignalsMaxDeliver},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 2 {
			return fmt.Errorf("orchestrator: MaxDeliver.%s %d: must be at least 2 (0 for the default, %d)", f.name, *f.v, f.def)
		}
	}
	return nil
}

// lastDeliveryTimeout bounds the writes of a last delivery (dead letter,
// park). They run even while the orchestrator stops: the server will not
// deliver the message again.
const lastDeliveryTimeout = 30 * time.Second

// lastDelivery takes m when it is on the last delivery its consumer makes
// (maxDeliver): it copies m to dlq.<origin> with streams.LastDeliveryReason
// before anything decodes or handles it, then calls then (when not nil)
// with the reason, then acks m. It reports whether m was its last delivery;
// the handler returns at once when it was.
func (o *Orchestrator) lastDelivery(ctx context.Context, m jetstream.Msg, origin string, maxDeliver int, then func(context.Context, jetstream.Msg, string)) bool {
	md, err := m.Metadata()
	if err != nil || md.NumDelivered < uint64(maxDeliver) {
		return false
	}
	reason := streams.LastDeliveryReason(md.NumDelivered)
	log := o.log.With("subject", m.Subject(), "stream", md.Stream, "seq", md.Sequence.Stream)
	log.Error("last delivery: dead-lettering it unhandled", "reason", reason)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lastDeliveryTimeout)
	defer cancel()
	// No nak can bring it back: the dead letter is retried here, the
	// delivery kept alive meanwhile.
	for attempt := 1; ; attempt++ {
		err = streams.DeadLetter(ctx, o.cfg.JS, origin, m, reason)
		if err == nil {
			break
		}
		if attempt == 5 || ctx.Err() != nil {
			log.Error("dead letter of a last delivery failed: the message stays in its stream, delivered no more", "err", err)
			return true
		}
		_ = m.InProgress()
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	o.observeRefused(origin, reason)
	if then != nil {
		then(ctx, m, reason)
	}
	if err := m.Ack(); err != nil {
		log.Warn("ack", "err", err)
	}
	return true
}

// parkUndeliverable parks the workflow of an event dead-lettered on its
// last delivery, so an operator sees why it stopped. The history is not
// replayed (that may be what crashed): the blocked event is fenced on the
// last message of the workflow's tree, read from the subject index. When
// parking fails the event is acked anyway: the dead letter holds it.
func (w *worker) parkUndeliverable(ctx context.Context, m jetstream.Msg, reason string) {
	id, _, ok := streams.ParseSubject(m.Subject())
	if !ok || streams.ValidHistoryID(id) != nil {
		return
	}
	w.cache.drop(id)
	seq := uint64(0)
	if md, err := m.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	reason = fmt.Sprintf("event %s #%d went to %s: %s", m.Subject(), seq, streams.DeadLetterSubject("wf"), reason)
	err := w.parkAtTail(ctx, id, reason)
	if err != nil {
		w.o.log.Error("park after a last delivery", "workflow_id", id, "err", err)
	}
}

// parkAtTail appends a blocked event with reason to a running workflow,
// fenced on the last message of its tree.
func (w *worker) parkAtTail(ctx context.Context, id, reason string) error {
	for range maxFenceRetries {
		sum, err := w.o.status(ctx, id)
		if err != nil || sum == nil || sum.Status.Terminal() {
			return err // nothing to park: never started, or finished
		}
		last, err := w.o.hist.Last(ctx, streams.Tree(id))
		if err != nil || last == nil {
			return err
		}
		st := &state{id: id, lastSeq: last.Seq, status: schema.StatusRunning}
		if b, ok := last.Value.(*schema.WorkflowBlocked); ok {
			st.status, st.blocked = schema.StatusBlocked, b.Reason
		}
		err = w.park(ctx, id, st, reason)
		if !errors.Is(err, streams.ErrFenced) {
			return err
		}
	}
	return fmt.Errorf("%w %d times in a row", streams.ErrFenced, maxFenceRetries)
}
