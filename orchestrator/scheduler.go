package orchestrator

import (
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// scheduler hands the events the consumer delivers to the decision loops
// so that a busy workflow never holds up the others. The consumer's
// callback only appends a message to its workflow's pending list (put never
// blocks); a workflow with pending messages and no loop on it waits in a
// FIFO ready queue; a loop takes the next ready workflow with every message
// pending for it (take), decides once for all of them, and hands the
// workflow back (done), which queues it again at the back if more arrived
// meanwhile. One workflow is thus decided by at most one loop at a time in
// a process, and a workflow with ten thousand waiting events costs the
// others one turn of the queue, not ten thousand.
//
// Memory is bounded by the consumer: JetStream delivers at most
// MaxAckPending (20,000, streams.OrchestratorConsumerConfig) unacked
// messages, and a redelivery of a message still pending replaces it rather
// than adding to the list, so the pending lists never hold more than that
// many messages (plus the batches being decided, whose messages are among
// the same unacked ones).
type scheduler struct {
	mu     sync.Mutex
	cond   *sync.Cond
	flows  map[string]*flow // workflows with pending messages or a loop on them
	ready  []string         // FIFO of workflows with pending messages and no loop
	head   int              // ready[head:] is the queue
	closed bool
}

// flow is one workflow's place in the scheduler.
type flow struct {
	pending []jetstream.Msg
	seqs    map[uint64]int // stream sequence -> index in pending
	busy    bool           // a loop is deciding it
	queued  bool           // it is in the ready queue
}

func newScheduler() *scheduler {
	s := &scheduler{flows: map[string]*flow{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// put adds m to workflow id's pending messages. It never blocks on a
// decision: it takes the scheduler's lock for an append.
func (s *scheduler) put(id string, m jetstream.Msg) {
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flows[id]
	if f == nil {
		f = &flow{}
		s.flows[id] = f
	}
	if seq != 0 {
		if i, ok := f.seqs[seq]; ok {
			f.pending[i] = m // a redelivery: ack the newest delivery
			return
		}
		if f.seqs == nil {
			f.seqs = map[uint64]int{}
		}
		f.seqs[seq] = len(f.pending)
	}
	f.pending = append(f.pending, m)
	if !f.busy && !f.queued {
		f.queued = true
		s.ready = append(s.ready, id)
		s.cond.Signal()
	}
}

// take waits for the next ready workflow and returns it with all of its
// pending messages, which are now the caller's to settle; the workflow is
// the caller's until it calls done. ok is false once the scheduler is
// closed.
func (s *scheduler) take() (id string, msgs []jetstream.Msg, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.head == len(s.ready) && !s.closed {
		s.cond.Wait()
	}
	if s.closed {
		return "", nil, false
	}
	id = s.ready[s.head]
	s.ready[s.head] = ""
	s.head++
	if s.head == len(s.ready) {
		s.ready, s.head = s.ready[:0], 0
	} else if s.head > 1024 && s.head*2 > len(s.ready) {
		s.ready, s.head = append(s.ready[:0], s.ready[s.head:]...), 0
	}
	f := s.flows[id]
	msgs, f.pending, f.seqs = f.pending, nil, nil
	f.busy, f.queued = true, false
	return id, msgs, true
}

// done hands workflow id back: it goes to the back of the ready queue if
// messages arrived while it was decided, and leaves the scheduler if not.
func (s *scheduler) done(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flows[id]
	f.busy = false
	if len(f.pending) == 0 {
		delete(s.flows, id)
		return
	}
	f.queued = true
	s.ready = append(s.ready, id)
	s.cond.Signal()
}

// touch keeps the messages pending for workflow id alive (InProgress):
// they wait while its loop works through an earlier batch, which must not
// outlast their ack wait and have them redelivered.
func (s *scheduler) touch(id string) {
	s.mu.Lock()
	var pending []jetstream.Msg
	if f := s.flows[id]; f != nil {
		pending = append(pending, f.pending...)
	}
	s.mu.Unlock()
	for _, m := range pending {
		_ = m.InProgress()
	}
}

// close wakes every loop waiting in take; take returns ok=false from then
// on. Messages still pending are left unacked: JetStream redelivers them
// after the ack wait, to this or another orchestrator.
func (s *scheduler) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cond.Broadcast()
}

// hasBelow reports whether a message with a stream sequence below seq is
// pending for workflow id (delivered, not yet taken by a loop).
func (s *scheduler) hasBelow(id string, seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flows[id]
	if f == nil {
		return false
	}
	for q := range f.seqs {
		if q < seq {
			return true
		}
	}
	return false
}

// putBack returns msgs, taken and not settled, to workflow id's pending
// messages ahead of those delivered since. The caller still holds the
// workflow: its done queues it again.
func (s *scheduler) putBack(id string, msgs []jetstream.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flows[id]
	if f == nil {
		f = &flow{busy: true}
		s.flows[id] = f
	}
	pending := make([]jetstream.Msg, 0, len(msgs)+len(f.pending))
	seqs := map[uint64]int{}
	for _, m := range msgs {
		if seq := streamSeq(m); seq != 0 {
			if _, dup := seqs[seq]; dup {
				continue
			}
			seqs[seq] = len(pending)
		}
		pending = append(pending, m)
	}
	for _, m := range f.pending {
		if seq := streamSeq(m); seq != 0 {
			if i, dup := seqs[seq]; dup {
				pending[i] = m // a newer delivery of a handed-back one
				continue
			}
			seqs[seq] = len(pending)
		}
		pending = append(pending, m)
	}
	f.pending, f.seqs = pending, seqs
}
