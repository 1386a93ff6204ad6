package participants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// worker holds what every message handler of one Run shares.
type worker struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
	// attempts is the bucket of failed attempts; nil when it does not exist.
	attempts jetstream.KeyValue
	svc      Service
	log      *slog.Logger
	ackWait  time.Duration
	// maxDeliver is the consumer's MaxDeliver: the delivery that reaches
	// it is dead-lettered unhandled (lastDelivery).
	maxDeliver int
	// runCtx is Run's context: handlers are cancelled with it.
	runCtx context.Context
	// metrics receives the step metrics; nil: none.
	metrics *metrics.Metrics
	// running maps the step cancellation subject of each command whose
	// handler runs here to the handler's cancel (watchCancels).
	running sync.Map
}

var idemKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*$`)

// job is one delivery of one message.
type job struct {
	*worker
	msg     jetstream.Msg
	seq     uint64
	attempt int
	log     *slog.Logger
	// scheduled is when the command was recorded (its stream timestamp):
	// where its schedule-to-close timeout counts from.
	scheduled time.Time
	// cancelledBeforeRun is set when the step was cancelled before its
	// handler ran: it did not run.
	cancelledBeforeRun bool

	// hctx is the context of the running handler, nil when none runs.
	mu   sync.Mutex
	hctx context.Context

	// trace holds the trace headers of the step's span: the result
	// carries them.
	trace nats.Header
}

// setHandlerCtx records the context of the running handler (nil: none).
func (j *job) setHandlerCtx(ctx context.Context) {
	j.mu.Lock()
	j.hctx = ctx
	j.mu.Unlock()
}

// hung reports whether a handler is still running past its deadline. Such a
// delivery is not kept alive: after AckWait it is redelivered and taken over.
func (j *job) hung() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.hctx != nil && j.hctx.Err() != nil
}

// handle processes one delivery. It always ends in exactly one of: ack,
// nak (with a delay), or nothing at all (ErrCrash).
func (w *worker) handle(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		w.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	j := &job{worker: w, msg: msg, seq: md.Sequence.Stream, attempt: int(md.NumDelivered), scheduled: md.Timestamp}
	j.log = w.log.With("subject", msg.Subject(), "seq", j.seq, "attempt", j.attempt)

	stop := j.heartbeat()
	defer stop()
	if j.lastDelivery() {
		return
	}

	sc, reason, answer := j.command()
	switch {
	case reason != "" && answer:
		j.deadLetter(reason, sc.ReplyTo, j.failureResult(sc, KindInvalidCommand, reason))
		return
	case reason != "":
		j.deadLetter(reason, "", nil)
		return
	}
	handler := w.svc.Handlers[sc.Action]
	if handler == nil {
		reason := fmt.Sprintf("service %s has no handler for action %q", w.svc.Name, sc.Action)
		j.deadLetter(reason, sc.ReplyTo, j.failureResult(sc, KindUnknownCommand, reason))
		return
	}
	j.process(sc, handler)
}

// command decodes the delivered command and checks that it belongs where it
// was delivered. A reason says why it cannot be processed; answer says
// whether a failure result may still be published to its ReplyTo (it may
// not when the body has nowhere to answer, or names another workflow than
// its subject: answering it would write into whichever workflow it names).
func (j *job) command() (sc *schema.Command, reason string, answer bool) {
	h := j.msg.Headers()
	sc, reason = decodeCommand(h.Get(schema.HeaderKind), h.Get(schema.HeaderSchema), j.msg.Data())
	if sc == nil {
		return nil, reason, false
	}
	j.log = j.log.With("workflow", sc.WorkflowID, "command", sc.ID, "action", sc.Action)
	if reason := checkReplyTo(sc); reason != "" {
		return sc, reason, false
	}
	if reason := j.checkRoute(sc); reason != "" {
		return sc, reason, false
	}
	if !idemKeyPattern.MatchString(sc.IdempotencyKey) {
		return sc, fmt.Sprintf("invalid idempotency key %q", sc.IdempotencyKey), true
	}
	return sc, "", false
}

// decodeCommand decodes a command body whose kind and schema version
// headers are kind and version, or says why it cannot.
func decodeCommand(kind, version string, data []byte) (*schema.Command, string) {
	if kind != string(schema.KindCommand) {
		return nil, fmt.Sprintf("message kind %q, want %q", kind, schema.KindCommand)
	}
	v, err := schema.Decode(kind, version, data)
	if err != nil {
		return nil, err.Error()
	}
	sc, ok := v.(*schema.Command)
	if !ok {
		return nil, fmt.Sprintf("decoded %T, want a command", v)
	}
	return sc, ""
}

// checkReplyTo returns why a command's ReplyTo cannot take its result, or "".
func checkReplyTo(sc *schema.Command) string {
	id, rest, ok := streams.ParseSubject(sc.ReplyTo)
	if !ok || id != sc.WorkflowID || !strings.HasPrefix(rest, "res.") || strings.ContainsAny(sc.ReplyTo, "*> \t\r\n") {
		return fmt.Sprintf("reply_to %q is not a result subject of workflow %q", sc.ReplyTo, sc.WorkflowID)
	}
	return ""
}

// checkRoute returns why a decoded command does not belong on the subject
// it was delivered on, or "".
func (j *job) checkRoute(sc *schema.Command) string {
	if want := streams.CommandSubject(sc.WorkflowID, sc.ID, sc.Service, sc.Action); j.msg.Subject() != want || sc.Service != j.svc.Name {
		return fmt.Sprintf("command for %s.%s of workflow %q does not belong on subject %s", sc.Service, sc.Action, sc.WorkflowID, j.msg.Subject())
	}
	return ""
}

// failureResult is the final failure result of a command that never
// reached its handler.
func (j *job) failureResult(sc *schema.Command, kind, message string) *schema.Result {
	return &schema.Result{
		WorkflowID: sc.WorkflowID,
		CommandID:  sc.ID,
		Service:    sc.Service,
		Action:     sc.Action,
		Error:      &schema.Error{Kind: kind, Message: message},
		Attempts:   j.attempt,
	}
}

// heartbeat reports progress every AckWait/3 until the returned func is
// called, except while a handler overruns its StartToClose.
func (j *job) heartbeat() (stop func()) {
	done := make(chan struct{})
	log := j.log
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(j.ackWait/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if j.hung() {
					continue
				}
				if err := j.msg.InProgress(); err != nil {
					log.Debug("in-progress", "err", err)
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// finishCtx is the context of the writes that record and publish an
// outcome: they are completed even when Run is stopping.
func (j *job) finishCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(j.runCtx), finishTimeout)
}

func (j *job) ack() {
	if err := j.msg.Ack(); err != nil {
		j.log.Warn("ack", "err", err)
	}
}

func (j *job) nak(delay time.Duration) {
	if err := j.msg.NakWithDelay(delay); err != nil {
		j.log.Warn("nak", "err", err)
	}
}

// deadLetter copies the message to the dead-letter stream with reason and,
// when res is set, publishes res to replyTo as the command's final result,
// then acks.
// When a write fails the message is redelivered a little later; the
// Nats-Msg-Ids make the repeated writes no-ops.
func (j *job) deadLetter(reason, replyTo string, res *schema.Result) {
	ctx, cancel := j.finishCtx()
	defer cancel()
	j.log.Warn("dead-lettering command", "reason", reason)
	if err := j.storeDeadLetter(ctx, reason); err != nil {
		j.log.Error("publish dead letter", "err", err)
		j.nak(busyDelay)
		return
	}
	if res != nil {
		msgID := "res-" + j.svc.Name + "-dlq-" + strconv.FormatUint(j.seq, 10)
		if _, err := j.publishResult(ctx, replyTo, msgID, res); err != nil {
			j.log.Error("publish failure result", "err", err)
			j.nak(busyDelay)
			return
		}
	}
	j.ack()
}

// storeDeadLetter copies the message to dlq.cmd.<service> with reason and
// returns once JetStream has stored it; once per source message, however
// often it is called.
func (j *job) storeDeadLetter(ctx context.Context, reason string) error {
	// streams.DeadLetter cuts the copy to fit the max payload and keeps the
	// command's stream and sequence, so the whole original can be found.
	if err := streams.DeadLetter(ctx, j.js, "cmd."+j.svc.Name, j.msg, reason); err != nil {
		return err
	}
	j.metrics.DeadLetter("cmd."+j.svc.Name, reason)
	return nil
}

// publishResult publishes res to replyTo and waits for the stream's ack. A
// command is answered once: the publish expects no message on replyTo yet,
// so a second answer (another attempt of the same command finishing
// later) is refused by the server and counts as done. It reports whether
// this publish stored the result.
func (j *job) publishResult(ctx context.Context, replyTo, msgID string, res *schema.Result) (bool, error) {
	m, err := streams.NewMsg(replyTo, res)
	if err != nil {
		return false, err
	}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	for k, v := range j.trace {
		m.Header[k] = v
	}
	return streams.PublishFirst(ctx, j.js, m)
}

// answered reports whether the command's result subject, replyTo, holds a
// result: the history's write-once result is the command's idempotency
// record. One direct get of that subject.
func (j *job) answered(ctx context.Context, replyTo string) (bool, error) {
	reply, err := streams.LastBySubject(ctx, j.js.Conn(), streams.HistoryStreamFor(replyTo), replyTo)
	return reply != nil && reply.Header.Get("Nats-Subject") == replyTo, err
}

// process runs the handler of a valid command and settles the delivery.
func (j *job) process(sc *schema.Command, handler Handler) {
	key := j.svc.Name + "." + sc.IdempotencyKey
	msgID := "res-" + j.svc.Name + "-" + sc.IdempotencyKey

	ctx, cancel := j.finishCtx()
	done, err := j.answered(ctx, sc.ReplyTo)
	cancel()
	switch {
	case err != nil:
		j.log.Error("look the command's result up", "subject", sc.ReplyTo, "err", err)
		j.nak(busyDelay)
		return
	case done:
		// An earlier attempt's result is in the history: the handler does
		// not run again, and there is nothing left to publish.
		j.log.Info("duplicate command: its result is recorded")
		j.ack()
		return
	}
	hbKey := key + heartbeatSuffix
	var details schema.Raw
	if j.attempt > 1 {
		// Only an earlier attempt can have recorded details: the first
		// delivery does not look.
		ctx, cancel = j.finishCtx()
		details, err = j.heartbeatDetails(ctx, hbKey)
		cancel()
		if err != nil {
			j.log.Error("read heartbeat details", "key", hbKey, "err", err)
			j.nak(busyDelay)
			return
		}
	}

	stc := sc.StartToClose
	if stc <= 0 {
		stc = defaultStartToClose
	}
	var deadline time.Time // the schedule-to-close deadline, if any
	if sc.ScheduleToClose > 0 {
		deadline = j.scheduled.Add(sc.ScheduleToClose)
		if !time.Now().Before(deadline) {
			j.log.Info("schedule-to-close timeout passed before the attempt", "timeout", sc.ScheduleToClose)
			msg := fmt.Sprintf("schedule-to-close timeout %v passed before attempt %d", sc.ScheduleToClose, j.attempt)
			if last := j.lastFailure(sc, key); last != "" {
				msg += "; " + last
			}
			// The attempts made: this delivery's is not one, so the count
			// is the handler's calls whichever way the deadline was met.
			res := j.failureResult(sc, KindTimeout, msg)
			res.Attempts = j.attempt - 1
			j.finish(sc, msgID, res)
			j.metrics.Step(sc.Service, sc.Action, metrics.StepFailed, 0, res.Attempts)
			return
		}
	}
	cmd := &Command{
		WorkflowID:     sc.WorkflowID,
		Service:        sc.Service,
		Action:         sc.Action,
		IdempotencyKey: sc.IdempotencyKey,
		CommandID:      sc.ID,
		Attempt:        j.attempt,
		Compensation:   sc.Compensation,
		Input:          sc.Input,
		StartToClose:   stc,
		Retry:          sc.Retry,
	}
	cmd.ScheduleToClose = sc.ScheduleToClose
	cmd.details = details
	cmd.HeartbeatTimeout = sc.HeartbeatTimeout
	tctx, hcancel := context.WithTimeout(j.runCtx, stc)
	if !deadline.IsZero() {
		var dcancel context.CancelFunc
		tctx, dcancel = context.WithDeadline(tctx, deadline)
		defer dcancel()
	}
	// One cause ends the handler early: the workflow cancelled the step,
	// or the handler went its heartbeat timeout without a heartbeat.
	hctx, stepCancel := context.WithCancelCause(tctx)
	hctx, span := j.startStep(hctx, sc)
	defer span.End()
	alive := func() {}
	if hbt := sc.HeartbeatTimeout; hbt > 0 {
		watchdog := time.AfterFunc(hbt, func() { stepCancel(errNoHeartbeat) })
		defer watchdog.Stop()
		alive = func() { watchdog.Reset(hbt) }
	}
	var heartbeated atomic.Bool
	cmd.heartbeat = func(ctx context.Context, raw schema.Raw) error {
		alive()
		if raw == nil {
			if err := j.msg.InProgress(); err != nil {
				j.log.Debug("in-progress", "err", err)
			}
			return nil
		}
		heartbeated.Store(true)
		return j.recordHeartbeat(ctx, hbKey, raw)
	}
	unwatch := j.watchCancel(sc, stepCancel)
	var out any
	var herr error
	began := time.Now()
	if j.cancelledBefore(sc) {
		j.cancelledBeforeRun = true
		stepCancel(errStepCancelled)
	} else {
		j.setHandlerCtx(hctx)
		out, herr = j.call(hctx, handler, cmd)
	}
	took := time.Since(began)
	cancelled := errors.Is(context.Cause(hctx), errStepCancelled)
	timedOut := !cancelled && errors.Is(tctx.Err(), context.DeadlineExceeded)
	missedHeartbeat := !cancelled && errors.Is(context.Cause(hctx), errNoHeartbeat)
	unwatch()
	j.setHandlerCtx(nil)
	stepCancel(nil)
	hcancel()
	if cancelled && (herr != nil || j.cancelledBeforeRun) {
		// The workflow stopped waiting: a handler that did not finish its
		// work is answered cancelled. One that succeeded keeps its result,
		// recorded (and ignored by the workflow): the effect happened.
		out, herr = nil, &failure{kind: KindCancelled, final: true, err: errStepCancelled}
	}
	// outcome is the step metric's outcome label; "" observes nothing
	// (a crash, a stop).
	outcome := ""
	defer func() { j.observeStep(sc, outcome, took, span) }()

	if errors.Is(herr, ErrCrash) {
		j.log.Warn("handler crashed: leaving the command for redelivery")
		return
	}
	if herr != nil && j.runCtx.Err() != nil {
		// Stopping: the failure is ours, not the command's.
		if err := j.msg.Nak(); err != nil {
			j.log.Debug("nak on stop", "err", err)
		}
		return
	}

	res := &schema.Result{
		WorkflowID: sc.WorkflowID,
		CommandID:  sc.ID,
		Service:    sc.Service,
		Action:     sc.Action,
		Attempts:   j.attempt,
	}
	if herr == nil {
		failpoint.Hit("participant.after-effect")
		output, err := schema.EncodeRaw(out)
		switch room := j.resultRoom(); {
		case err != nil:
			res.Error = &schema.Error{Kind: KindInvalidOutput, Message: fmt.Sprintf("encode output %T: %v", out, err)}
		case len(output) > room:
			// Neither the idempotency record nor the result event could be
			// stored: retrying would only run the handler again.
			res.Error = &schema.Error{Kind: KindInvalidOutput, Message: fmt.Sprintf("output %T is %d bytes, a result holds at most %d (the server's max payload less the record's and headers' room)", out, len(output), room)}
		default:
			res.Output = output
		}
	} else {
		c := classify(herr, timedOut || missedHeartbeat)
		msg := herr.Error()
		switch {
		case c.kind == KindTimeout && timedOut:
			msg = fmt.Sprintf("attempt exceeded start-to-close timeout %v: %v", stc, herr)
		case c.kind == KindTimeout && missedHeartbeat:
			msg = fmt.Sprintf("attempt sent no heartbeat within %v: %v", sc.HeartbeatTimeout, herr)
		}
		final := c.final || sc.Retry.IsNonRetryable(c.kind)
		if !final && sc.Retry.Exhausted(j.attempt) {
			final = true
			msg = fmt.Sprintf("after %d %s: %s", j.attempt, plural(j.attempt, "attempt", "attempts"), msg)
		}
		delay := c.after
		if delay <= 0 {
			delay = sc.Retry.Delay(j.attempt + 1)
		}
		if !final && !deadline.IsZero() && !time.Now().Add(delay).Before(deadline) {
			// The next attempt would start after the step's deadline.
			final, c.kind = true, KindTimeout
			msg = fmt.Sprintf("schedule-to-close timeout %v exceeded after %d %s: %s",
				sc.ScheduleToClose, j.attempt, plural(j.attempt, "attempt", "attempts"), herr)
		}
		if !final {
			j.log.Info("attempt failed, retrying", "kind", c.kind, "err", herr, "delay", delay)
			outcome = metrics.StepRetried
			j.noteAttempt(sc, key, c.kind, msg, delay)
			j.nak(delay)
			return
		}
		j.log.Info("command failed", "kind", c.kind, "err", herr)
		res.Error = &schema.Error{Kind: c.kind, Message: streams.Clip(msg, maxErrorMessage)}
	}
	outcome = metrics.StepOK
	if res.Error != nil {
		outcome = metrics.StepFailed
	}
	if j.finish(sc, msgID, res) && (len(details) > 0 || heartbeated.Load()) {
		j.forgetHeartbeat(hbKey)
	}
}

// errNoHeartbeat cancels a handler that went its HeartbeatTimeout without
// a heartbeat.
var errNoHeartbeat = errors.New("no heartbeat within the heartbeat timeout")

// heartbeatSuffix ends the idempotency-bucket key of a command's heartbeat
// details: <service>.<idempotency key>.heartbeat. A workflow ID is one
// token, so no command's own record key ends so.
const heartbeatSuffix = ".heartbeat"

// heartbeatDetails reads the heartbeat details recorded for a command, or
// nil when there are none.
func (j *job) heartbeatDetails(ctx context.Context, hbKey string) (schema.Raw, error) {
	entry, err := j.kv.Get(ctx, hbKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return schema.Raw(entry.Value()), nil
}

// recordHeartbeat stores the details of a Heartbeat call and keeps the
// delivery alive.
func (j *job) recordHeartbeat(ctx context.Context, hbKey string, raw schema.Raw) error {
	if room := j.resultRoom(); len(raw) > room {
		return fmt.Errorf("participants: heartbeat details are %d bytes, at most %d fit", len(raw), room)
	}
	if _, err := j.kv.Put(ctx, hbKey, raw); err != nil {
		return fmt.Errorf("participants: record heartbeat details: %w", err)
	}
	if err := j.msg.InProgress(); err != nil {
		j.log.Debug("in-progress", "err", err)
	}
	return nil
}

// forgetHeartbeat deletes the heartbeat details of a command that has its
// final result. A failure only leaves them behind.
func (j *job) forgetHeartbeat(hbKey string) {
	ctx, cancel := j.finishCtx()
	defer cancel()
	if err := j.kv.Purge(ctx, hbKey); err != nil {
		j.log.Debug("purge heartbeat details", "key", hbKey, "err", err)
	}
}

// errStepCancelled is the cause of a handler context cancelled because
// the workflow cancelled the step.
var errStepCancelled = errors.New("the workflow cancelled this step")

// watchCancels subscribes, once per Run, to every step cancellation:
// the cancellation of a step whose handler runs here cancels it with
// errStepCancelled. One subscription for the process, not one made and
// dropped per command. It returns the function that stops watching.
func (w *worker) watchCancels() (stop func(), err error) {
	// As published: a partitioned history's cancellations are heard on
	// wfp.<p>.…, the subject they are stored under is wf.….
	sub, err := w.js.Conn().Subscribe(streams.LiveFilter(streams.StepCancelFilter), func(m *nats.Msg) {
		if cancel, ok := w.running.Load(streams.StoredSubject(m.Subject)); ok {
			w.log.Info("step cancelled by its workflow: cancelling the handler", "subject", m.Subject)
			cancel.(context.CancelCauseFunc)(errStepCancelled)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("participants: watch step cancellations: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// watchCancel registers the running handler of sc with the process's
// watch (watchCancels). It returns the function that unregisters it.
func (j *job) watchCancel(sc *schema.Command, cancel context.CancelCauseFunc) (stop func()) {
	subject := streams.StepCancelSubject(sc.WorkflowID, sc.ID)
	j.running.Store(subject, cancel)
	return func() { j.running.Delete(subject) }
}

// cancelledBefore reports whether the workflow cancelled the step before
// this attempt, with one direct get of the cancellation's subject. Every
// attempt looks, the first too: a command may wait in the stream while
// its workflow is cancelled, and running it then would make an effect
// (a charge) that nothing compensates. The handler is registered with the
// process's watch (watchCancel) before this read, so a cancellation is
// seen by one or the other. A failed lookup counts as not cancelled.
func (j *job) cancelledBefore(sc *schema.Command) bool {
	subject := streams.StepCancelSubject(sc.WorkflowID, sc.ID)
	ctx, cancel := j.finishCtx()
	defer cancel()
	reply, err := streams.LastBySubject(ctx, j.js.Conn(), streams.HistoryStreamFor(subject), subject)
	if err != nil {
		j.log.Debug("look the step's cancellation up", "err", err)
		return false
	}
	return reply != nil && reply.Header.Get("Nats-Subject") == subject
}

// maxAttemptError bounds the error of a failed attempt's note.
const maxAttemptError = 1 << 10

// noteAttempt records this failed attempt of sc in the attempts bucket
// (key = the idempotency key), for `jetflow show`: its number, error and
// when the next one is due. Only a failed attempt that will be retried
// pays for it, one put; a note that cannot be written is logged and the
// retry goes on.
func (j *job) noteAttempt(sc *schema.Command, key, kind, msg string, delay time.Duration) {
	if j.attempts == nil {
		return
	}
	now := time.Now().UTC()
	b, err := json.Marshal(schema.FailedAttempt{
		WorkflowID: sc.WorkflowID, CommandID: sc.ID, Attempt: j.attempt,
		Kind: kind, Error: streams.Clip(msg, maxAttemptError), At: now, NextRetry: now.Add(delay),
	})
	if err != nil {
		return
	}
	ctx, cancel := j.finishCtx()
	defer cancel()
	if _, err := j.attempts.Put(ctx, key, b); err != nil {
		j.log.Warn("note failed attempt", "key", key, "err", err)
	}
}

// lastFailure quotes the failed attempt of sc noted under key ("attempt 19
// failed: gateway down"), "" when there is none: a step whose deadline
// passed while its retry waited (the retry came back later than its delay,
// behind other work) still says why it was being retried. Read only then.
func (j *job) lastFailure(sc *schema.Command, key string) string {
	if j.attempts == nil || j.attempt <= 1 {
		return ""
	}
	ctx, cancel := j.finishCtx()
	defer cancel()
	e, err := j.attempts.Get(ctx, key)
	if err != nil {
		return ""
	}
	var a schema.FailedAttempt
	if json.Unmarshal(e.Value(), &a) != nil || a.WorkflowID != sc.WorkflowID || a.CommandID != sc.ID {
		return ""
	}
	return fmt.Sprintf("attempt %d failed: %s", a.Attempt, a.Error)
}

// maxErrorMessage bounds the message of a failure result: a handler's
// error may quote its whole input.
const maxErrorMessage = 8 << 10

// resultOverhead is the room a result needs besides its output: the
// result event's other fields, subject and headers (the fence headers
// included).
const resultOverhead = 16 << 10

// resultRoom is the largest output a result can carry on this connection.
func (j *job) resultRoom() int {
	return streams.MaxPayload(j.js.Conn()) - resultOverhead - maxErrorMessage
}

// call runs the handler, turning a panic into a retryable error.
func (j *job) call(ctx context.Context, h Handler, cmd *Command) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			j.log.Error("handler panicked", "panic", r, "stack", string(debug.Stack()))
			out, err = nil, &failure{kind: KindPanic, err: fmt.Errorf("handler panicked: %v", r)}
		}
	}()
	return h.Handle(ctx, cmd)
}

// finish publishes res as the command's result, unless another attempt
// published one first, and acks the command. It reports whether the
// command is settled.
func (j *job) finish(sc *schema.Command, msgID string, res *schema.Result) bool {
	ctx, cancel := j.finishCtx()
	defer cancel()
	if err := j.settle(ctx, sc, msgID, res); err != nil {
		j.log.Error("settle", "err", err)
		j.nak(busyDelay)
		return false
	}
	j.ack()
	return true
}

// settle publishes res on the command's result subject, which takes one
// message: the first result stored is the command's, whichever attempt
// wrote it. When the publish fails nothing is recorded, and the next
// attempt runs the handler again (the external system's idempotency key
// makes that a repeat of the same effect, not a second one).
func (j *job) settle(ctx context.Context, sc *schema.Command, msgID string, res *schema.Result) error {
	stored, err := j.publishResult(ctx, sc.ReplyTo, msgID, res)
	if err != nil {
		return fmt.Errorf("publish result: %w", err)
	}
	if !stored {
		j.log.Info("the command's result was recorded first by another attempt", "subject", sc.ReplyTo)
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
