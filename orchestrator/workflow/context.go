package workflow

// Context is the handle a workflow function receives and passes to every
// workflow API call. It is not a context.Context: workflow code has no
// deadlines of its own, only the history. It can be cancelled, by an
// operator's cancel request recorded in the history (orchestrator.Cancel,
// `jetflow cancel`) or by the CancelFunc of WithCancel; the workflow calls
// blocked on a cancelled context then return an error that errors.Is
// ErrCanceled. NewDisconnectedContext gives a context that is not
// cancelled with its parent, for the clean-up after a cancel.
type Context interface {
	// Err returns nil while the context is not cancelled, and the
	// cancellation (errors.Is ErrCanceled, a *CanceledError) after.
	Err() error
	co() *coroutine
	scope() *cancelScope
}

// scopedCtx is a context with a cancellation scope of its own, derived
// from another context (WithCancel, NewDisconnectedContext).
type scopedCtx struct {
	c  *coroutine
	sc *cancelScope
}

// co returns the coroutine running now: a derived context may be handed
// to another coroutine (workflow.Go), and it must park the one that uses
// it.
func (x scopedCtx) co() *coroutine {
	if cur := x.c.r.sched.current; cur != nil {
		return cur
	}
	return x.c
}

func (x scopedCtx) scope() *cancelScope { return x.sc }

func (x scopedCtx) Err() error { return x.sc.err() }

// blockCtx parks the calling coroutine until ready reports true or ctx is
// cancelled. It returns nil when ready, the cancellation otherwise; a
// ready value wins over a cancellation that came at the same time.
func blockCtx(ctx Context, ready func() bool) error {
	sc := ctx.scope()
	var err error
	ctx.co().block(func() bool {
		if ready() {
			err = nil
			return true
		}
		err = sc.err()
		return err != nil
	})
	return err
}
