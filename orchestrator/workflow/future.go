package workflow

// Settable sets the value of a future made with NewFuture. It is set once:
// a second Set is a programming error and panics, as in Temporal.
type Settable[T any] struct {
	f *future
	r *replayer
}

// NewFuture returns a future that workflow code completes itself, and the
// Settable that completes it: a coroutine started with Go sets it, another
// waits on it with Get or a Selector. Nothing is recorded: the value is
// recomputed by the same code on every replay, so it is deterministic as
// long as that code is.
func NewFuture[T any](ctx Context) (Future[T], Settable[T]) {
	f := &future{activity: "future", local: true}
	return Future[T]{f: f}, Settable[T]{f: f, r: ctx.co().r}
}

// Set completes the future with v, or with err when err is not nil. The
// future becomes ready at the current point of the history, which is what a
// Selector orders it by.
func (s Settable[T]) Set(v T, err error) {
	if s.f.ready {
		panic("workflow: future set twice")
	}
	s.f.ready, s.f.readyAt = true, s.r.tick
	if err != nil {
		s.f.err = err
		return
	}
	s.f.val = v
}

// SetValue completes the future with v.
func (s Settable[T]) SetValue(v T) { s.Set(v, nil) }

// SetError completes the future with err.
func (s Settable[T]) SetError(err error) {
	var zero T
	s.Set(zero, err)
}
