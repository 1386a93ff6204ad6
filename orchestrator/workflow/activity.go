package workflow

import (
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

// Activity names a step a participant performs: the service that owns it
// and the action. It is what Execute sends a command for. A participant
// package exports its activities (payment.Charge, payment.Refund, ...) so a
// workflow names them without knowing any subject.
type Activity struct {
	Service string
	Action  string
	// Options apply to every execution of the activity unless overridden
	// with WithOptions.
	Options StepOptions
}

// String is "service.action".
func (a Activity) String() string { return a.Service + "." + a.Action }

// WithOptions returns a copy of a with the non-zero fields of o applied.
func (a Activity) WithOptions(o StepOptions) Activity {
	a.Options = a.Options.Merge(o)
	return a
}

// RetryPolicy says how a failing step is retried; see schema.RetryPolicy.
type RetryPolicy = schema.RetryPolicy

// StepOptions are the per-step options of Execute.
type StepOptions struct {
	// StartToClose bounds one attempt. Default 10s.
	StartToClose time.Duration
	// ScheduleToClose bounds the step's total time, every attempt and
	// backoff included, counted from when the command was recorded. Once
	// it has passed the participant fails the step for good with kind
	// "timeout". Default 0: no bound but the retry policy's.
	ScheduleToClose time.Duration
	// HeartbeatTimeout fails an attempt whose handler goes that long
	// without calling Command.Heartbeat, as a retryable "timeout": a hung
	// task is noticed long before its StartToClose. Default 0: none.
	HeartbeatTimeout time.Duration
	// Retry is the retry policy. Default: DefaultRetryPolicy. Set
	// Retry.MaxAttempts to Unlimited to retry until ScheduleToClose (or
	// the participant's MaxDeliver) ends it.
	Retry RetryPolicy
}

// Unlimited, as RetryPolicy.MaxAttempts of StepOptions, retries a step
// without a count. MaxAttempts 0 keeps meaning "the default" (10) in
// StepOptions; Unlimited (-1) is written on the wire as 0, the wire's
// "unlimited". A participant still ends the step at its consumer's
// MaxDeliver (participants.Config.MaxDeliver, default 100 deliveries) with
// an "undeliverable" failure, and at ScheduleToClose if the step sets one.
const Unlimited = -1

// DefaultRetryPolicy is used when a step sets none: 1s initial interval,
// coefficient 2, at most 100s between attempts, at most 10 attempts.
var DefaultRetryPolicy = RetryPolicy{
	InitialInterval:    time.Second,
	BackoffCoefficient: 2,
	MaxInterval:        100 * time.Second,
	MaxAttempts:        10,
}

// DefaultStartToClose is used when a step sets no StartToClose.
const DefaultStartToClose = 10 * time.Second

// Merge returns o with the non-zero fields of n applied.
func (o StepOptions) Merge(n StepOptions) StepOptions {
	if n.StartToClose > 0 {
		o.StartToClose = n.StartToClose
	}
	if n.ScheduleToClose > 0 {
		o.ScheduleToClose = n.ScheduleToClose
	}
	if n.HeartbeatTimeout > 0 {
		o.HeartbeatTimeout = n.HeartbeatTimeout
	}
	if n.Retry.InitialInterval > 0 {
		o.Retry.InitialInterval = n.Retry.InitialInterval
	}
	if n.Retry.BackoffCoefficient > 0 {
		o.Retry.BackoffCoefficient = n.Retry.BackoffCoefficient
	}
	if n.Retry.MaxInterval > 0 {
		o.Retry.MaxInterval = n.Retry.MaxInterval
	}
	if n.Retry.MaxAttempts > 0 || n.Retry.MaxAttempts == Unlimited {
		o.Retry.MaxAttempts = n.Retry.MaxAttempts
	}
	if n.Retry.NonRetryable != nil {
		o.Retry.NonRetryable = n.Retry.NonRetryable
	}
	return o
}

// withDefaults returns o with the defaults filled in, as the command
// carries it: Unlimited becomes the wire's 0.
func (o StepOptions) withDefaults() StepOptions {
	d := StepOptions{StartToClose: DefaultStartToClose, Retry: DefaultRetryPolicy}
	d = d.Merge(o)
	if d.Retry.MaxAttempts < 0 {
		d.Retry.MaxAttempts = 0
	}
	return d
}
