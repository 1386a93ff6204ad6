package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/tracing"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// LateSignalRoute starts workflow Start when signal Signal arrives for a
// finished workflow of type WorkflowType. A payment settlement that arrives
// after the order was compensated, for example, must still be refunded.
type LateSignalRoute struct {
	WorkflowType string
	Signal       string
	Start        string
}

// LateSignal is the input of a workflow started by a LateSignalRoute.
type LateSignal struct {
	WorkflowID   string        `msgpack:"workflow_id" json:"workflow_id"`
	WorkflowType string        `msgpack:"workflow_type" json:"workflow_type"`
	Status       schema.Status `msgpack:"status" json:"status"`
	Signal       string        `msgpack:"signal" json:"signal"`
	Payload      schema.Raw    `msgpack:"payload,omitempty" json:"payload,omitempty"`
}

// Decode decodes the late signal's payload into v.
func (l LateSignal) Decode(v any) error { return schema.DecodeRaw(l.Payload, v) }

// consume runs fn for each message of a durable consumer, at most n at once,
// until the returned stop is called.
func (o *Orchestrator) consume(ctx context.Context, stream string, cfg jetstream.ConsumerConfig, n int, fn func(context.Context, jetstream.Msg)) (stop func(), err error) {
	cons, err := o.cfg.JS.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: consumer %s: %w", cfg.Durable, err)
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(ctx, m)
		}()
	}, jetstream.PullMaxMessages(n), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		o.log.Debug("consume", "consumer", cfg.Durable, "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("orchestrator: consume %s: %w", cfg.Durable, err)
	}
	return func() { cc.Stop(); wg.Wait() }, nil
}

// runSignals routes the signals of the signals stream. Signals are routed
// per workflow, one at a time each, by routerConcurrency loops that take
// whole workflows from a scheduler, as decisions are taken: a flood of
// signals to one workflow holds one loop and is routed at the pace of one,
// while the signals of every other workflow go on beside it. (Routed 64 at
// a time in arrival order, a flood of 10,000 took every loop and the
// machine's CPU for seconds, and other workflows' signals queued behind
// it.)
func (o *Orchestrator) runSignals(ctx context.Context) (func(), error) {
	cfg := streams.SignalsConsumerConfig(o.cfg.AckWait, o.cfg.MaxDeliver.Signals)
	cons, err := o.cfg.JS.CreateOrUpdateConsumer(ctx, streams.SignalsStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: consumer %s: %w", cfg.Durable, err)
	}
	if err := streams.SignalsRollupExposed(ctx, o.cfg.JS); err != nil {
		o.log.Warn("signals stream open to roll-ups", "err", err)
	}
	sched := newScheduler()
	var wg sync.WaitGroup
	for range routerConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				id, msgs, ok := sched.take()
				if !ok {
					return
				}
				o.routeBatch(ctx, id, msgs, &signalTurn{cons: cons, sched: sched})
				sched.done(id)
			}
		}()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		// A subject that names no workflow is keyed by what parsing gave
		// and refused by the loop that takes it.
		_, id, _ := streams.ParseSignalSubject(m.Subject())
		sched.put(id, m)
	}, jetstream.PullMaxMessages(routerConcurrency), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		o.log.Debug("consume", "consumer", cfg.Durable, "err", err)
	}))
	if err != nil {
		sched.close()
		wg.Wait()
		return nil, fmt.Errorf("orchestrator: consume %s: %w", cfg.Durable, err)
	}
	return func() { cc.Stop(); sched.close(); wg.Wait() }, nil
}

// routeBatch routes the signals of workflow id in stream order. The ones
// still waiting, in the batch and queued behind it (touch), are kept alive
// (InProgress) every third of AckWait, so a long batch is not redelivered
// while it is being routed. A batch whose signal waits for an earlier one
// pending in this process is handed back whole from that signal on.
func (o *Orchestrator) routeBatch(ctx context.Context, id string, msgs []jetstream.Msg, turn *signalTurn) {
	var memo capMemo
	sortBySeq(msgs)
	touched := time.Now()
	for i, m := range msgs {
		if ctx.Err() != nil {
			return // left unacked: redelivered to whoever routes next
		}
		if time.Since(touched) > o.cfg.AckWait/3 {
			for _, w := range msgs[i:] {
				_ = w.InProgress()
			}
			turn.sched.touch(id)
			touched = time.Now()
		}
		spy := &ackSpy{Msg: m}
		if o.signal(ctx, spy, &memo, turn) == turnHandBack {
			turn.sched.putBack(id, msgs[i:])
			return
		}
		if spy.acked {
			turn.settled = streamSeq(m)
		}
	}
}

// settle acks m after a dead letter with reason is stored.
func (o *Orchestrator) refuse(ctx context.Context, m jetstream.Msg, origin, reason string) {
	o.log.Warn("dead letter", "subject", m.Subject(), "reason", streams.Clip(reason, 1024))
	if err := streams.DeadLetter(ctx, o.cfg.JS, origin, m, reason); err != nil {
		o.log.Error("dead letter failed, will retry", "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	o.observeRefused(origin, reason)
	_ = m.Ack()
}

// signal records one signal.<name>.<id> message in the workflow's history,
// once its rule and the workflow's cap on waiting signals admit it. memo
// carries a cap refusal to the next signal of the same batch.
// It returns turnHandBack, with m neither settled nor nak'ed, when an
// earlier signal of the workflow waits in this process.
func (o *Orchestrator) signal(ctx context.Context, m jetstream.Msg, memo *capMemo, turn *signalTurn) turnVerdict {
	ctx, end := traceSignal(ctx, m)
	defer end()
	if o.lastDelivery(ctx, m, "signal", o.cfg.MaxDeliver.Signals, nil) {
		return turnGo
	}
	return o.routeSignal(ctx, m, memo, turn)
}

// routeSignal is signal once m's last delivery is ruled out.
func (o *Orchestrator) routeSignal(ctx context.Context, m jetstream.Msg, memo *capMemo, turn *signalTurn) turnVerdict {
	name, id, ok := streams.ParseSignalSubject(m.Subject())
	if !ok || streams.ValidID(id) != nil {
		o.refuse(ctx, m, "signal", "signal subject must be signal.<name>.<workflow id>")
		return turnGo
	}
	if reason := o.signalTooLarge(m); reason != "" {
		o.refuse(ctx, m, "signal", reason)
		return turnGo
	}
	if r := m.Headers().Get(jetstream.MsgRollup); r != "" {
		// The server has already acted on it: a signals stream made by
		// an earlier version allows roll-ups (it held message schedules;
		// SignalsRollupExposed), so this publish removed the earlier
		// signals of its subject ("sub") or of the whole stream ("all")
		// before they were recorded. It is refused, and said loudly:
		// nothing else tells of the signals it removed. A stream made
		// today refuses the publish itself.
		removed := m.Subject()
		if r == jetstream.MsgRollupAll {
			removed = "every subject of " + streams.SignalsStream
		}
		reason := "signal carries Nats-Rollup " + r + ": the server removed the signals stored before it on " + removed + "; no signal may roll up the stream"
		o.log.Error("a signal rolled up the signals stream: signals not yet recorded may be lost", "subject", m.Subject(), "rollup", r)
		o.refuse(ctx, m, "signal", reason)
		return turnGo
	}
	payload, err := signalPayload(m.Data(), m.Headers())
	if err != nil {
		o.refuse(ctx, m, "signal", "signal "+name+": "+err.Error())
		return turnGo
	}
	if err := streams.CheckScheduled(name, id, m.Headers().Get(streams.HeaderScheduler)); err != nil {
		o.refuse(ctx, m, "signal", err.Error())
		return turnGo
	}
	md, err := m.Metadata()
	if err != nil {
		_ = m.NakWithDelay(time.Second)
		return turnGo
	}
	seq := md.Sequence.Stream
	if turn != nil {
		switch o.waitTurn(ctx, m, turn, id, seq) {
		case turnHandBack:
			return turnHandBack
		case turnLater:
			_ = m.NakWithDelay(retryDelay(m))
			return turnLater
		}
	}
	if o.refusedAgain(ctx, m, memo, name, id, seq) {
		return turnGo
	}
	st, err := o.runStatus(ctx, id)
	switch {
	case err != nil:
		o.log.Warn("signal: read history, will retry", "workflow_id", id, "err", err)
		_ = m.NakWithDelay(retryDelay(m))
		return turnGo
	case st == nil:
		o.refuse(ctx, m, "signal", fmt.Sprintf("signal %s for unknown workflow %s", name, id))
		return turnGo
	case st.Status == schema.StatusContinuedAsNew:
		// The run ended and its next one is not started yet (an
		// orchestrator died in between; its redelivered wake starts it):
		// the signal is for the next run.
		_ = m.NakWithDelay(retryDelay(m))
		return turnGo
	case st.Status.Terminal():
		// A redelivery of a signal recorded before the workflow ended is
		// not a late one: the end took it (received it, or routed it as
		// never received). One recorded after the end is.
		_, before, err := o.signalVsEnd(ctx, st.ID, seq)
		if err != nil {
			o.log.Warn("signal: read history, will retry", "workflow_id", id, "err", err)
			_ = m.NakWithDelay(retryDelay(m))
			return turnGo
		}
		if before {
			_ = m.Ack()
			return turnGo
		}
		o.routeLate(ctx, m, st, name, payload, seq, "")
		return turnGo
	}
	adm, err := o.record(ctx, st, name, payload, seq, m.Subject())
	if err != nil {
		o.log.Warn("signal: record, will retry", "workflow_id", id, "err", err)
		_ = m.NakWithDelay(retryDelay(m))
		return turnGo
	}
	if adm.reason != "" {
		if adm.capLast != 0 {
			*memo = capMemo{id: id, wfType: st.Type, last: adm.capLast, reason: adm.reason}
		}
		o.refuse(ctx, m, "signal", adm.reason)
		return turnGo
	}
	// The workflow may have ended between the status read and the record:
	// then no replay will ever see the signal, and it is a late one.
	done, before, err := o.signalVsEnd(ctx, st.ID, seq)
	if err != nil {
		o.log.Warn("signal: read the end, will retry", "workflow_id", id, "err", err)
		_ = m.NakWithDelay(retryDelay(m))
		return turnGo
	}
	if done != nil && !before {
		if f, ok := done.Value.(*schema.WorkflowFinished); ok {
			st.Status = f.Status
		}
		if st.Status == schema.StatusContinuedAsNew {
			// Recorded after its run continued as new: routed again, to
			// the next run.
			_ = m.NakWithDelay(retryDelay(m))
			return turnGo
		}
		o.routeLate(ctx, m, st, name, payload, seq, ", recorded after its end")
		return turnGo
	}
	o.observeRecorded()
	_ = m.Ack()
	return turnGo
}

// capMemo remembers, while one loop routes one workflow's signals one
// after the other, that the workflow's cap refused a signal when its
// history ended at sequence last. As long as it still ends there, nothing
// was recorded, decided or ended for it since: the next signal without a
// rule is refused the same way after two reads (the history's last
// sequence, and whether this very signal was recorded before) instead of
// the status, the count and the cap's own reads. A flood the cap refuses
// costs the machine that much less while other workflows go on.
type capMemo struct {
	id, wfType string
	last       uint64
	reason     string
}

// refusedAgain refuses m as the memo's last signal was, when the memo still
// holds; it reports whether m is settled.
func (o *Orchestrator) refusedAgain(ctx context.Context, m jetstream.Msg, memo *capMemo, name, id string, seq uint64) bool {
	if memo.reason == "" || memo.id != id || o.rule(memo.wfType, name) != nil {
		return false
	}
	last, err := o.hist.Last(ctx, streams.Tree(id))
	if err != nil || last == nil || last.Seq != memo.last {
		*memo = capMemo{}
		return false
	}
	if _, end := last.Value.(*schema.WorkflowFinished); end {
		*memo = capMemo{} // ended: a signal now is a late one, for the full path
		return false
	}
	if own, err := o.hist.Last(ctx, streams.SignalEventSubject(id, seq)); err != nil || own != nil {
		return false // a redelivery of a recorded signal: the full path settles it
	}
	o.refuse(ctx, m, "signal", memo.reason)
	return true
}

// record admits the signal with sequence seq and records it in the
// history of the running workflow st, once however often it is
// redelivered. A signal the admission refuses is not recorded: the reason
// is returned. A fenced record that loses its fence (the history moved
// since the check) is checked again on the new history.
func (o *Orchestrator) record(ctx context.Context, st *Summary, name string, payload schema.Raw, seq uint64, source string) (admission, error) {
	for attempt := 0; ; attempt++ {
		adm, err := o.admit(ctx, st, name, payload, seq)
		if err != nil || adm.reason != "" || adm.recorded {
			return adm, err
		}
		retry, err := o.recordAdmitted(ctx, st, name, seq, source, &adm)
		if retry && attempt < maxFenceRetries {
			continue
		}
		if retry {
			return adm, fmt.Errorf("record signal: %w %d times in a row", streams.ErrFenced, maxFenceRetries)
		}
		return adm, err
	}
}

// recordAdmitted records an admitted signal; retry reports a lost fence.
func (o *Orchestrator) recordAdmitted(ctx context.Context, st *Summary, name string, seq uint64, source string, adm *admission) (retry bool, err error) {
	if adm.nearCap {
		defer o.waiting.lock(st.ID)()
		if err := o.capWaiting(ctx, st, seq, adm); err != nil || adm.reason != "" || adm.recorded {
			return false, err
		}
	}
	ev, err := streams.NewMsg(streams.SignalEventSubject(st.ID, seq), &schema.Signal{Name: name, Payload: adm.payload, Source: source + "#" + strconv.FormatUint(seq, 10)})
	if err != nil {
		adm.reason = err.Error()
		return false, nil
	}
	ev.Header.Set(jetstream.MsgIDHeader, signalMsgID(st.ID, seq))
	ev.Header.Set(schema.HeaderWorkflowID, st.ID)
	tracing.Inject(ctx, ev.Header) // the sender's trace, if it sent one
	if !adm.fenced {
		// Recorded once, however often the signal is redelivered.
		written, err := streams.PublishFirst(ctx, o.cfg.JS, ev)
		if err == nil && !written {
			err = o.takenBy(ctx, st.ID, seq, adm)
		}
		return false, err
	}
	// Fenced on what the check (or the count) read: the signal lands only
	// on the history it was admitted on.
	last, _, err := o.hist.Append(ctx, st.ID, adm.fence, []*nats.Msg{ev})
	switch {
	case err == nil:
		if adm.nearCap {
			o.waiting.put(st.ID, last, adm.waiting+1)
		}
		return false, nil
	case errors.Is(err, streams.ErrSubjectTaken):
		return false, o.takenBy(ctx, st.ID, seq, adm)
	case errors.Is(err, streams.ErrFenced):
		return true, nil
	}
	return false, err
}

// takenBy finds out what holds the subject a signal could not be recorded
// on: the signal itself (a redelivery: nothing to do), or a message
// published there by hand, and then the signal is refused with the reason
// rather than dropped.
func (o *Orchestrator) takenBy(ctx context.Context, id string, seq uint64, adm *admission) error {
	subject := streams.SignalEventSubject(id, seq)
	ev, err := o.hist.LastFromLeader(ctx, subject)
	if err != nil {
		return err
	}
	if ev == nil {
		return fmt.Errorf("signal refused on %s, which holds nothing: will retry", subject)
	}
	if ev.MsgID != signalMsgID(id, seq) {
		adm.reason = fmt.Sprintf("signal cannot be recorded: %s already holds a message that is not this signal", subject)
	}
	return nil
}

// routeLate handles a signal for a finished workflow: checked against its
// rule, it starts the workflow's late route, then goes to dead-letter.
func (o *Orchestrator) routeLate(ctx context.Context, m jetstream.Msg, st *Summary, name string, payload schema.Raw, seq uint64, how string) {
	adm, err := o.admit(ctx, st, name, payload, seq)
	if err != nil {
		o.log.Warn("late signal: read history, will retry", "workflow_id", st.ID, "err", err)
		_ = m.NakWithDelay(retryDelay(m))
		return
	}
	if adm.reason != "" {
		o.refuse(ctx, m, "signal", fmt.Sprintf("signal %s for finished workflow %s (%s)%s: %s", name, st.ID, st.Status, how, adm.reason))
		return
	}
	routed, started, err := o.late(ctx, st, name, adm.payload, adm.key)
	if err != nil {
		o.log.Warn("late signal: start, will retry", "workflow_id", st.ID, "err", err)
		_ = m.NakWithDelay(retryDelay(m))
		return
	}
	if routed != "" && !started && o.rule(st.Type, name) != nil {
		o.refuse(ctx, m, "signal", fmt.Sprintf("signal %s for finished workflow %s (%s)%s: already routed late to %s", name, st.ID, st.Status, how, routed))
		return
	}
	o.refuse(ctx, m, "signal", fmt.Sprintf("signal %s for finished workflow %s (%s)%s", name, st.ID, st.Status, how))
}

// signalVsEnd returns the end event of id (nil while it runs) and whether
// the signal with sequence seq in the signals stream is in the history
// before it: then the end took the signal (received it, or routed it as
// never received). Both are read from the stream's leader: a stale replica
// must not turn a handled signal into a late one, or a late one into a
// handled one.
func (o *Orchestrator) signalVsEnd(ctx context.Context, id string, seq uint64) (done *streams.Event, before bool, err error) {
	done, err = o.hist.LastFromLeader(ctx, streams.DoneFilterOf(id))
	if err != nil || done == nil {
		return nil, false, err
	}
	ev, err := o.hist.LastFromLeader(ctx, streams.SignalEventSubject(id, seq))
	if err != nil {
		return nil, false, err
	}
	return done, ev != nil && ev.Seq < done.Seq, nil
}

// routeUnreceived starts the late-signal routes of the signals a finishing
// workflow never received. Their payloads are the recorded ones (checked
// when they were recorded) and their late workflows' IDs the ones a late
// signal after the end would take, so each fact starts one workflow.
func (o *Orchestrator) routeUnreceived(ctx context.Context, id, wfType string, status schema.Status, sigs []workflow.UnreceivedSignal) error {
	sum := &Summary{ID: id, Type: wfType, Status: status}
	for _, u := range sigs {
		seq := u.Seq
		if i := strings.LastIndexByte(u.Signal.Source, '#'); i >= 0 {
			if n, err := strconv.ParseUint(u.Signal.Source[i+1:], 10, 64); err == nil {
				seq = n // the signal's sequence, as the router names it
			}
		}
		key := lateKey(o.rule(wfType, u.Signal.Name), u.Signal.Name, u.Signal.Payload, seq)
		if _, _, err := o.late(ctx, sum, u.Signal.Name, u.Signal.Payload, key); err != nil {
			return fmt.Errorf("route signal never received: %w", err)
		}
	}
	return nil
}

// status looks up a workflow's type and whether it finished, from the
// stream's subject index (no history read); nil when it was never started.
func (o *Orchestrator) status(ctx context.Context, id string) (*Summary, error) {
	start, err := o.hist.Last(ctx, streams.StartSubject(id))
	if err != nil || start == nil {
		return nil, err
	}
	sum := &Summary{ID: id, Status: schema.StatusRunning}
	if st, ok := start.Value.(*schema.WorkflowStarted); ok {
		sum.Type = st.Type
	}
	done, err := o.hist.Last(ctx, streams.DoneFilterOf(id))
	if err != nil {
		return nil, err
	}
	if done != nil {
		if f, ok := done.Value.(*schema.WorkflowFinished); ok {
			sum.Status = f.Status
		}
	}
	return sum, nil
}

// late starts the workflow routed for a signal to a finished workflow,
// with the ID derived from the workflow and key in the engine's namespace.
// It returns that ID ("" when no route matches) and whether this call
// started it.
func (o *Orchestrator) late(ctx context.Context, d *Summary, name string, payload schema.Raw, key string) (id string, started bool, err error) {
	for _, r := range o.cfg.LateSignals {
		if r.WorkflowType != d.Type || r.Signal != name {
			continue
		}
		id = lateID(d.ID, key)
		in := LateSignal{WorkflowID: d.ID, WorkflowType: d.Type, Status: d.Status, Signal: name, Payload: payload}
		if started, err = start(ctx, o.cfg.JS, r.Start, id, in, "late "+name+" for "+d.ID); err != nil {
			return id, false, err
		}
		o.log.Info("late signal starts a workflow", "workflow_id", d.ID, "signal", name, "started", id, "type", r.Start, "new", started)
	}
	return id, started, nil
}

// signalPayload converts a signal body to msgpack: JSON (as `nats pub`
// sends it) unless the Content-Type says msgpack; an empty body is none.
//
// A msgpack payload is checked by ToJSON, whose bounds (schema.CheckMsgpack)
// refuse declared lengths the body cannot hold before anything is
// allocated. A JSON payload needs no such check: encoding/json allocates in
// proportion to the body, which the stream's message size limit bounds.
func signalPayload(data []byte, h nats.Header) (schema.Raw, error) {
	if strings.HasPrefix(h.Get(schema.HeaderContentType), schema.ContentTypeMsgpack) {
		// Not trimmed: 0x20 and 0x09 are msgpack integers.
		if len(data) == 0 {
			return nil, nil
		}
		if _, err := schema.ToJSON(data); err != nil {
			return nil, fmt.Errorf("invalid msgpack payload: %w", err)
		}
		return schema.Raw(data), nil
	}
	body := bytes.TrimSpace(data)
	if len(body) == 0 {
		return nil, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON payload: %w", err)
	}
	v, err := jsonNumbers(v)
	if err != nil {
		return nil, fmt.Errorf("invalid JSON payload: %w", err)
	}
	return schema.EncodeRaw(v)
}

// jsonNumbers turns json.Number into int64 or float64 so the msgpack
// encoding has real numbers. A number no float64 holds (1e700) is refused:
// it would be recorded as an infinity, which no JSON renders.
func jsonNumbers(v any) (any, error) {
	var err error
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if t[k], err = jsonNumbers(e); err != nil {
				return nil, err
			}
		}
	case []any:
		for i, e := range t {
			if t[i], err = jsonNumbers(e); err != nil {
				return nil, err
			}
		}
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		f, err := t.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s is out of the range of a 64-bit float", streams.Clip(t.String(), 40))
		}
		return f, nil
	}
	return v, nil
}
