package workflow

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/jetflow-io/jetflow/schema"
)

type updateHandler struct {
	fn       func(ctx Context, arg schema.Raw) (any, error)
	validate func(arg schema.Raw) error
}

// SetUpdateHandler makes the workflow take update name: `jetflow update ID
// NAME JSON` and orchestrator.Update send it, an orchestrator replays the
// history and runs validator on the replayed state (nil: every argument is
// accepted). A rejected update is not recorded and the caller gets the
// validator's error. An accepted one is recorded in the history, and fn
// runs at that point of the history, in a coroutine of its own, like a
// signal that starts a handler: it may execute steps, sleep and wait. What
// fn returns is recorded as the update's completion, and answers the
// caller.
//
// validator, like a query handler, only reads (ErrNotReadOnly otherwise).
// An update accepted before the code sets its handler waits for it. When
// the workflow returns before fn does, the update completes with an error
// saying so.
func SetUpdateHandler[A, R any](ctx Context, name string, fn func(ctx Context, arg A) (R, error), validator func(arg A) error) error {
	if name == "" || fn == nil {
		return errors.New("workflow: SetUpdateHandler needs a name and a function")
	}
	r := ctx.co().r
	decode := func(raw schema.Raw) (A, error) {
		var a A
		if err := schema.DecodeRaw(raw, &a); err != nil {
			return a, fmt.Errorf("update %q: decode argument: %w", name, err)
		}
		return a, nil
	}
	h := &updateHandler{
		fn: func(ctx Context, raw schema.Raw) (any, error) {
			a, err := decode(raw)
			if err != nil {
				return nil, err
			}
			return fn(ctx, a)
		},
		validate: func(raw schema.Raw) error {
			a, err := decode(raw)
			if err != nil || validator == nil {
				return err
			}
			return validator(a)
		},
	}
	hs := &r.handlers
	if hs.updates == nil {
		hs.updates = map[string]*updateHandler{}
	}
	hs.updates[name] = h
	waiting := hs.unhandled[:0:0]
	for _, u := range hs.unhandled {
		if u.Name == name {
			r.startUpdate(u, h)
		} else {
			waiting = append(waiting, u)
		}
	}
	hs.unhandled = waiting
	return nil
}

// acceptUpdate delivers a recorded update: its handler starts, or it waits
// for one. A second record of an update ID is ignored.
func (r *replayer) acceptUpdate(u *schema.UpdateAccepted) {
	hs := &r.handlers
	if hs.seen[u.UpdateID] {
		return
	}
	if hs.seen == nil {
		hs.seen = map[string]bool{}
	}
	hs.seen[u.UpdateID] = true
	hs.accepted = append(hs.accepted, u)
	if h := hs.updates[u.Name]; h != nil {
		r.startUpdate(u, h)
		return
	}
	hs.unhandled = append(hs.unhandled, u)
}

func (r *replayer) startUpdate(u *schema.UpdateAccepted, h *updateHandler) {
	r.sched.spawn("update-"+u.UpdateID, r.root, func(ctx Context) {
		out, err := h.fn(ctx, u.Arg)
		r.completeUpdate(u, out, err)
	})
}

// completeUpdate decides the completion of u, once.
func (r *replayer) completeUpdate(u *schema.UpdateAccepted, out any, err error) {
	hs := &r.handlers
	if hs.completed[u.UpdateID] {
		return
	}
	if hs.completed == nil {
		hs.completed = map[string]bool{}
	}
	hs.completed[u.UpdateID] = true
	c := &schema.UpdateCompleted{ID: r.issued + 1, UpdateID: u.UpdateID, Name: u.Name}
	if err != nil {
		c.Error = err.Error()
	} else if raw, eerr := schema.EncodeRaw(out); eerr != nil {
		c.Error = fmt.Sprintf("update %q: encode result: %v", u.Name, eerr)
	} else {
		c.Output = raw
	}
	r.decide(c)
}

// errUpdateAbandoned completes the updates a workflow returned before.
var errUpdateAbandoned = errors.New("workflow finished before the update completed")

// abandonUpdates completes, in history order, every accepted update whose
// handler has not returned: the workflow is returning.
func (r *replayer) abandonUpdates() {
	for _, u := range r.handlers.accepted {
		r.completeUpdate(u, nil, errUpdateAbandoned)
	}
}

// ValidateUpdate replays the history of workflow id through fn and runs
// the validator of update name on arg (msgpack), as the workflow's state
// stands at the end of the history. It returns nil when the update may be
// recorded; an error wrapping ErrRejected when the validator (or decoding
// the argument) refused it, ErrUnknownHandler when the workflow has no such
// handler, ErrNotDeciding when the history cannot be replayed. It writes
// nothing.
func ValidateUpdate(fn Func, id string, history []Event, name string, arg schema.Raw, logger *slog.Logger) error {
	var verr error
	o := replay(fn, id, history, logger, func(r *replayer) {
		if r.failure != nil {
			return
		}
		if r.finished != nil {
			verr = fmt.Errorf("%w: the workflow has returned", ErrRejected)
			return
		}
		h := r.handlers.updates[name]
		if h == nil {
			verr = unknown("update", name, keys(r.handlers.updates))
			return
		}
		_, err := r.call("update validator "+name, func() (any, error) { return nil, h.validate(arg) })
		if err != nil {
			verr = fmt.Errorf("%w: %w", ErrRejected, err)
		}
	})
	if o.Blocked != nil {
		return fmt.Errorf("%w: %s", ErrNotDeciding, o.Blocked.Reason)
	}
	return verr
}
