package workflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

// StepError is the error Execute returns when a step failed for good: the
// participant gave up after its retry policy, or failed non-retryably.
type StepError struct {
	// Activity is "service.action".
	Activity string
	// Kind classifies the failure ("declined", "out_of_stock", "timeout", ...).
	Kind    string
	Message string
	// Attempts is how many attempts the participant made.
	Attempts int
	// Key is the step's idempotency key ("<history ID>.<command ID>"), the
	// one the participant applied its effect under. A step that failed by
	// timeout may have had its effect all the same: a compensation that
	// names the step by its key lets the participant settle that outcome
	// (see UnknownOutcome).
	Key string
}

// UnknownOutcome reports whether err is a step's failure that leaves its
// effect unknown, and returns the step's idempotency key for a
// compensation that settles the outcome with the participant. The outcome
// is unknown when the participant's library had to name the failure
// because the handler could not: the step gave up by timeout (the last
// attempt ran out of StartToClose, ScheduleToClose or its heartbeat), on
// an error of no kind (a write whose acknowledgement was lost), a panic,
// on every delivery crashing (undeliverable), or with an output it could
// not send back (invalid_output: done, for sure). A failure of a kind the
// handler named ("declined", "out_of_stock", "gateway_error", ...) is the
// system's own answer, a known outcome: nothing was done.
//
// A step cancelled while its command was out (its scope or the workflow
// was cancelled) has an unknown outcome too: the participant may have done
// it before it heard of the cancellation.
func UnknownOutcome(err error) (key string, ok bool) {
	var se *StepError
	if errors.As(err, &se) && se.Key != "" && slices.Contains(unknownKinds, se.Kind) {
		return se.Key, true
	}
	var ce *CanceledError
	if errors.As(err, &ce) && ce.stepKey != "" {
		return ce.stepKey, true
	}
	return "", false
}

// KindTimeout is the kind of a step failure by timeout.
const KindTimeout = "timeout"

// unknownKinds are the failure kinds the participants' library gives when
// the handler did not say what happened (see participants.KindError and
// the kinds beside it).
var unknownKinds = []string{KindTimeout, "error", "panic", "undeliverable", "invalid_output"}

// Error is "payment.refund failed (gateway_error) after 5 attempts: ...".
// A participant that gave up after its retry policy starts its message with
// the same count ("after 5 attempts: ..."); it is said once.
func (e *StepError) Error() string {
	after := fmt.Sprintf("after %d attempts", e.Attempts)
	if e.Attempts == 1 {
		after = "after 1 attempt"
	}
	return fmt.Sprintf("%s failed (%s) %s: %s", e.Activity, e.Kind, after, strings.TrimPrefix(e.Message, after+": "))
}

// IsKind reports whether err is (or wraps) a StepError of the given kind.
func IsKind(err error, kind string) bool {
	var se *StepError
	return errors.As(err, &se) && se.Kind == kind
}

// ManualError ends a workflow in the manual state: a person must look at it.
// Return it (or wrap it) from a workflow function; Saga.Compensate returns
// one when a compensation failed for good.
type ManualError struct {
	Reason string
	Cause  error
}

func (e *ManualError) Error() string {
	if e.Cause != nil {
		return "manual intervention needed: " + e.Reason + ": " + e.Cause.Error()
	}
	return "manual intervention needed: " + e.Reason
}

func (e *ManualError) Unwrap() error { return e.Cause }

// future is the untyped result of a step.
type future struct {
	ready    bool
	readyAt  int64
	activity string
	// key is a step's idempotency key (StepError.Key).
	key    string
	output schema.Raw
	err    error
	// local marks a future set by workflow code (NewFuture): its value is
	// val, kept in memory, never encoded.
	local bool
	val   any
}

func (f *future) resolveResult(res *schema.Result, tick int64) {
	f.ready, f.readyAt = true, tick
	if res.Error != nil {
		f.err = &StepError{Activity: f.activity, Kind: res.Error.Kind, Message: res.Error.Message, Attempts: res.Attempts, Key: f.key}
		return
	}
	f.output = res.Output
}

// Future is the pending result of a step started with ExecuteAsync.
type Future[T any] struct{ f *future }

// IsReady reports whether the result is in, without blocking.
func (f Future[T]) IsReady() bool { return f.f.ready }

func (f Future[T]) awaitable() *future { return f.f }

// Get waits for the result and decodes it into T. On a cancelled ctx it
// returns the cancellation (errors.Is ErrCanceled) unless the result is
// already in.
func (f Future[T]) Get(ctx Context) (T, error) {
	var out T
	if err := blockCtx(ctx, func() bool { return f.f.ready }); err != nil {
		return out, err
	}
	if f.f.err != nil {
		return out, f.f.err
	}
	if f.f.local {
		out, _ = f.f.val.(T)
		return out, nil
	}
	if err := schema.DecodeRaw(f.f.output, &out); err != nil {
		return out, fmt.Errorf("%s: decode result: %w", f.f.activity, err)
	}
	return out, nil
}

// Execute sends a command for act with input in and waits for its result.
// On replay, a step whose result is recorded returns it at once and is not
// sent again. A step that failed for good returns a *StepError; on a
// cancelled context nothing is sent and the cancellation is returned.
func Execute[T any](ctx Context, act Activity, in any) (T, error) {
	return ExecuteAsync[T](ctx, act, in).Get(ctx)
}

// ExecuteAsync sends a command for act and returns its future without
// waiting, so several steps can run at once.
func ExecuteAsync[T any](ctx Context, act Activity, in any) Future[T] {
	return Future[T]{f: schedule(ctx, act, in, false)}
}

func schedule(ctx Context, act Activity, in any, compensation bool) *future {
	r := ctx.co().r
	if err := ctx.Err(); err != nil {
		return &future{activity: act.String(), ready: true, readyAt: r.tick, err: err}
	}
	opts := act.Options.withDefaults()
	raw, err := schema.EncodeRaw(in)
	if err != nil {
		r.fail(fmt.Errorf("%s: encode input: %w", act, err))
		runtime.Goexit()
	}
	cmd := &schema.Command{
		WorkflowID:   r.id,
		ID:           r.issued + 1,
		Service:      act.Service,
		Action:       act.Action,
		Input:        raw,
		StartToClose: opts.StartToClose,
		Retry:        opts.Retry,
		Compensation: compensation,
	}
	cmd.ScheduleToClose = opts.ScheduleToClose
	cmd.HeartbeatTimeout = opts.HeartbeatTimeout
	r.decide(cmd)
	f := &future{activity: act.String(), key: r.id + "." + strconv.Itoa(cmd.ID)}
	if res, ok := r.results[cmd.ID]; ok {
		f.resolveResult(res, r.tick)
	} else {
		r.pending[cmd.ID] = f
		sc := ctx.scope()
		sc.steps = append(sc.steps, stepRef{id: cmd.ID, f: f})
	}
	return f
}

// SideEffect runs fn once and records its result in the history; on replay
// it returns the recorded value without running fn. Use it for random
// values and generated IDs.
func SideEffect[T any](ctx Context, fn func() T) T {
	r := ctx.co().r
	var zero T
	m := &schema.Marker{ID: r.issued + 1, Name: "side_effect"}
	if rec := r.peek(); rec == nil {
		v := fn()
		raw, err := schema.EncodeRaw(v)
		if err != nil {
			r.fail(fmt.Errorf("side effect: encode: %w", err))
			runtime.Goexit()
		}
		m.Value = raw
		r.decide(m)
		// The code goes on with the value as a replay reads it back, so a
		// workflow kept live between decisions (sticky.go) and one replayed
		// hold the same state.
		if err := schema.DecodeRaw(raw, &zero); err != nil {
			r.fail(fmt.Errorf("side effect: decode recorded value: %w", err))
			runtime.Goexit()
		}
		return zero
	}
	rec := r.decide(m).(*schema.Marker)
	if err := schema.DecodeRaw(rec.Value, &zero); err != nil {
		r.fail(fmt.Errorf("side effect: decode recorded value: %w", err))
		runtime.Goexit()
	}
	return zero
}

// DefaultVersion is what GetVersion returns for a workflow whose history
// predates the change.
const DefaultVersion = -1

// GetVersion lets a workflow change its code while old executions are in
// flight. A new execution records maxSupported and takes the new path; an
// execution whose history predates the change gets DefaultVersion and
// takes the old path:
//
//	if workflow.GetVersion(ctx, "add-fraud-check", workflow.DefaultVersion, 1) == 1 { ... }
//
// A change ID has one version for the whole run: the first call decides it
// (from the recorded marker, from its absence, or by recording
// maxSupported) and every later call with the same ID returns that version
// without a decision of its own, so one run never mixes old and new code.
func GetVersion(ctx Context, changeID string, minSupported, maxSupported int) int {
	r := ctx.co().r
	if v, ok := r.versions[changeID]; ok {
		return checkVersion(r, changeID, v, minSupported, maxSupported)
	}
	v := decideVersion(r, changeID, maxSupported)
	r.versions[changeID] = v
	return checkVersion(r, changeID, v, minSupported, maxSupported)
}

// decideVersion is the first GetVersion call of a change ID in a run.
func decideVersion(r *replayer, changeID string, maxSupported int) int {
	name := "version:" + changeID
	rec := r.peek()
	if rec == nil {
		raw, _ := schema.EncodeRaw(maxSupported)
		r.decide(&schema.Marker{ID: r.issued + 1, Name: name, Value: raw})
		return maxSupported
	}
	m, ok := rec.(*schema.Marker)
	if !ok || m.Name != name {
		// The history was written before this change: no marker here.
		return DefaultVersion
	}
	var v int
	r.decide(&schema.Marker{ID: r.issued + 1, Name: name})
	if err := schema.DecodeRaw(m.Value, &v); err != nil {
		r.fail(fmt.Errorf("version %s: decode: %w", changeID, err))
		runtime.Goexit()
	}
	return v
}

func checkVersion(r *replayer, changeID string, v, lo, hi int) int {
	if v < lo || v > hi {
		r.fail(fmt.Errorf("version %s: history has version %d, code supports %d..%d", changeID, v, lo, hi))
		runtime.Goexit()
	}
	return v
}

// peek returns the next recorded decision, or nil at the frontier.
func (r *replayer) peek() schema.Kinded {
	if r.issued < len(r.history) {
		return r.history[r.issued].value
	}
	return nil
}

// Now returns the workflow's time: the time of the latest history event
// delivered to the code (at least the due time of the latest fired timer),
// the same on every replay. Use it instead of time.Now.
func Now(ctx Context) time.Time { return ctx.co().r.now }

// WorkflowID returns the ID of the running workflow, the same in every run
// of a workflow that continued as new (see RunNumber).
func WorkflowID(ctx Context) string {
	id, _, _ := strings.Cut(ctx.co().r.id, "=")
	return id
}

// IsReplaying reports whether the code is re-executing recorded history.
func IsReplaying(ctx Context) bool { return ctx.co().r.isReplaying() }

// GetLogger returns a logger that is silent while the workflow replays, so
// each line is written once however often the history is replayed.
func GetLogger(ctx Context) *slog.Logger { return ctx.co().r.logger }

// Go starts fn in a new workflow coroutine. Coroutines run one at a time,
// in a deterministic order; use futures to wait for each other.
func Go(ctx Context, fn func(ctx Context)) {
	s := ctx.co().r.sched
	s.spawn(fmt.Sprintf("co-%d", len(s.cos)), ctx.scope(), fn)
}

// Await blocks until cond reports true. cond is re-evaluated after every
// event the workflow receives; it must only read workflow state.
func Await(ctx Context, cond func() bool) { ctx.co().block(cond) }

// replayAware drops log records while the workflow replays.
type replayAware struct {
	inner slog.Handler
	r     *replayer
}

func (h *replayAware) Enabled(ctx context.Context, l slog.Level) bool {
	return !h.r.isReplaying() && h.inner.Enabled(ctx, l)
}
func (h *replayAware) Handle(ctx context.Context, rec slog.Record) error {
	rec.AddAttrs(slog.String("workflow_id", h.r.id))
	return h.inner.Handle(ctx, rec)
}
func (h *replayAware) WithAttrs(a []slog.Attr) slog.Handler {
	return &replayAware{inner: h.inner.WithAttrs(a), r: h.r}
}
func (h *replayAware) WithGroup(n string) slog.Handler {
	return &replayAware{inner: h.inner.WithGroup(n), r: h.r}
}

type discard struct{}

func (discard) Enabled(context.Context, slog.Level) bool  { return false }
func (discard) Handle(context.Context, slog.Record) error { return nil }
func (d discard) WithAttrs([]slog.Attr) slog.Handler      { return d }
func (d discard) WithGroup(string) slog.Handler           { return d }
