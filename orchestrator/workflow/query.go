package workflow

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/jetflow-io/jetflow/schema"
)

// Errors of queries and updates, matched with errors.Is.
var (
	// ErrUnknownHandler: the workflow has set no query (or update) handler
	// of that name at this point of its history. The error lists the ones
	// it has.
	ErrUnknownHandler = errors.New("no such handler")
	// ErrNotReadOnly: a query handler or an update validator tried to issue
	// a decision (a step, a timer, a marker), to wait, or to start a
	// coroutine. Both only read the workflow's state.
	ErrNotReadOnly = errors.New("must not issue decisions, wait or start coroutines")
	// ErrRejected: an update's validator refused it; it is not recorded.
	ErrRejected = errors.New("update rejected")
	// ErrNotDeciding: the workflow's history cannot be replayed to a
	// state that answers (it is blocked on a divergence).
	ErrNotDeciding = errors.New("workflow cannot be replayed")
)

// handlers are the query and update handlers a replay's code set, and the
// updates the history delivered to it.
type handlers struct {
	// readOnly is set while a query handler or an update validator runs.
	readOnly bool
	queries  map[string]func(arg schema.Raw) (any, error)
	updates  map[string]*updateHandler
	// accepted are the recorded updates in history order; completed the
	// IDs whose completion was decided; unhandled the accepted updates
	// waiting for their handler to be set.
	accepted  []*schema.UpdateAccepted
	seen      map[string]bool
	completed map[string]bool
	unhandled []*schema.UpdateAccepted
}

// readOnlyViolation is the panic value of a forbidden call in read-only
// mode; call turns it into an ErrNotReadOnly error.
type readOnlyViolation struct{ what string }

// SetQueryHandler makes the workflow answer query name with fn: `jetflow
// query ID NAME [JSON]` and orchestrator.Query replay the workflow's
// history (on any orchestrator, without writing anything) and call fn with
// the decoded argument; its return value is the answer, as JSON.
//
// fn only reads the workflow's state, as a Temporal query handler: a
// handler that executes a step, sleeps, waits on a future or a signal, or
// starts a coroutine gets ErrNotReadOnly as its answer. Setting a handler
// under a name again replaces it. A finished workflow still answers, from
// the handlers set by the end of its history.
func SetQueryHandler[A, R any](ctx Context, name string, fn func(arg A) (R, error)) error {
	if name == "" || fn == nil {
		return errors.New("workflow: SetQueryHandler needs a name and a function")
	}
	r := ctx.co().r
	if r.handlers.queries == nil {
		r.handlers.queries = map[string]func(schema.Raw) (any, error){}
	}
	r.handlers.queries[name] = func(raw schema.Raw) (any, error) {
		var a A
		if err := schema.DecodeRaw(raw, &a); err != nil {
			return nil, fmt.Errorf("query %q: decode argument: %w", name, err)
		}
		return fn(a)
	}
	return nil
}

// Query replays the history of workflow id through fn and answers query
// name with arg (msgpack; empty for none). It writes nothing: what the
// replay would decide is dropped. The answer is the msgpack-encoded return
// value of the handler.
func Query(fn Func, id string, history []Event, name string, arg schema.Raw, logger *slog.Logger) (schema.Raw, error) {
	var out schema.Raw
	var qerr error
	o := replay(fn, id, history, logger, func(r *replayer) {
		if r.failure != nil {
			return
		}
		h := r.handlers.queries[name]
		if h == nil {
			qerr = unknown("query", name, keys(r.handlers.queries))
			return
		}
		v, err := r.call("query handler "+name, func() (any, error) { return h(arg) })
		if err != nil {
			qerr = err
			return
		}
		if out, err = schema.EncodeRaw(v); err != nil {
			qerr = fmt.Errorf("query %q: encode answer: %w", name, err)
		}
	})
	if o.Blocked != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotDeciding, o.Blocked.Reason)
	}
	return out, qerr
}

// call runs f in read-only mode: a decision, a wait or a new coroutine in
// f is an ErrNotReadOnly error, a panic an error naming it. f runs on a
// goroutine of its own, so workflow code that ends its goroutine (as a
// step whose input cannot be encoded does) ends only that one; the
// replay's state is left as it was for the decisions.
func (r *replayer) call(what string, f func() (any, error)) (out any, err error) {
	failure, aborted := r.failure, r.sched.aborted
	done := make(chan struct{})
	go func() {
		returned := false
		defer close(done)
		defer func() {
			r.handlers.readOnly = false
			p := recover()
			switch v := p.(type) {
			case nil:
				if !returned {
					err = fmt.Errorf("%s %w: it issued a decision that failed", what, ErrNotReadOnly)
				}
			case readOnlyViolation:
				err = fmt.Errorf("%s %w: it %s", what, ErrNotReadOnly, v.what)
			default:
				err = fmt.Errorf("%s panicked: %v", what, p)
			}
		}()
		r.handlers.readOnly = true
		out, err = f()
		returned = true
	}()
	<-done
	r.failure, r.sched.aborted = failure, aborted
	return out, err
}

func unknown(kind, name string, known []string) error {
	have := "none"
	if len(known) > 0 {
		have = strings.Join(known, ", ")
	}
	return fmt.Errorf("%w: %s %q is not set by the workflow (it has: %s)", ErrUnknownHandler, kind, name, have)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
