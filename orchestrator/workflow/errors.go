package workflow

import "errors"

// ApplicationError is an error a workflow returns with a kind its caller
// branches on, as Temporal's application errors: the kind and the
// non-retryable flag are recorded in the terminal event
// (WorkflowFinished.ErrorKind, NonRetryable) next to the message. A
// workflow that returns one ends failed.
type ApplicationError struct {
	// Kind classifies the failure ("invalid_order", ...).
	Kind    string
	Message string
	// NonRetryable says that running the workflow again cannot succeed.
	NonRetryable bool
	// Cause is the underlying error, if any.
	Cause error
}

// NewApplicationError returns an *ApplicationError of the given kind.
func NewApplicationError(kind, msg string, nonRetryable bool) error {
	return &ApplicationError{Kind: kind, Message: msg, NonRetryable: nonRetryable}
}

func (e *ApplicationError) Error() string {
	s := e.Kind + ": " + e.Message
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *ApplicationError) Unwrap() error { return e.Cause }

// errorKind is the kind and retryability recorded for a workflow error: an
// application error's own, else the kind of the failed step it carries.
func errorKind(err error) (kind string, nonRetryable bool) {
	var ae *ApplicationError
	if errors.As(err, &ae) {
		return ae.Kind, ae.NonRetryable
	}
	var se *StepError
	if errors.As(err, &se) {
		return se.Kind, false
	}
	return "", false
}
