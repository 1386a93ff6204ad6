package workflow

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// coroutine is one goroutine of workflow code. Only one coroutine of a
// replay runs at any moment; the scheduler hands control over explicitly,
// so the interleaving is deterministic.
type coroutine struct {
	r      *replayer
	name   string
	resume chan struct{}
	// waiting is set while the coroutine is parked; it reports whether the
	// coroutine may continue.
	waiting func() bool
	done    bool
	// sc is the cancellation scope of the context the coroutine was
	// started with.
	sc *cancelScope
}

func (c *coroutine) co() *coroutine { return c }

func (c *coroutine) scope() *cancelScope { return c.sc }

// Err returns the cancellation error (errors.Is ErrCanceled) once the
// coroutine's context is cancelled, nil before.
func (c *coroutine) Err() error { return c.sc.err() }

// errPanic wraps a panic of workflow code.
type errPanic struct {
	value any
	stack string
}

func (e errPanic) Error() string { return fmt.Sprintf("workflow panic: %v\n%s", e.value, e.stack) }

// scheduler runs coroutines one at a time in creation order.
type scheduler struct {
	r       *replayer
	cos     []*coroutine
	yield   chan struct{}
	aborted bool
	wg      sync.WaitGroup
	// current is the coroutine running now (nil between passes).
	current *coroutine
}

// spawn creates a coroutine in cancellation scope sc; it starts running at
// the next scheduling pass.
func (s *scheduler) spawn(name string, sc *cancelScope, fn func(ctx Context)) *coroutine {
	if s.r.handlers.readOnly {
		panic(readOnlyViolation{what: "started a coroutine"})
	}
	c := &coroutine{r: s.r, name: name, resume: make(chan struct{}), sc: sc}
	started := false
	c.waiting = func() bool {
		if started {
			return true
		}
		started = true
		return true
	}
	s.cos = append(s.cos, c)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			c.done = true
			if p := recover(); p != nil && !s.aborted {
				s.r.fail(errPanic{value: p, stack: string(debug.Stack())})
			}
			s.yield <- struct{}{}
		}()
		<-c.resume
		if s.aborted {
			runtime.Goexit()
		}
		fn(c)
	}()
	return c
}

// block parks the calling coroutine until ready reports true.
func (c *coroutine) block(ready func() bool) {
	s := c.r.sched
	if s.aborted {
		runtime.Goexit()
	}
	if ready() {
		return
	}
	if c.r.handlers.readOnly {
		panic(readOnlyViolation{what: "waited"})
	}
	c.waiting = ready
	s.yield <- struct{}{}
	<-c.resume
	if s.aborted {
		runtime.Goexit()
	}
}

// run resumes coroutines whose condition holds until none can move.
func (s *scheduler) run() {
	for {
		progressed := false
		for i := 0; i < len(s.cos); i++ { // s.cos may grow while we iterate
			c := s.cos[i]
			if c.done || s.aborted || !c.waiting() {
				continue
			}
			c.waiting = nil
			progressed = true
			s.current = c
			c.resume <- struct{}{}
			<-s.yield
			s.current = nil
		}
		if !progressed || s.aborted {
			return
		}
	}
}

// close unwinds every parked coroutine and waits for all to exit.
func (s *scheduler) close() {
	s.aborted = true
	for _, c := range s.cos {
		if !c.done {
			c.resume <- struct{}{}
			<-s.yield
		}
	}
	s.wg.Wait()
}
