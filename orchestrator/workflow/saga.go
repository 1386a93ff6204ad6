package workflow

import (
	"fmt"
	"strings"
	"time"
)

// CompensationOptions are the default options of compensating steps: retried
// with exponential backoff up to a ceiling, because a compensation must not
// be given up lightly; after the last attempt the workflow needs a person.
var CompensationOptions = StepOptions{
	StartToClose: DefaultStartToClose,
	Retry: RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaxInterval:        time.Minute,
		MaxAttempts:        10,
	},
}

// Saga collects the compensations of completed steps and runs them in
// reverse order (last in, first out) when the workflow fails.
type Saga struct {
	ctx   Context
	opts  StepOptions
	comps []compensation
}

type compensation struct {
	act Activity
	in  any
}

// NewSaga returns an empty saga. opts, if given, override
// CompensationOptions for every compensation.
func NewSaga(ctx Context, opts ...StepOptions) *Saga {
	s := &Saga{ctx: ctx, opts: CompensationOptions}
	for _, o := range opts {
		s.opts = s.opts.Merge(o)
	}
	return s
}

// AddCompensation registers the step that undoes a completed one. Call it
// right after the step succeeded.
func (s *Saga) AddCompensation(act Activity, in any) {
	s.comps = append(s.comps, compensation{act: act, in: in})
}

// Compensate runs the registered compensations in reverse order, each a
// retried command, on a disconnected context: they run even when the
// workflow was cancelled. Every compensation is attempted even if an
// earlier one failed. It returns cause wrapped in a *CompensatedError when
// all succeeded (the workflow returning it ends compensated, or cancelled
// when the cause is a cancellation).
//
// When some failed for good, never faking a success, the workflow needs a
// person: it ends manual (retryable), naming every failed compensation,
// and waits here. An operator's retry (orchestrator.Retry, `jetflow
// retry`) re-sends the failed ones, as new commands with fresh attempts,
// in the same order; an operator's resolve ends it resolved.
func (s *Saga) Compensate(cause error) error {
	ctx := NewDisconnectedContext(s.ctx)
	pending := make([]compensation, 0, len(s.comps))
	for i := len(s.comps) - 1; i >= 0; i-- {
		pending = append(pending, s.comps[i])
	}
	s.comps = nil
	for {
		var failed []string
		var again []compensation
		for _, c := range pending {
			act := c.act
			act.Options = s.opts.Merge(act.Options)
			// Only the outcome counts: a compensation may return any
			// value, which is recorded and not decoded.
			f := schedule(ctx, act, c.in, true)
			err := blockCtx(ctx, func() bool { return f.ready })
			if err == nil {
				err = f.err
			}
			if err != nil {
				failed = append(failed, err.Error())
				again = append(again, c)
			}
		}
		if len(failed) == 0 {
			return &CompensatedError{Cause: cause}
		}
		m := &ManualError{
			Reason: "compensation failed: " + strings.Join(failed, "; "),
			Cause:  cause,
		}
		// Histories recorded before compensations could be retried went
		// on past a failed compensation (the ManualError returned to the
		// workflow): they keep doing so on replay. The marker is recorded
		// only on this path, so a saga that compensates cleanly pays
		// nothing for it.
		if GetVersion(ctx, sagaAwaitRetry, DefaultVersion, 1) == DefaultVersion {
			return m
		}
		awaitRetry(ctx, m)
		pending = again
	}
}

// sagaAwaitRetry is the change ID under which a saga whose compensation
// failed for good waits for an operator's retry instead of returning.
const sagaAwaitRetry = "jetflow.saga.await-retry"

// CompensatedError is what Saga.Compensate returns when every compensation
// succeeded. A workflow that returns it (or wraps it) ends compensated
// instead of failed.
type CompensatedError struct {
	// Cause is the error that made the saga compensate.
	Cause error
}

func (e *CompensatedError) Error() string { return fmt.Sprintf("compensated: %v", e.Cause) }

// Unwrap returns the cause.
func (e *CompensatedError) Unwrap() error { return e.Cause }
