// Package participants is the library for writing a jetflow participant
// service: a process that consumes the commands of one service ("payment",
// "inventory", ...) from the history stream, runs a handler per action and
// publishes each result back into the workflow's history.
//
// The library gives a handler exactly-once effects on top of JetStream's
// at-least-once delivery, as far as the handler's own effects are idempotent
// by Command.IdempotencyKey:
//
//   - The command's result subject in the history,
//     wf.<id>.res.<n>.<service>.<action>, takes one message: the result
//     stored there is the command's idempotency record. Every delivery
//     looks it up (one direct get) before the handler runs; a command
//     whose result is stored is acknowledged without running the handler
//     again.
//   - A final result is published expecting no message on its subject
//     (the first one stored wins; a later attempt's is refused and counts
//     as done), and the command is acknowledged only after the publish is
//     acknowledged, so a crash anywhere leads to a redelivery that either
//     reruns the handler (nothing was stored: the external system's
//     idempotency key makes it the same effect) or finds the result.
//   - Retries follow the command's retry policy: a retryable failure is
//     negatively acknowledged with the policy's backoff and counts an
//     attempt; the last allowed attempt, or a non-retryable error, publishes
//     a failure result.
//   - Messages that cannot be processed (undecodable, wrong kind, newer
//     schema, unknown action) go to the dead-letter stream with the reason;
//     they never block the consumer.
package participants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Command is one attempt at a command, as a handler sees it.
type Command struct {
	// WorkflowID is the workflow that issued the command.
	WorkflowID string
	// Service and Action name the step, e.g. "payment" and "charge".
	Service string
	Action  string
	// IdempotencyKey is unique per command and stable across redeliveries
	// and retries. Handlers pass it to the external systems they call.
	IdempotencyKey string
	// CommandID is the command's number in its workflow.
	CommandID int
	// Attempt is 1 on the first delivery and counts every redelivery,
	// whether a retry or the recovery of a crashed attempt.
	Attempt int
	// Compensation marks a command issued by a saga to undo a step.
	Compensation bool
	// Input is the msgpack-encoded argument; see Decode.
	Input schema.Raw
	// StartToClose bounds this attempt; the handler's context carries it as
	// a deadline.
	StartToClose time.Duration
	// Retry is the retry policy the workflow chose for the step.
	Retry schema.RetryPolicy
	// ScheduleToClose bounds the step's total time across attempts, from
	// when the command was recorded; 0: no bound. The handler's context
	// deadline is the earlier of this attempt's StartToClose and it.
	ScheduleToClose time.Duration
	// HeartbeatTimeout, when set, cancels the handler's context if it goes
	// that long without calling Heartbeat; the attempt fails as a
	// retryable "timeout".
	HeartbeatTimeout time.Duration

	// details are the heartbeat details an earlier attempt recorded.
	details schema.Raw
	// heartbeat records details for the next attempt.
	heartbeat func(ctx context.Context, details schema.Raw) error
}

// Decode decodes the command's input into v. An empty input leaves v
// untouched.
func (c *Command) Decode(v any) error { return schema.DecodeRaw(c.Input, v) }

// ErrNoHeartbeatDetails is returned by HeartbeatDetails when no earlier
// attempt of the command recorded any.
var ErrNoHeartbeatDetails = errors.New("participants: no heartbeat details recorded")

// Heartbeat records details, the progress of a long attempt (the last
// page copied, an offset), so that the next attempt of the same command,
// after a failure, a timeout or a crash, reads them with HeartbeatDetails
// and resumes where this one was. The details are stored in the
// idempotency bucket, next to the command's record, and acknowledged
// before Heartbeat returns; they are deleted once the command has its
// final result. Each call replaces the previous details; a nil details
// keeps them and only tells the library the handler is alive (see
// HeartbeatTimeout).
func (c *Command) Heartbeat(ctx context.Context, details any) error {
	if c.heartbeat == nil {
		return errors.New("participants: Heartbeat called outside a running attempt")
	}
	if details == nil {
		return c.heartbeat(ctx, nil)
	}
	raw, err := schema.EncodeRaw(details)
	if err != nil {
		return fmt.Errorf("participants: encode heartbeat details %T: %w", details, err)
	}
	return c.heartbeat(ctx, raw)
}

// HasHeartbeatDetails reports whether an earlier attempt recorded
// heartbeat details.
func (c *Command) HasHeartbeatDetails() bool { return len(c.details) > 0 }

// HeartbeatDetails decodes the details the latest earlier attempt
// recorded with Heartbeat into v, or returns ErrNoHeartbeatDetails.
func (c *Command) HeartbeatDetails(v any) error {
	if len(c.details) == 0 {
		return ErrNoHeartbeatDetails
	}
	return schema.DecodeRaw(c.details, v)
}

// Handler performs one action of a service. The value it returns is the
// step's output (encoded with msgpack); the error, if any, is classified with
// NonRetryable, Retryable, RetryAfter and ErrCrash.
//
// A handler may run more than once for one command (after a crash, or when
// retried), so its effects must be idempotent by cmd.IdempotencyKey.
type Handler interface {
	Handle(ctx context.Context, cmd *Command) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, cmd *Command) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, cmd *Command) (any, error) { return f(ctx, cmd) }

// Service is a participant service: its name and a handler per action.
type Service struct {
	// Name is the service token of the command subjects, e.g. "payment".
	Name string
	// Handlers maps an action ("charge") to its handler.
	Handlers map[string]Handler
	// Background lists work that runs beside the commands for as long as
	// Run does, each in a goroutine of its own with Run's logger: a
	// system's callbacks sent when due, a webhook listener. Each returns
	// once ctx is done, or nil when it has nothing to do; one that returns
	// an error before is logged and started again after a pause.
	Background []func(ctx context.Context, log *slog.Logger) error
}

// Config configures Run.
type Config struct {
	// NC is the connection. Optional when JS is set.
	NC *nats.Conn
	// JS is the JetStream context. Default: jetstream.New(NC).
	JS jetstream.JetStream
	// Logger receives the service's log. Default: discarded.
	Logger *slog.Logger
	// AckWait is how long JetStream waits for an acknowledgement before it
	// redelivers a command; it is how fast a crashed attempt is resumed.
	// While a handler runs the library reports progress every AckWait/3.
	// Default 30s.
	AckWait time.Duration
	// Concurrency is the number of commands handled at once; it is also the
	// consumer's MaxAckPending. Default 256.
	Concurrency int
	// MaxDeliver bounds the deliveries of one command, and so its attempts:
	// every retry, AckWait that ran out and crash counts one. The delivery
	// that reaches it is not handled: the command is dead-lettered
	// (dlq.cmd.<service>, reason "crashed or timed out N deliveries") and
	// answered with a final KindUndeliverable failure, so a retry policy
	// gets at most MaxDeliver-1 attempts, and one with MaxAttempts 0
	// (unlimited) or more ends there. At least 2. Default
	// streams.DefaultParticipantMaxDeliver (100).
	MaxDeliver int
	// Metrics receives the service's metrics: step latency and attempts,
	// dead letters, readiness (internal/metrics). Default: none.
	Metrics *metrics.Metrics
}

// Defaults of Config.
const (
	// DefaultAckWait is the AckWait of a zero Config.
	DefaultAckWait = 30 * time.Second
	// DefaultConcurrency is the Concurrency of a zero Config.
	DefaultConcurrency = 256
	// defaultStartToClose bounds an attempt whose command sets none.
	defaultStartToClose = 10 * time.Second
	// busyDelay is the redelivery delay when the command cannot be processed
	// right now: another worker holds it, or a JetStream write failed.
	busyDelay = time.Second
	// finishTimeout bounds the writes that record and publish a result.
	finishTimeout = 10 * time.Second
)

// Run consumes the commands of svc until ctx is done. It creates or updates
// the service's durable consumer, handles each command in its own goroutine
// (at most cfg.Concurrency at once) and, when ctx is done, cancels the
// handlers still running, waits for them and returns nil. It returns an
// error only when it cannot start.
func Run(ctx context.Context, cfg Config, svc Service) error {
	if err := streams.ValidToken(svc.Name); err != nil {
		return fmt.Errorf("participants: service name: %w", err)
	}
	for action, h := range svc.Handlers {
		if err := streams.ValidToken(action); err != nil {
			return fmt.Errorf("participants: %s: action name: %w", svc.Name, err)
		}
		if h == nil {
			return fmt.Errorf("participants: %s.%s: nil handler", svc.Name, action)
		}
	}
	js := cfg.JS
	if js == nil {
		if cfg.NC == nil {
			return errors.New("participants: Config needs NC or JS")
		}
		var err error
		if js, err = jetstream.New(cfg.NC); err != nil {
			return fmt.Errorf("participants: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ackWait := cfg.AckWait
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	maxDeliver := cfg.MaxDeliver
	switch {
	case maxDeliver == 0:
		maxDeliver = streams.DefaultParticipantMaxDeliver
	case maxDeliver < 2:
		return fmt.Errorf("participants: %s: MaxDeliver %d: must be at least 2 (0 for the default, %d)", svc.Name, maxDeliver, streams.DefaultParticipantMaxDeliver)
	}
	log = log.With("service", svc.Name)

	// A server that is away at start is waited for (streams.Await).
	var kv jetstream.KeyValue
	err := streams.AwaitTopology(ctx, log, "open the idempotency bucket", func(ctx context.Context) (err error) {
		kv, err = js.KeyValue(ctx, streams.IdempotencyBucket)
		return err
	})
	if err != nil || kv == nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("participants: %s: idempotency bucket: %w", svc.Name, err)
	}
	// Failed attempts are noted for `jetflow show` when the bucket exists
	// (an orchestrator of this version creates it); without it, commands
	// are retried the same, unnoted.
	attempts, err := js.KeyValue(ctx, streams.AttemptsBucket)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("no attempts bucket: failed attempts will not be shown", "bucket", streams.AttemptsBucket, "err", err)
		attempts = nil
	}
	consCfg := streams.ParticipantConsumerConfig(svc.Name, ackWait, conc, maxDeliver)
	// One consumer per stream of the history (one, unless it is
	// partitioned).
	var conss []jetstream.Consumer
	err = streams.AwaitTopology(ctx, log, "create the consumer", func(ctx context.Context) (err error) {
		conss, err = streams.HistoryConsumers(ctx, js, consCfg)
		return err
	})
	if err != nil || len(conss) == 0 {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("participants: %s: consumer: %w", svc.Name, err)
	}

	// Handlers are cancelled only once the pull subscription is gone: a
	// command they hand back (Nak) on the way out is then redelivered to the
	// next instance at once, not into this one's stopped iterator where it
	// would wait out AckWait.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &worker{js: js, kv: kv, attempts: attempts, svc: svc, log: log, ackWait: ackWait, maxDeliver: maxDeliver, runCtx: hctx}
	w.metrics = cfg.Metrics
	stopWatch, err := w.watchCancels()
	if err != nil {
		hcancel()
		return err
	}
	defer stopWatch()
	cfg.Metrics.SetReady("participant-"+svc.Name, true)
	defer cfg.Metrics.SetReady("participant-"+svc.Name, false)
	var wg sync.WaitGroup
	defer func() {
		hcancel()
		wg.Wait()
	}()
	for _, bg := range svc.Background {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runBackground(ctx, log, bg)
		}()
	}
	sem := make(chan struct{}, conc)
	log.Info("participant started", "consumer", consCfg.Durable, "ack_wait", ackWait, "concurrency", conc, "max_deliver", maxDeliver, "history_streams", len(conss))
	// The streams' consumers share the concurrency: each pulls its share
	// ahead, so no more commands wait in this process than one stream's
	// consumer would hold.
	pull := max(1, conc/len(conss))
	var loops sync.WaitGroup
	for _, cons := range conss {
		loops.Add(1)
		go func() {
			defer loops.Done()
			w.consumeStream(ctx, js, cons, consCfg, pull, len(conss) > 1, sem, &wg)
		}()
	}
	loops.Wait()
	log.Info("participant stopping")
	return nil
}

// consumeStream consumes one history stream's commands until ctx is done,
// making its consumer anew whenever the pull is interrupted.
func (w *worker) consumeStream(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, consCfg jetstream.ConsumerConfig, pull int, shared bool, sem chan struct{}, wg *sync.WaitGroup) {
	stream := cons.CachedInfo().Stream
	for {
		err := w.consume(ctx, cons, pull, shared, sem, wg)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("consumer interrupted, resuming", "stream", stream, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(busyDelay):
		}
		if c, err := js.CreateOrUpdateConsumer(ctx, stream, consCfg); err != nil {
			w.log.Warn("recreate consumer", "stream", stream, "err", err)
		} else {
			cons = c
		}
	}
}

// runBackground runs bg until ctx is done or it returns nil, again after
// a pause whenever it fails.
func runBackground(ctx context.Context, log *slog.Logger, bg func(context.Context, *slog.Logger) error) {
	for {
		err := bg(ctx, log)
		if err == nil || ctx.Err() != nil {
			return
		}
		log.Warn("background work stopped, starting it again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(busyDelay):
		}
	}
}

// consume pulls messages until ctx is done or the iterator fails, handing
// each to its own goroutine once a concurrency slot is free.
//
// With one stream a slot is taken before the next message. Several
// streams share the slots: each takes one once it holds a message, or a
// stream with none would hold a slot another stream's command is waiting
// for; a message that meets the end of ctx is handed back at once.
func (w *worker) consume(ctx context.Context, cons jetstream.Consumer, pull int, shared bool, sem chan struct{}, wg *sync.WaitGroup) error {
	iter, err := cons.Messages(jetstream.PullMaxMessages(pull))
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			stopIterator(iter)
		}
	}()
	for {
		var msg jetstream.Msg
		if shared {
			if msg, err = iter.Next(jetstream.NextContext(ctx)); err != nil {
				return err
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			if msg != nil {
				// The pull first: a command handed back while this
				// iterator still pulls could be redelivered into it, and
				// wait out AckWait there.
				stopIterator(iter)
				stopped = true
				_ = msg.Nak()
			}
			return ctx.Err()
		}
		if !shared {
			if msg, err = iter.Next(jetstream.NextContext(ctx)); err != nil {
				<-sem
				return err
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w.handle(msg)
		}()
	}
}

// stopIterator stops a pull iterator and waits, briefly, until its
// subscription is gone from the connection, so that anything published on
// the connection afterwards reaches the server after the unsubscribe.
func stopIterator(iter jetstream.MessagesContext) {
	iter.Stop()
	c, ok := iter.(interface{ Closed() <-chan struct{} })
	if !ok {
		return
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-c.Closed():
	case <-t.C:
	}
}
