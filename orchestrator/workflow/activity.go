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
	// Retry is the retry policy. Default: DefaultRetryPolicy.
	Retry RetryPolicy
}

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
	if n.Retry.InitialInterval > 0 {
		o.Retry.InitialInterval = n.Retry.InitialInterval
	}
	if n.Retry.BackoffCoefficient > 0 {
		o.Retry.BackoffCoefficient = n.Retry.BackoffCoefficient
	}
	if n.Retry.MaxInterval > 0 {
		o.Retry.MaxInterval = n.Retry.MaxInterval
	}
	if n.Retry.MaxAttempts > 0 {
		o.Retry.MaxAttempts = n.Retry.MaxAttempts
	}
	if n.Retry.NonRetryable != nil {
		o.Retry.NonRetryable = n.Retry.NonRetryable
	}
	return o
}

func (o StepOptions) withDefaults() StepOptions {
	d := StepOptions{StartToClose: DefaultStartToClose, Retry: DefaultRetryPolicy}
	return d.Merge(o)
}
