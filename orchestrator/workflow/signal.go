package workflow

import (
	"github.com/jetflow-io/jetflow/schema"
)

// Payload is the body of a signal.
type Payload struct{ raw schema.Raw }

// NewPayload wraps an encoded body, e.g. the payload of an
// orchestrator.LateSignal.
func NewPayload(raw schema.Raw) Payload { return Payload{raw: raw} }

// Decode decodes the payload into v (fields match by their msgpack tags;
// JSON signal bodies are converted with their keys kept).
func (p Payload) Decode(v any) error { return schema.DecodeRaw(p.raw, v) }

// Empty reports whether the signal had no body.
func (p Payload) Empty() bool { return len(p.raw) == 0 }

type pendingSignal struct {
	payload schema.Raw
	at      int64
	seq     uint64
	signal  *schema.Signal
}

// signalQueue holds the signals of one name in the order they were
// recorded, received or not: a signal sent before the workflow waits for it
// is kept.
type signalQueue struct{ items []pendingSignal }

func (r *replayer) queue(name string) *signalQueue {
	q := r.signals[name]
	if q == nil {
		q = &signalQueue{}
		r.signals[name] = q
	}
	return q
}

func (q *signalQueue) push(p schema.Raw, at int64, seq uint64, s *schema.Signal) {
	q.items = append(q.items, pendingSignal{payload: p, at: at, seq: seq, signal: s})
}

// ready reports whether a signal is waiting, and when it was recorded.
func (q *signalQueue) ready() (bool, int64) {
	if len(q.items) == 0 {
		return false, 0
	}
	return true, q.items[0].at
}

func (q *signalQueue) pop() Payload {
	p := q.items[0]
	q.items = q.items[1:]
	return Payload{raw: p.payload}
}

// ReceiveSignal waits for the next signal called name and returns its
// payload. Signals are received in the order they were recorded. On a
// cancelled context it returns an empty payload without taking a signal
// (WaitSignal returns the cancellation).
func ReceiveSignal(ctx Context, name string) Payload {
	p, _ := receive(ctx, name)
	return p
}

// receive is ReceiveSignal that reports a cancellation.
func receive(ctx Context, name string) (Payload, error) {
	q := ctx.co().r.queue(name)
	if err := blockCtx(ctx, func() bool { return len(q.items) > 0 }); err != nil {
		return Payload{}, err
	}
	return q.pop(), nil
}

// TryReceiveSignal receives the next signal called name if one is recorded,
// without waiting. A signal the workflow never receives before it returns
// is a late one: the orchestrator hands it to the workflow's late-signal
// route, if it has one (see Outcome.Unreceived).
func TryReceiveSignal(ctx Context, name string) (Payload, bool) {
	q := ctx.co().r.queue(name)
	if len(q.items) == 0 {
		return Payload{}, false
	}
	return q.pop(), true
}

// WaitSignal waits for the next signal called name and decodes its payload
// into T. On a cancelled context it returns the cancellation (errors.Is
// ErrCanceled).
func WaitSignal[T any](ctx Context, name string) (T, error) {
	var v T
	p, err := receive(ctx, name)
	if err != nil {
		return v, err
	}
	err = p.Decode(&v)
	return v, err
}

// Selector waits for the first of several futures, timers and signals:
// "the carrier picked it up, or 72 hours passed". Of the cases ready when
// Select runs, the one that became ready first in the history wins, so a
// replay takes the same branch.
//
// As in Temporal, a future (or timer) case is matched at most once per
// Selector: calling Select once per added future visits each exactly once,
// in the order they became ready. A signal or channel case is matched every
// time a message is waiting.
type Selector struct {
	cases []selectCase
	dflt  func()
}

type selectCase struct {
	ready func() (bool, int64)
	fire  func()
	// once marks a future case; matched is set when it has been.
	once, matched bool
}

// NewSelector returns an empty selector.
func NewSelector(ctx Context) *Selector { return &Selector{} }

// AddFuture adds a case for a Future or Timer; fn runs when it is chosen,
// once at most.
func (s *Selector) AddFuture(a Awaitable, fn func()) *Selector {
	f := a.awaitable()
	s.cases = append(s.cases, selectCase{
		ready: func() (bool, int64) { return f.ready, f.readyAt },
		fire:  fn,
		once:  true,
	})
	return s
}

// AddSignal adds a case for the next signal called name; when chosen, the
// signal is received and passed to fn.
func (s *Selector) AddSignal(ctx Context, name string, fn func(Payload)) *Selector {
	q := ctx.co().r.queue(name)
	s.cases = append(s.cases, selectCase{
		ready: q.ready,
		fire:  func() { fn(q.pop()) },
	})
	return s
}

// AddReceive adds a case for a channel (NewChannel, GetSignalChannel): it
// is ready when a value can be received or the channel is closed. fn runs
// when it is chosen and must receive from the channel (ReceiveAsync), as in
// Temporal; a value it leaves there makes the case ready again.
func (s *Selector) AddReceive(c ReceiveCase, fn func()) *Selector {
	s.cases = append(s.cases, selectCase{ready: c.receiveReady, fire: fn})
	return s
}

// AddDefault sets what Select runs when no case is ready: Select then never
// blocks.
func (s *Selector) AddDefault(fn func()) *Selector {
	s.dflt = fn
	return s
}

// HasPending reports whether a case is ready and not yet matched, so
// Select would not block.
func (s *Selector) HasPending() bool { return s.pick() >= 0 }

// pick returns the ready case that became ready first, or -1.
func (s *Selector) pick() int {
	pick := -1
	var best int64
	for i := range s.cases {
		c := &s.cases[i]
		if c.matched {
			continue
		}
		if ok, at := c.ready(); ok && (pick < 0 || at < best) {
			pick, best = i, at
		}
	}
	return pick
}

// Select blocks until a case is ready and runs the one that became ready
// first; with a default set, it runs the default instead of blocking. A
// Selector whose every case was matched blocks for ever (unless it has a
// default), as a Go select on nil channels would. On a cancelled context it
// returns the cancellation (errors.Is ErrCanceled) and runs no case; nil
// otherwise.
func (s *Selector) Select(ctx Context) error {
	// A cancellation wins here: the cases it made ready (a cancelled
	// timer) are its consequences, not events to act on.
	if err := ctx.Err(); err != nil {
		return err
	}
	pick := s.pick()
	if pick < 0 && s.dflt != nil {
		s.dflt()
		return nil
	}
	err := blockCtx(ctx, func() bool {
		if ctx.Err() != nil {
			return false
		}
		pick = s.pick()
		return pick >= 0
	})
	if err != nil {
		return err
	}
	c := &s.cases[pick]
	c.matched = c.once
	c.fire()
	return nil
}
