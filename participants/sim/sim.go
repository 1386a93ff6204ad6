// Package sim simulates the external systems the reference participants
// call: a payment gateway, a warehouse, a carrier, a mail service. Each
// system is a ledger in a JetStream key-value bucket that records every
// effect once per idempotency key, the way a real gateway honours an
// idempotency key, so tests and demos can check that a saga charged,
// refunded, reserved and released exactly what it should.
//
// The package also holds the fault model of the reference participants:
// global fault rates decided by a deterministic hash of the order, and the
// per-order simulate strings.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Item is a line of an order: a stock-keeping unit and a quantity.
type Item struct {
	SKU string `msgpack:"sku" json:"sku"`
	Qty int    `msgpack:"qty" json:"qty"`
}

// Effect is one change an external system made.
type Effect struct {
	// IdempotencyKey is the key the effect was requested with; the system
	// applies each key once.
	IdempotencyKey string `msgpack:"idempotency_key" json:"idempotency_key"`
	OrderID        string `msgpack:"order_id" json:"order_id"`
	// System is the name of the system ("payment", ...).
	System string `msgpack:"system" json:"system"`
	// Kind is what happened: "charge", "refund", "reserve", "release",
	// "shipment", "cancel", "notify".
	Kind        string `msgpack:"kind" json:"kind"`
	AmountCents int64  `msgpack:"amount_cents,omitempty" json:"amount_cents,omitempty"`
	Currency    string `msgpack:"currency,omitempty" json:"currency,omitempty"`
	Items       []Item `msgpack:"items,omitempty" json:"items,omitempty"`
	// Ref is the system's identifier of the effect (charge ID, ...).
	Ref string `msgpack:"ref,omitempty" json:"ref,omitempty"`
	// Time is when the effect was first applied.
	Time time.Time `msgpack:"time" json:"time"`
}

// System is a simulated external system backed by its ledger bucket.
type System struct {
	name string
	kv   jetstream.KeyValue
	js   jetstream.JetStream
	cb   jetstream.JetStream
	// scheduled is closed once this process scheduled a callback.
	scheduled     chan struct{}
	scheduledOnce sync.Once
	// attempts bounds the sends of a due callback (CallbackAttempts);
	// streams.CallbackMaxDeliver by default.
	attempts uint64
}

// Open creates or updates the ledger bucket of system name and returns the
// system.
func Open(ctx context.Context, js jetstream.JetStream, name string, topo streams.Topology) (*System, error) {
	if err := streams.ValidToken(name); err != nil {
		return nil, fmt.Errorf("sim: system name: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, topo.LedgerConfig(name))
	if err != nil {
		return nil, fmt.Errorf("sim: open ledger %s: %w", name, err)
	}
	return &System{name: name, kv: kv, js: js, cb: js, scheduled: make(chan struct{}), attempts: streams.CallbackMaxDeliver}, nil
}

// CallbackAttempts bounds the deliveries in which a due callback's signal
// is sent before it is given up to the dead letters: n (at least 1)
// instead of streams.CallbackMaxDeliver, about two hours of retries. It
// returns s.
func (s *System) CallbackAttempts(n int) *System {
	s.attempts = uint64(max(n, 1))
	return s
}

// Name returns the system's name.
func (s *System) Name() string { return s.name }

// CallbacksVia makes the system send its callbacks through js, the
// connection of the external party that calls back (the payment gateway,
// the carrier), when it is not the participant's own: on a server with
// permissions only that party may send its signals. It returns s.
func (s *System) CallbacksVia(js jetstream.JetStream) *System {
	s.cb = js
	return s
}

// KindBlocked is the kind of the record Settle leaves under the key of an
// effect that was never made: the key is taken, so the effect never will be.
const KindBlocked = "blocked"

// ErrBlocked is what Apply returns for an effect whose key a Settle took
// first: the step that asked for it was given up and compensated. It is a
// final failure of kind "blocked" to a participant.
var ErrBlocked error = &finalError{kind: KindBlocked, msg: "sim: the effect's key was settled as never made"}

// ErrNotOwnKey is what SettleFor returns for a key that is not one of the
// asking workflow's own commands, or whose effect is another order's: a
// final "bad_request" to a participant.
var ErrNotOwnKey error = &finalError{kind: "bad_request", msg: "sim: the key is not one of the workflow's own steps"}

// finalError is an error a participant reports as a final failure of its
// kind (participants reads FailureKind).
type finalError struct{ kind, msg string }

func (e *finalError) Error() string               { return e.msg }
func (e *finalError) FailureKind() (string, bool) { return e.kind, true }

// Settle resolves the outcome of an effect the caller asked for under key
// and never heard back about (its attempt timed out): it returns the
// effect recorded under key, or, when there is none, takes the key with a
// KindBlocked record, so a late attempt of that effect is refused
// (ErrBlocked) instead of made. Either way the answer is final: the key is
// written once. This is how a gateway's "cancel by idempotency key" ends an
// unknown outcome.
func (s *System) Settle(ctx context.Context, key, orderID string) (Effect, error) {
	e, _, err := s.Apply(ctx, Effect{IdempotencyKey: key, OrderID: orderID, Kind: KindBlocked})
	return e, err
}

// SettleFor is Settle for a compensation of workflow (history ID)
// workflowID: key must be one of that workflow's own commands
// ("<workflowID>.<n>", the idempotency key the engine gave the step), and
// the effect under it of orderID and of one of kinds (the step's: a
// refund undoes a charge, never another refund), or it fails with
// ErrNotOwnKey, so a compensation never undoes another order's effect or
// the wrong one. made reports whether an effect was there to undo (false:
// the key is now blocked).
func (s *System) SettleFor(ctx context.Context, workflowID, key, orderID string, kinds ...string) (e Effect, made bool, err error) {
	n, ok := strings.CutPrefix(key, workflowID+".")
	if _, perr := strconv.ParseUint(n, 10, 32); !ok || perr != nil {
		return Effect{}, false, fmt.Errorf("%w: %q for workflow %s", ErrNotOwnKey, key, workflowID)
	}
	if e, err = s.Settle(ctx, key, orderID); err != nil {
		return Effect{}, false, err
	}
	if e.OrderID != orderID {
		return Effect{}, false, fmt.Errorf("%w: %q is order %s's", ErrNotOwnKey, key, e.OrderID)
	}
	if e.Kind == KindBlocked {
		return e, false, nil
	}
	if !slices.Contains(kinds, e.Kind) {
		return Effect{}, false, fmt.Errorf("%w: %q is a %s, not a %s", ErrNotOwnKey, key, e.Kind, strings.Join(kinds, " or "))
	}
	return e, true, nil
}

// Apply applies e once per e.IdempotencyKey. The first call for a key
// records e (with System and Time filled in when empty) and returns it with
// first true; every later call returns the recorded effect, unchanged, with
// first false.
func (s *System) Apply(ctx context.Context, e Effect) (Effect, bool, error) {
	key, err := LedgerKey(e.IdempotencyKey)
	if err != nil {
		return Effect{}, false, err
	}
	if e.System == "" {
		e.System = s.name
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	val, err := schema.Msgpack.Marshal(e)
	if err != nil {
		return Effect{}, false, fmt.Errorf("sim: encode effect: %w", err)
	}
	if _, err := s.kv.Create(ctx, key, val); err == nil {
		return e, true, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return Effect{}, false, fmt.Errorf("sim: %s: apply %s: %w", s.name, key, err)
	}
	entry, err := s.kv.Get(ctx, key)
	if err != nil {
		return Effect{}, false, fmt.Errorf("sim: %s: read %s: %w", s.name, key, err)
	}
	var first Effect
	if err := schema.Msgpack.Unmarshal(entry.Value(), &first); err != nil {
		return Effect{}, false, fmt.Errorf("sim: %s: decode %s: %w", s.name, key, err)
	}
	if first.Kind == KindBlocked && e.Kind != KindBlocked {
		return Effect{}, false, fmt.Errorf("%w: %s %s", ErrBlocked, e.Kind, e.IdempotencyKey)
	}
	return first, false, nil
}

// List returns the effects recorded by system, those of orderID only unless
// orderID is "", sorted by time and then idempotency key. A system whose
// ledger does not exist yet has no effects.
func List(ctx context.Context, js jetstream.JetStream, system, orderID string) ([]Effect, error) {
	kv, err := js.KeyValue(ctx, streams.LedgerBucketPrefix+system)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sim: ledger %s: %w", system, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("sim: list %s: %w", system, err)
	}
	defer func() { _ = w.Stop() }()
	var out []Effect
	for {
		var entry jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("sim: list %s: watcher closed", system)
			}
			entry = e
		}
		if entry == nil {
			break
		}
		var e Effect
		if err := schema.Msgpack.Unmarshal(entry.Value(), &e); err != nil {
			return nil, fmt.Errorf("sim: %s: decode %s: %w", system, entry.Key(), err)
		}
		if orderID == "" || e.OrderID == orderID {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].Time.Equal(out[b].Time) {
			return out[a].Time.Before(out[b].Time)
		}
		return out[a].IdempotencyKey < out[b].IdempotencyKey
	})
	return out, nil
}

// LedgerKey maps an idempotency key to a valid, distinct key-value key:
// letters, digits, '-', '_' and inner single dots are kept; every other
// byte is written as =XX (hex).
func LedgerKey(idempotencyKey string) (string, error) {
	if idempotencyKey == "" {
		return "", errors.New("sim: empty idempotency key")
	}
	var b strings.Builder
	s := idempotencyKey
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && i > 0 && i < len(s)-1 && s[i-1] != '.':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String(), nil
}

// Ref derives a stable identifier for an effect from its idempotency key,
// e.g. Ref("ch", key) = "ch_3f2a9c0d1e4b5a67".
func Ref(prefix, idempotencyKey string) string {
	h := fnv.New64a()
	h.Write([]byte(idempotencyKey))
	return fmt.Sprintf("%s_%016x", prefix, h.Sum64())
}

// Faults are the global fault rates of the reference participants, e.g.
// from `jetflow dev --payment-decline-rate 0.1`.
type Faults struct {
	// PaymentDeclineRate is the share of orders whose charge is declined.
	PaymentDeclineRate float64
	// OutOfStockRate is the share of orders whose reservation fails.
	OutOfStockRate float64
	// ShippingFailRate is the share of orders the carrier rejects.
	ShippingFailRate float64
	// Latency is how long every handler waits before it acts.
	Latency time.Duration
	// PickupDelay is how long after a shipment is created the simulated
	// carrier signals carrier.picked_up (0: at once).
	PickupDelay time.Duration
}

// Wait waits f.Latency, or until ctx is done (then it returns ctx.Err()).
func (f Faults) Wait(ctx context.Context) error {
	if f.Latency <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(f.Latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Hit reports whether a fault of the given rate strikes orderID in system.
// The decision is a deterministic hash of (orderID, system), so every
// delivery and retry of the order's commands decides the same.
func Hit(rate float64, orderID, system string) bool {
	if rate <= 0 {
		return false
	}
	if rate >= 1 {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(orderID))
	h.Write([]byte{0})
	h.Write([]byte(system))
	return float64(h.Sum64()>>11)/float64(1<<53) < rate
}

// Failing reports whether simulate asks this attempt to fail retryably:
// "fail_always" on every attempt, "fail_n:N" on attempts 1 to N.
func Failing(simulate string, attempt int) bool {
	if simulate == "fail_always" {
		return true
	}
	if n, ok := strings.CutPrefix(simulate, "fail_n:"); ok {
		limit, err := strconv.Atoi(n)
		return err == nil && attempt <= limit
	}
	return false
}

// Callback makes the system call back a workflow later, as a real gateway or
// carrier does: it sends signal name to workflowID after delay, with payload
// as JSON. A delayed callback is a server-side message schedule in the
// system's callbacks stream (streams.CallbacksStream), so it survives
// restarts of every process. Sending it again for the same workflow and
// name (a retried step) is a duplicate within the duplicate window and
// replaces the earlier schedule after it. ForwardCallbacks sends it as the
// signal when it is due.
func (s *System) Callback(ctx context.Context, name, workflowID string, delay time.Duration, payload any) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	var m *nats.Msg
	if delay <= 0 {
		m = nats.NewMsg(streams.SignalSubject(name, workflowID))
	} else {
		m = nats.NewMsg(streams.CallbackAtSubject(s.name, workflowID, name))
		m.Header.Set("Nats-Schedule", "@at "+time.Now().Add(delay).UTC().Format(time.RFC3339Nano))
		m.Header.Set("Nats-Schedule-Target", streams.CallbackDueSubject(s.name, workflowID, name))
	}
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, callbackMsgID(workflowID, name))
	if _, err := s.cb.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("sim: schedule %s for %s: %w", name, workflowID, err)
	}
	if delay > 0 {
		s.scheduledOnce.Do(func() { close(s.scheduled) })
	}
	return nil
}

func callbackMsgID(workflowID, name string) string { return "callback-" + workflowID + "-" + name }

// ForwardCallbacks sends each due callback of the system as its signal,
// through the calling party's connection (CallbacksVia), until ctx is
// done. The callbacks stream is made by streams.Ensure. The forwarder
// starts once there is something to forward: this process scheduled a
// callback, or the stream holds one (looked at every few seconds). A
// participant under permissions without the calling party's credentials
// can schedule none, so it never tries to consume what its role may not.
//
// A due callback is checked against the schedule it must come from: the
// server does not check a schedule's target (Nats-Schedule-Target)
// against the scheduler's permissions, only its subject, so a callback
// due on callback.<system>.due.<id>.<name> is sent only when the server
// says it fired from callback.<system>.at.<id>.<name>; any other goes to
// the dead letters (dlq.callback.<system>). A send that fails is retried
// with a growing delay, up to streams.CallbackMaxDeliver deliveries
// (about two hours; CallbackAttempts), then dead-lettered. The signal carries the
// schedule's message ID, so a send repeated soon after a lost
// acknowledgement (within the signals' duplicate window) is one signal.
func (s *System) ForwardCallbacks(ctx context.Context, log *slog.Logger) error {
	stream := streams.CallbacksStream(s.name)
	log = log.With("stream", stream)
	scheduled := s.scheduled
	for {
		str, err := s.js.Stream(ctx, stream)
		if err == nil && str.CachedInfo().State.Msgs > 0 {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-scheduled:
			scheduled = nil // once: then by the stream's content
		case <-time.After(callbackStreamPoll):
		}
	}
	cons, err := s.cb.CreateOrUpdateConsumer(ctx, stream, streams.CallbackConsumerConfig(s.name))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("sim: callbacks consumer: %w", err)
	}
	// Few at a time: each is forwarded before the next, and every one
	// pulled must be answered within the consumer's AckWait.
	iter, err := cons.Messages(jetstream.PullMaxMessages(callbackBatch))
	if err != nil {
		return fmt.Errorf("sim: callbacks consumer: %w", err)
	}
	defer iter.Stop()
	for {
		m, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sim: callbacks: %w", err)
		}
		s.forward(ctx, log, m)
	}
}

// Pacing of ForwardCallbacks.
const (
	// callbackStreamPoll is how often a forwarder that has not started
	// looks for callbacks in its stream.
	callbackStreamPoll = 5 * time.Second
	// callbackBatch callbacks are pulled at once; with callbackSendTimeout
	// each, they are answered well within the consumer's AckWait.
	callbackBatch       = 4
	callbackSendTimeout = 5 * time.Second
)

// forward sends one due callback as its signal.
func (s *System) forward(ctx context.Context, log *slog.Logger, m jetstream.Msg) {
	id, name, ok := streams.ParseCallbackDue(s.name, m.Subject())
	if !ok {
		s.giveUp(ctx, log, m, "not a due callback's subject (callback."+s.name+".due.<workflow id>.<signal>)")
		return
	}
	if by, want := m.Headers().Get(streams.HeaderScheduler), streams.CallbackAtSubject(s.name, id, name); by != want {
		s.giveUp(ctx, log, m, fmt.Sprintf("callback %s for %s was scheduled by %q: a due callback must come from %s", name, id, by, want))
		return
	}
	sig := nats.NewMsg(streams.SignalSubject(name, id))
	sig.Data = m.Data()
	sig.Header.Set(jetstream.MsgIDHeader, callbackMsgID(id, name))
	pctx, cancel := context.WithTimeout(ctx, callbackSendTimeout)
	_, err := s.cb.PublishMsg(pctx, sig)
	cancel()
	if err == nil {
		_ = m.Ack()
		return
	}
	if ctx.Err() != nil {
		// Stopping: the next forwarder takes it.
		_ = m.Nak()
		return
	}
	md, mdErr := m.Metadata()
	if mdErr != nil {
		s.giveUp(ctx, log, m, fmt.Sprintf("its signal could not be sent (%v), and its delivery count is unreadable: %v", err, mdErr))
		return
	}
	if md.NumDelivered >= s.attempts {
		s.giveUp(ctx, log, m, fmt.Sprintf("its signal could not be sent in %d deliveries: %v", md.NumDelivered, err))
		return
	}
	delay := callbackRetryDelay(md)
	log.Warn("callback: its signal could not be sent, retrying", "subject", m.Subject(), "in", delay, "err", err)
	_ = m.NakWithDelay(delay)
}

// giveUp takes a callback that will not be sent out of the stream, into
// the dead letters (dlq.callback.<system>) with its reason. A dead letter
// that cannot be written is retried with the callback, but for its last
// delivery, which is logged and dropped.
func (s *System) giveUp(ctx context.Context, log *slog.Logger, m jetstream.Msg, reason string) {
	log.Error("callback not sent", "subject", m.Subject(), "reason", reason)
	if err := streams.DeadLetter(ctx, s.cb, streams.CallbackOrigin(s.name), m, reason); err != nil {
		if md, _ := m.Metadata(); ctx.Err() != nil || md != nil && md.NumDelivered < s.attempts {
			_ = m.NakWithDelay(callbackRetryDelay(md))
			return
		}
		log.Error("callback dropped: its dead letter could not be written", "subject", m.Subject(), "err", err)
	}
	_ = m.Term()
}

// callbackRetryDelay is the wait before delivery n+1 of a callback whose
// signal could not be sent: 2 s, doubling to a minute from the 6th on, so
// the streams.CallbackMaxDeliver deliveries span about two hours of outage
// and each comes within the signals' duplicate window of the one before.
func callbackRetryDelay(md *jetstream.MsgMetadata) time.Duration {
	n := uint64(1)
	if md != nil {
		n = md.NumDelivered
	}
	if n > 5 {
		return time.Minute
	}
	return min(2*time.Second<<(n-1), time.Minute)
}
