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
// retried command. Every compensation is attempted even if an earlier one
// failed. It returns cause wrapped in a *CompensatedError when all
// succeeded (the workflow returning it ends compensated), and a
// *ManualError naming every failed compensation otherwise: never a faked
// success.
func (s *Saga) Compensate(cause error) error {
	var failed []string
	for i := len(s.comps) - 1; i >= 0; i-- {
		c := s.comps[i]
		act := c.act
		act.Options = s.opts.Merge(act.Options)
		// Only the outcome counts: a compensation may return any value,
		// which is recorded and not decoded.
		f := schedule(s.ctx, act, c.in, true)
		s.ctx.co().block(func() bool { return f.ready })
		if f.err != nil {
			failed = append(failed, f.err.Error())
		}
	}
	s.comps = nil
	if len(failed) > 0 {
		return &ManualError{
			Reason: "compensation failed: " + strings.Join(failed, "; "),
			Cause:  cause,
		}
	}
	return &CompensatedError{Cause: cause}
}

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
