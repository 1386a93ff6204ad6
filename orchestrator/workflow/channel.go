package workflow

// ReceiveCase is a channel a Selector can wait on with AddReceive: a
// Channel made with NewChannel or a SignalChannel.
type ReceiveCase interface {
	// receiveReady reports whether a receive would not block, and the tick
	// at which the value waiting (or the close) arrived.
	receiveReady() (bool, int64)
}

// Channel passes values between the coroutines of one workflow, like a Go
// channel but scheduled by the workflow: coroutines run one at a time and
// in a fixed order, so sends and receives pair up the same way on every
// replay. Nothing is recorded; a Channel lives for one replay. Make one
// with NewChannel or NewBufferedChannel.
type Channel[T any] struct{ c *channel[T] }

type channel[T any] struct {
	r    *replayer
	size int
	// q holds the values sent and not yet received, in send order; the
	// first size of them are buffered, the others' senders wait.
	q        []*chanItem[T]
	closed   bool
	closedAt int64
}

type chanItem[T any] struct {
	v     T
	at    int64
	taken bool
}

// NewChannel returns an unbuffered channel: Send waits until a receiver
// took the value.
func NewChannel[T any](ctx Context) Channel[T] { return NewBufferedChannel[T](ctx, 0) }

// NewBufferedChannel returns a channel that holds up to size values before
// Send waits.
func NewBufferedChannel[T any](ctx Context, size int) Channel[T] {
	if size < 0 {
		size = 0
	}
	return Channel[T]{c: &channel[T]{r: ctx.co().r, size: size}}
}

// Send sends v, waiting while the buffer is full (for an unbuffered
// channel, until a receiver took it). Sending on a closed channel panics,
// as in Go.
func (c Channel[T]) Send(ctx Context, v T) {
	ch := c.c
	if ch.closed {
		panic("workflow: send on closed channel")
	}
	it := &chanItem[T]{v: v, at: ch.r.tick}
	ch.q = append(ch.q, it)
	ctx.co().block(func() bool { return it.taken || ch.buffered(it) })
}

// buffered reports whether it is among the values the buffer holds.
func (ch *channel[T]) buffered(it *chanItem[T]) bool {
	for i := 0; i < ch.size && i < len(ch.q); i++ {
		if ch.q[i] == it {
			return true
		}
	}
	return false
}

// SendAsync sends v if the buffer has room, without waiting, and reports
// whether it did.
func (c Channel[T]) SendAsync(v T) bool {
	ch := c.c
	if ch.closed {
		panic("workflow: send on closed channel")
	}
	if len(ch.q) >= ch.size {
		return false
	}
	ch.q = append(ch.q, &chanItem[T]{v: v, at: ch.r.tick})
	return true
}

// Receive waits for a value. more is false when the channel is closed and
// drained; v is then the zero value.
func (c Channel[T]) Receive(ctx Context) (v T, more bool) {
	ch := c.c
	ctx.co().block(func() bool { return len(ch.q) > 0 || ch.closed })
	return c.ReceiveAsync()
}

// ReceiveAsync receives a value if one is waiting, without blocking, and
// reports whether it did.
func (c Channel[T]) ReceiveAsync() (v T, ok bool) {
	ch := c.c
	if len(ch.q) == 0 {
		return v, false
	}
	it := ch.q[0]
	ch.q[0] = nil
	ch.q = ch.q[1:]
	it.taken = true
	return it.v, true
}

// Close closes the channel: receivers drain what was sent, then get
// more == false. Closing twice panics, as in Go.
func (c Channel[T]) Close() {
	if c.c.closed {
		panic("workflow: close of closed channel")
	}
	c.c.closed, c.c.closedAt = true, c.c.r.tick
}

// Len is the number of values sent and not yet received.
func (c Channel[T]) Len() int { return len(c.c.q) }

func (c Channel[T]) receiveReady() (bool, int64) {
	ch := c.c
	if len(ch.q) > 0 {
		return true, ch.q[0].at
	}
	return ch.closed, ch.closedAt
}

// SignalChannel is the channel of the signals called one name, for a
// Selector's AddReceive or a loop that receives them one by one. Signals
// are received in the order they were recorded, whether the workflow was
// waiting or not.
type SignalChannel[T any] struct {
	name string
	q    *signalQueue
}

// GetSignalChannel returns the channel of the signals called name, each
// decoded into T. It shares its queue with ReceiveSignal and AddSignal.
func GetSignalChannel[T any](ctx Context, name string) SignalChannel[T] {
	return SignalChannel[T]{name: name, q: ctx.co().r.queue(name)}
}

// Name is the signal name.
func (c SignalChannel[T]) Name() string { return c.name }

// Receive waits for the next signal and decodes it into v; err is the
// decoding error, if any (the signal is taken either way).
func (c SignalChannel[T]) Receive(ctx Context) (v T, err error) {
	ctx.co().block(func() bool { return len(c.q.items) > 0 })
	err = c.q.pop().Decode(&v)
	return v, err
}

// ReceiveAsync receives the next signal if one is recorded, without
// waiting; ok reports whether there was one.
func (c SignalChannel[T]) ReceiveAsync() (v T, ok bool, err error) {
	if len(c.q.items) == 0 {
		return v, false, nil
	}
	err = c.q.pop().Decode(&v)
	return v, true, err
}

func (c SignalChannel[T]) receiveReady() (bool, int64) { return c.q.ready() }
