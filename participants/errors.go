package participants

import (
	"context"
	"errors"
	"time"
)

// ErrCrash makes the library behave as if the process died while the
// handler ran: it neither acknowledges nor rejects the command nor publishes
// anything, so JetStream redelivers the command after AckWait. Handlers
// return it (wrapped or not) to simulate faults.
var ErrCrash = errors.New("participants: simulated crash")

// Error kinds the library assigns itself.
const (
	// KindError is the kind of an error that names none.
	KindError = "error"
	// KindTimeout is the kind of an attempt that ran out of StartToClose.
	KindTimeout = "timeout"
	// KindPanic is the kind of a handler panic (retryable).
	KindPanic = "panic"
	// KindUnknownCommand is the kind of the failure result sent for a
	// command whose action the service does not handle.
	KindUnknownCommand = "unknown_command"
	// KindInvalidCommand is the kind of the failure result sent for a
	// command that decodes but cannot be processed (bad idempotency key,
	// body not matching its subject).
	KindInvalidCommand = "invalid_command"
	// KindUndeliverable is the kind of the failure result sent for a
	// command taken on the last delivery its consumer makes (Config.MaxDeliver):
	// every delivery before it crashed, timed out or was retried. It is
	// final: the workflow goes on with its compensation.
	KindUndeliverable = "undeliverable"
	// KindInvalidOutput is the kind of the failure result sent when the
	// handler's output cannot be encoded, or is too large for a result
	// (resultRoom): it is final, since running the handler again gives
	// the same output.
	KindInvalidOutput = "invalid_output"
	// KindCancelled is the kind of the failure result sent for a command
	// its workflow cancelled (schema.StepCancelled): the handler's context
	// was cancelled, or the handler was not run. It is final; the workflow
	// records it and ignores it.
	KindCancelled = "cancelled"
)

// failure is the error the classifying constructors return.
type failure struct {
	kind  string
	final bool
	after time.Duration
	err   error
}

func (f *failure) Error() string {
	if f.err != nil {
		return f.err.Error()
	}
	if f.kind != "" {
		return f.kind
	}
	return "retry requested"
}

func (f *failure) Unwrap() error { return f.err }

// NonRetryable marks err as a final failure of kind: the command fails at
// once and the result's error has this kind. err may be nil.
func NonRetryable(kind string, err error) error {
	return &failure{kind: kind, final: true, err: err}
}

// Retryable marks err as a retryable failure of kind (e.g.
// "gateway_error"). The command is retried by its retry policy unless the
// policy lists kind as non-retryable; when the attempts run out, the failure
// result carries this kind. err may be nil.
func Retryable(kind string, err error) error {
	return &failure{kind: kind, err: err}
}

// RetryAfter asks for the next attempt exactly d from now instead of the
// policy's backoff. It still counts an attempt, and the policy's attempt
// limit still applies. A kind given by an error it wraps is kept.
func RetryAfter(d time.Duration, err error) error {
	return &failure{after: d, err: err}
}

// classification is what the library does with a handler error.
type classification struct {
	kind  string
	final bool
	after time.Duration
}

// classify reads the kind, finality and retry delay out of err. Besides
// the constructors above, an error in err's chain with a method
// FailureKind() (kind string, final bool) gives both when no constructor
// named a kind: a library a handler calls (the simulated systems of
// package sim) can say which of its errors are final without importing
// this package. timedOut says the handler's context ran out of
// StartToClose.
func classify(err error, timedOut bool) classification {
	var c classification
	var f *failure
	for e := err; errors.As(e, &f); e = f.err {
		if c.kind == "" {
			c.kind = f.kind
		}
		c.final = c.final || f.final
		if c.after == 0 {
			c.after = f.after
		}
		if f.err == nil {
			break
		}
	}
	var kinded interface{ FailureKind() (string, bool) }
	if c.kind == "" && errors.As(err, &kinded) {
		kind, final := kinded.FailureKind()
		c.kind, c.final = kind, c.final || final
	}
	if c.kind == "" {
		if timedOut || errors.Is(err, context.DeadlineExceeded) {
			c.kind = KindTimeout
		} else {
			c.kind = KindError
		}
	}
	return c
}
