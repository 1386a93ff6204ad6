package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// Affinity timings: a process says hello every affinityHello and is taken
// for gone affinityExpiry after its last one (at once when it says bye, or
// when a wake sent to it finds no subscriber). A forwarded wake waits at
// most affinityForwardWait for the owner's receipt before it is decided
// where it was delivered.
const (
	affinityHello       = time.Second
	affinityExpiry      = 3 * time.Second
	affinityForwardWait = 2 * time.Second
)

// Headers of a forwarded wake: the delivery's ack subject (its reply) and
// its subject in the history stream.
const (
	headerAffinityAck     = "Jetflow-Affinity-Ack"
	headerAffinitySubject = "Jetflow-Affinity-Subject"
)

// affinity sends each workflow's wakes to one orchestrator process, the
// one that decided it last and holds its history in its cache. All
// orchestrators share one durable consumer, which hands a wake to
// whichever process pulls next; a process that pulls a wake for a
// workflow another process owns forwards the delivery to that process
// over core NATS, and the owner decides it and acks it with the
// delivery's own ack subject. Nothing is stored: membership is a hello
// every second on streams.AffinityHello, the owner of a workflow is the
// live member with the highest hash of (member, workflow ID) (rendezvous
// hashing, so a process that leaves moves only its own share, and one
// that joins takes a 1/N share), and a forward is a request whose reply is
// the owner's receipt.
//
// Affinity is a hint, never a lock: two processes that disagree on the
// members both decide, and the fence on wf.<id>.> lets one append. A
// forward that fails (the owner is gone: no responders, no receipt in
// time, or no permission) is decided where it was delivered. A delivery
// the owner took and did not ack is redelivered by JetStream after the ack
// wait, as any unacked delivery, and a redelivery is never forwarded: it
// is decided by whichever process pulls it, so an owner that is frozen or
// stuck in a decision does not hold its workflows beyond the ack wait.
type affinity struct {
	nc    *nats.Conn
	self  string
	put   func(id string, m jetstream.Msg)
	log   *slog.Logger
	now   func() time.Time
	stats *affinityStats

	mu      sync.Mutex
	members map[string]time.Time // other members -> when last heard
	live    []string             // self and the members heard within affinityExpiry; nil: recompute

	subs []*nats.Subscription
}

// affinityStats counts what affinity did, for tests and the bench.
type affinityStats struct {
	mu                          sync.Mutex
	forwarded, received, failed int
}

// startAffinity joins the orchestrators' membership and starts receiving
// the wakes forwarded to this process; put hands a wake to the scheduler.
// It returns a nil affinity (every wake decided locally) when disabled.
func (o *Orchestrator) startAffinity(ctx context.Context, put func(id string, m jetstream.Msg)) (*affinity, error) {
	if !o.cfg.Affinity || o.cfg.NC == nil {
		return nil, nil
	}
	a := &affinity{nc: o.cfg.NC, self: memberID(), put: put, log: o.log, now: time.Now, members: map[string]time.Time{}, stats: &affinityStats{}}
	for subject, handler := range map[string]nats.MsgHandler{
		streams.AffinityHello:               a.onHello,
		streams.AffinityBye:                 a.onBye,
		streams.AffinityWake + "." + a.self: a.onWake,
	} {
		sub, err := a.nc.Subscribe(subject, handler)
		if err != nil {
			a.stop()
			return nil, fmt.Errorf("orchestrator: affinity: subscribe %s: %w", subject, err)
		}
		a.subs = append(a.subs, sub)
	}
	go a.announce(ctx)
	o.affinityStats = a.stats
	return a, nil
}

// memberID names this process in the membership: random, new at every
// start, one subject token.
func memberID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// announce says hello every affinityHello until ctx ends.
func (a *affinity) announce(ctx context.Context) {
	t := time.NewTicker(affinityHello)
	defer t.Stop()
	for {
		_ = a.nc.Publish(streams.AffinityHello, []byte(a.self))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.mu.Lock()
			a.live = nil // members may have expired
			a.mu.Unlock()
		}
	}
}

// stop leaves the membership: the others move this process's share at
// once instead of after affinityExpiry.
func (a *affinity) stop() {
	if a == nil {
		return
	}
	for _, s := range a.subs {
		_ = s.Unsubscribe()
	}
	_ = a.nc.Publish(streams.AffinityBye, []byte(a.self))
	_ = a.nc.Flush()
}

func (a *affinity) onHello(m *nats.Msg) {
	id := string(m.Data)
	if id == a.self || id == "" {
		return
	}
	a.mu.Lock()
	_, known := a.members[id]
	if !known {
		a.live = nil
		a.log.Debug("affinity: member joined", "member", id)
	}
	a.members[id] = a.now()
	a.mu.Unlock()
	if !known {
		// A newcomer learns of this process now rather than at its next
		// hello, so the members agree within a round trip.
		_ = a.nc.Publish(streams.AffinityHello, []byte(a.self))
	}
}

func (a *affinity) onBye(m *nats.Msg) { a.forget(string(m.Data)) }

// forget drops member id until its next hello.
func (a *affinity) forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.members[id]; ok {
		delete(a.members, id)
		a.live = nil
		a.log.Debug("affinity: member left", "member", id)
	}
}

// owner returns the live member that owns workflow id.
func (a *affinity) owner(id string) string {
	a.mu.Lock()
	if a.live == nil {
		now := a.now()
		a.live = append(a.live[:0], a.self)
		for m, seen := range a.members {
			if now.Sub(seen) <= affinityExpiry {
				a.live = append(a.live, m)
			} else {
				delete(a.members, m)
			}
		}
	}
	live := a.live
	a.mu.Unlock()
	if len(live) == 1 {
		return a.self
	}
	var best string
	var bestScore uint64
	for _, m := range live {
		h := fnv.New64a()
		h.Write([]byte(m))
		h.Write([]byte{'/'})
		h.Write([]byte(id))
		if s := mix64(h.Sum64()); best == "" || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

// mix64 spreads FNV's bits (murmur3's finalizer): FNV alone ranks members
// unevenly for IDs that differ in their last characters.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// forward hands delivery m of workflow id to its owner and reports true,
// or reports false when this process owns it. A forward that fails puts
// the delivery here.
func (a *affinity) forward(id string, m jetstream.Msg) bool {
	if a == nil || id == "" || m.Reply() == "" {
		return false
	}
	if md, err := m.Metadata(); err != nil || md.NumDelivered > 1 {
		// A redelivery: whoever took it before did not ack it within the
		// ack wait — the owner may be frozen, or stuck in a decision of
		// this very workflow. It is decided where it is pulled, as without
		// affinity; the fence settles a race with a late owner.
		return false
	}
	owner := a.owner(id)
	if owner == a.self {
		return false
	}
	fwd := &nats.Msg{Subject: streams.AffinityWake + "." + owner, Data: m.Data(), Header: nats.Header{}}
	for k, v := range m.Headers() {
		fwd.Header[k] = v
	}
	fwd.Header.Set(headerAffinityAck, m.Reply())
	fwd.Header.Set(headerAffinitySubject, m.Subject())
	a.stats.add(&a.stats.forwarded)
	go func() {
		if _, err := a.nc.RequestMsg(fwd, affinityForwardWait); err != nil {
			if errors.Is(err, nats.ErrNoResponders) {
				a.forget(owner)
			}
			a.stats.add(&a.stats.failed)
			a.log.Debug("affinity: forward failed, deciding here", "workflow_id", id, "owner", owner, "err", err)
			a.put(id, m)
		}
	}()
	return true
}

// onWake takes a delivery another process forwarded: it joins the
// scheduler as if this process had pulled it, and the sender gets a
// receipt.
func (a *affinity) onWake(m *nats.Msg) {
	ack, subject := m.Header.Get(headerAffinityAck), m.Header.Get(headerAffinitySubject)
	if !strings.HasPrefix(ack, "$JS.ACK.") || subject == "" {
		return // no receipt: the sender decides it
	}
	h := nats.Header{}
	for k, v := range m.Header {
		if k != headerAffinityAck && k != headerAffinitySubject {
			h[k] = v
		}
	}
	fm := &forwardedMsg{nc: a.nc, subject: subject, ack: ack, header: h, data: m.Data}
	id, _, _ := streams.ParseSubject(subject)
	a.stats.add(&a.stats.received)
	a.put(id, fm)
	_ = m.Respond(nil)
}

func (s *affinityStats) add(n *int) {
	s.mu.Lock()
	*n++
	s.mu.Unlock()
}

// forwardedMsg is a JetStream delivery received from the process that
// pulled it: acks go to the delivery's ack subject from this connection.
type forwardedMsg struct {
	nc      *nats.Conn
	subject string
	ack     string
	header  nats.Header
	data    []byte
}

var _ jetstream.Msg = (*forwardedMsg)(nil)

// Metadata parses the ack subject, as the jetstream package does:
// $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>, or
// with <domain>.<account hash> after $JS.ACK and a token at the end.
func (m *forwardedMsg) Metadata() (*jetstream.MsgMetadata, error) {
	t := strings.Split(m.ack, ".")
	var domain string
	switch {
	case len(t) == 9:
	case len(t) >= 11:
		domain = t[2]
		if domain == "_" {
			domain = ""
		}
		t = append(t[:2], t[4:]...)
	default:
		return nil, fmt.Errorf("ack subject %q: not a JetStream ack subject", m.ack)
	}
	// delivered, stream seq, consumer seq, timestamp, pending
	var n [5]uint64
	for i := range n {
		v, err := strconv.ParseUint(t[4+i], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ack subject %q: %w", m.ack, err)
		}
		n[i] = v
	}
	return &jetstream.MsgMetadata{
		Stream: t[2], Consumer: t[3], NumDelivered: n[0],
		Sequence:   jetstream.SequencePair{Stream: n[1], Consumer: n[2]},
		Timestamp:  time.Unix(0, int64(n[3])),
		NumPending: n[4], Domain: domain,
	}, nil
}

// Data returns the message body.
func (m *forwardedMsg) Data() []byte { return m.data }

// Headers returns the message headers.
func (m *forwardedMsg) Headers() nats.Header { return m.header }

// Subject returns the subject in the history stream.
func (m *forwardedMsg) Subject() string { return m.subject }

// Reply returns the ack subject.
func (m *forwardedMsg) Reply() string { return m.ack }

// Ack acknowledges the delivery.
func (m *forwardedMsg) Ack() error { return m.nc.Publish(m.ack, []byte("+ACK")) }

// DoubleAck acknowledges the delivery and waits for the server's answer.
func (m *forwardedMsg) DoubleAck(ctx context.Context) error {
	_, err := m.nc.RequestWithContext(ctx, m.ack, []byte("+ACK"))
	return err
}

// Nak asks for a redelivery now.
func (m *forwardedMsg) Nak() error { return m.nc.Publish(m.ack, []byte("-NAK")) }

// NakWithDelay asks for a redelivery after delay.
func (m *forwardedMsg) NakWithDelay(delay time.Duration) error {
	if delay <= 0 {
		return m.Nak()
	}
	return m.nc.Publish(m.ack, fmt.Appendf(nil, `-NAK {"delay": %d}`, delay.Nanoseconds()))
}

// InProgress resets the delivery's ack wait.
func (m *forwardedMsg) InProgress() error { return m.nc.Publish(m.ack, []byte("+WPI")) }

// Term stops the delivery for good.
func (m *forwardedMsg) Term() error { return m.nc.Publish(m.ack, []byte("+TERM")) }

// TermWithReason stops the delivery for good, with reason.
func (m *forwardedMsg) TermWithReason(reason string) error {
	return m.nc.Publish(m.ack, []byte("+TERM "+reason))
}
