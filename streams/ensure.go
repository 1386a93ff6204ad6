package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Topology says how the streams are laid out. The zero value is a single
// server with file storage.
type Topology struct {
	// Replicas of every stream and bucket: 1 on one server, 3 on a cluster.
	// Default 1.
	Replicas int
	// DuplicateWindow of the history stream: how long a Nats-Msg-Id is
	// remembered for publish retries. Default 2 minutes.
	DuplicateWindow time.Duration
	// MaxMsgSize refuses larger messages at the server. Default 1 MiB.
	MaxMsgSize int32
	// ArchiveMaxAge is how long an archived history is kept in
	// ArchiveStream; an ID is refused for reuse while its archive record
	// is kept. 0 keeps records for ever (the jetflow binary's
	// --archive-retention defaults to 90 days).
	ArchiveMaxAge time.Duration
	// ArchiveMaxBytes bounds ArchiveStream's size: the oldest records go
	// first. 0: no bound.
	ArchiveMaxBytes int64
	// OrdersMaxBytes bounds OrdersStream, where anyone permitted may
	// publish an order: a publish that would pass the bound is refused
	// ("maximum bytes exceeded") and what was accepted stays. A flood of
	// orders then fills its own stream, not the storage the histories are
	// written to. 0: no bound (the jetflow binary's --orders-max-bytes).
	// The server reserves a bound against its JetStream storage when it
	// makes or updates the stream, and refuses one it cannot reserve:
	// Ensure's error then names the bound.
	OrdersMaxBytes int64
	// SignalsMaxBytes bounds SignalsStream the same way: a signal that
	// would pass the bound is refused ("maximum bytes exceeded") and every
	// signal accepted stays until it is recorded, so a flood of signals
	// fills its own stream. 0: no bound (the binary's --signals-max-bytes).
	// A signals stream made by a version before the callbacks streams
	// allows message schedules, which the server refuses on a stream that
	// discards new messages: it keeps no bound (SignalsRollupExposed says
	// so), since dropping old signals would lose those not yet recorded.
	SignalsMaxBytes int64
	// DeadLetterMaxBytes bounds DeadLetterStream: past it the oldest dead
	// letters are dropped (each names the original, which stays in its own
	// stream until that ages out). 0: no bound (the binary's
	// --dead-letter-max-bytes).
	DeadLetterMaxBytes int64
	// LedgerTTL is how long a simulated system's ledger keeps an effect.
	// 0 keeps them for ever (the binary's --ledger-ttl defaults to 30
	// days, well above reconciliation's 24 h look-back).
	LedgerTTL time.Duration
	// CallbackSystems are the simulated systems that call workflows back
	// later; Ensure makes a callbacks stream for each (CallbacksConfig).
	// nil: CallbackSystems, the reference payment gateway and carrier.
	CallbackSystems []string
	// HistoryPartitions spreads the histories over this many streams
	// (JETFLOW_HISTORY_0 …), each workflow in the one its ID hashes to, so
	// their write loops, and their fsyncs, run side by side. 0 keeps the
	// layout the server has (a new deployment gets the single
	// HistoryStream); 1 asks for the single stream. A history keeps the
	// layout it was made with: Ensure refuses another.
	HistoryPartitions int
}

// CallbackSystems are the reference application's systems that call back:
// the payment gateway's late settlement, the carrier's pickup.
var CallbackSystems = []string{"payment", "shipping"}

func (t Topology) withDefaults() Topology {
	if t.Replicas <= 0 {
		t.Replicas = 1
	}
	if t.DuplicateWindow <= 0 {
		t.DuplicateWindow = 2 * time.Minute
	}
	if t.MaxMsgSize <= 0 {
		t.MaxMsgSize = 1 << 20
	}
	if t.CallbackSystems == nil {
		t.CallbackSystems = CallbackSystems
	}
	return t
}

// StreamConfigs returns the configuration of every jetflow stream.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	t = t.withDefaults()
	history := jetstream.StreamConfig{
		Name:        HistoryStream,
		Description: "jetflow workflow histories: wf.<workflow id>.>",
		Subjects:    []string{"wf.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
		// A TTL would make an expected-last-subject-sequence of 0 valid
		// again behind a workflow's back: histories are never deleted or
		// aged out by the server. Only the archiver purges, a finished
		// workflow's tree up to the last sequence it archived
		// (orchestrator/archive.go; docs/ARCHITECTURE.md, "Retention and
		// archival", says why the fences hold on a purged tree).
		DenyDelete: true,
		// Every event has a subject of its own and is written once: the
		// server refuses a second message on a subject, whoever sends it
		// (a plain publish bypasses the engine's expected-sequence
		// fence), so the first event on a subject stays the fact that
		// every read returns.
		MaxMsgsPerSubject:    1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		AllowDirect:          true,
		Duplicates:           t.DuplicateWindow,
		MaxMsgSize:           t.MaxMsgSize,
	}
	histories := []jetstream.StreamConfig{history}
	if k := t.HistoryPartitions; k > 1 {
		histories = histories[:0]
		for p := range k {
			histories = append(histories, historyPartitionConfig(history, p, k))
		}
	}
	var indexSources []*jetstream.StreamSource
	for _, h := range histories {
		indexSources = append(indexSources, &jetstream.StreamSource{
			Name: h.Name,
			SubjectTransforms: []jetstream.SubjectTransformConfig{
				// A first end, wf.<id>.done.<status>, and an end after an
				// operator's retry, wf.<id>.done.<status>.<retry seq>.
				{Source: "wf.*." + tokDone + ".*", Destination: IndexPrefix + "." + tokDone + ".{{wildcard(2)}}"},
				{Source: "wf.*." + tokDone + ".*.*", Destination: IndexPrefix + "." + tokDone + ".{{wildcard(2)}}"},
				{Source: BlockedFilter, Destination: IndexBlockedSubject},
			},
		})
	}
	cfgs := append(histories, []jetstream.StreamConfig{
		{
			Name:        OrdersStream,
			Description: "jetflow intake: orders waiting to be started",
			Subjects:    []string{OrderCreated},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			MaxAge:      7 * 24 * time.Hour,
			MaxBytes:    orDefault64(t.OrdersMaxBytes, -1),
			Discard:     jetstream.DiscardNew,
			AllowDirect: true,
			Duplicates:  t.DuplicateWindow,
			MaxMsgSize:  t.MaxMsgSize,
		},
		{
			Name:        SignalsStream,
			Description: "jetflow signals: signal.<name>.<workflow id>, waiting to be recorded",
			Subjects:    []string{SignalPrefix + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			MaxAge:      30 * 24 * time.Hour,
			MaxBytes:    orDefault64(t.SignalsMaxBytes, -1),
			Discard:     jetstream.DiscardNew,
			AllowDirect: true,
			// No message schedules and no roll-ups: the server refuses a
			// signal with a Nats-Rollup header, which would otherwise purge
			// the signals not yet recorded. Scheduled callbacks have
			// streams of their own (CallbacksConfig).
			Duplicates: t.DuplicateWindow,
			MaxMsgSize: t.MaxMsgSize,
		},
		{
			Name:        IndexStream,
			Description: "jetflow index: the end and blocked events of the histories, one subject per status (ix.done.<status>, ix.blocked)",
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			AllowDirect: true,
			// Kept by the server: it sources the history streams through
			// subject transforms, in each one's order, from the first
			// message (a new index is filled from the whole history).
			// Deleted, it is rebuilt the same by the next Ensure.
			Sources: indexSources,
		},
		{
			Name:        DeadLetterStream,
			Description: "jetflow dead letters: every refused message with its reason",
			Subjects:    []string{DeadLetterPrefix + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			MaxBytes:    orDefault64(t.DeadLetterMaxBytes, -1),
			Discard:     jetstream.DiscardOld,
			AllowDirect: true,
			// A dead letter carries the refused body, which may itself be at
			// the size limit, plus headers.
			MaxMsgSize: t.MaxMsgSize + 64<<10,
		},
		t.archiveConfig(),
	}...)
	for _, sys := range t.CallbackSystems {
		cfgs = append(cfgs, t.CallbacksConfig(sys))
	}
	return cfgs
}

// CallbacksConfig is the configuration of the stream of system's scheduled
// callbacks (CallbacksStream). It is a work queue: a due callback leaves
// once forwarded as a signal and acknowledged, and a schedule leaves when
// it fires, so the stream holds only what is pending. Ensure makes it (the
// roles that schedule and forward callbacks may not make or change a
// stream), before any process could claim its subjects.
func (t Topology) CallbacksConfig(system string) jetstream.StreamConfig {
	t = t.withDefaults()
	return jetstream.StreamConfig{
		Name:        CallbacksStream(system),
		Description: "simulated " + system + " system: its callbacks scheduled for later (callback." + system + ".at.<id>.<signal>), and those due, waiting to be sent as signals",
		Subjects:    []string{CallbackPrefix + "." + system + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
		// As the signals stream: a callback scheduled further out, or one
		// no forwarder took, leaves after 30 days.
		MaxAge: 30 * 24 * time.Hour,
		// A schedule message is a roll-up of its subject: scheduling a
		// callback again replaces it.
		AllowMsgSchedules: true,
		Duplicates:        t.DuplicateWindow,
		MaxMsgSize:        t.MaxMsgSize,
	}
}

// CallbackConsumerConfig is the configuration of the consumer that
// forwards system's due callbacks as signals.
func CallbackConsumerConfig(system string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       CallbackConsumer,
		Description:   "forwards the due callbacks of " + system + " as signals",
		FilterSubject: CallbackDueFilter(system),
		AckPolicy:     jetstream.AckExplicitPolicy,
		// Within the signals' duplicate window (2 minutes by default): a
		// callback redelivered soon after a lost acknowledgement is sent
		// again with the same message ID, and is one signal.
		AckWait: time.Minute,
		// Redelivered for as long as it is not settled: the forwarder
		// counts the deliveries itself (CallbackMaxDeliver) and settles
		// the last one, dead letter included, so no callback is left
		// behind by a delivery that ran out.
		MaxDeliver:    -1,
		MaxAckPending: 1024,
	}
}

// CallbackMaxDeliver bounds the sends of a due callback: a delivery from
// this one on whose send fails gives the callback up (a dead letter), and
// the workflow that waits for the signal meets its own deadline. With the
// forwarder's delays (2 s doubling to a minute) that is about two hours.
const CallbackMaxDeliver = 120

// IdempotencyConfig is the configuration of the participants' claim bucket.
func (t Topology) IdempotencyConfig() jetstream.KeyValueConfig {
	t = t.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      IdempotencyBucket,
		Description: "jetflow participant claims and recorded results",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}
}

// LedgerConfig is the configuration of a simulated external system's ledger.
func (t Topology) LedgerConfig(system string) jetstream.KeyValueConfig {
	t = t.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      LedgerBucketPrefix + system,
		Description: "simulated " + system + " system: every effect by idempotency key",
		History:     1,
		TTL:         t.LedgerTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}
}

// attemptsMaxAge is how long a failed attempt's note is kept when nothing
// rewrites it: longer than any retry delay a policy may ask for.
const attemptsMaxAge = 30 * 24 * time.Hour

// AttemptsConfig is the configuration of the bucket of failed attempts.
// A note is rewritten at each failed attempt of its command and expires
// 30 days after the last one: the command has long been answered by then.
func (t Topology) AttemptsConfig() jetstream.KeyValueConfig {
	t = t.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      AttemptsBucket,
		Description: "jetflow participants: the last failed attempt of each command being retried",
		History:     1,
		TTL:         attemptsMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}
}

// TimersConfig is the configuration of the durable timers bucket.
func (t Topology) TimersConfig() jetstream.KeyValueConfig {
	t = t.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      TimersBucket,
		Description: "jetflow pending durable timers: <workflow id>.<timer id>",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}
}

// Ensure creates or updates every stream and bucket. It is
// idempotent: every orchestrator calls it at start-up (participants, whose
// credentials may not create streams, call Check).
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	if t.HistoryPartitions < 0 || t.HistoryPartitions > MaxHistoryPartitions {
		return fmt.Errorf("ensure: %d history partitions: want 1 to %d", t.HistoryPartitions, MaxHistoryPartitions)
	}
	have, err := serverLayout(ctx, js)
	if err != nil {
		return fmt.Errorf("ensure: %w", err)
	}
	switch want := max(t.HistoryPartitions, 1); {
	case have == 0:
		t.HistoryPartitions = want
	case t.HistoryPartitions == 0:
		t.HistoryPartitions = have
	case want != have:
		return fmt.Errorf("ensure: %w: %s, asked for %s; a history keeps the layout it was made with (docs/ARCHITECTURE.md, \"Partitioned history\")", ErrLayoutMismatch, layoutName(have), layoutName(want))
	}
	SetHistoryPartitions(t.HistoryPartitions)
	for _, cfg := range t.StreamConfigs() {
		switch {
		case cfg.Name == IndexStream:
			// Two first starts asking for different layouts at once
			// would each see no history and make their own: the one that
			// finds the other's history streams once its own are made
			// stops here, before the index is pointed at its streams
			// (and every Ensure after it, until one layout is removed).
			if err := oneLayout(ctx, js); err != nil {
				return fmt.Errorf("ensure: %w", err)
			}
		case IsHistoryStream(cfg.Name):
			if err := keepDenyPurge(ctx, js, &cfg); err != nil {
				return fmt.Errorf("ensure %w", err)
			}
		case cfg.Name == SignalsStream:
			if err := keepSchedules(ctx, js, &cfg); err != nil {
				return fmt.Errorf("ensure %w", err)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, EnsureRequestTimeout)
		_, err := js.CreateOrUpdateStream(rctx, cfg)
		cancel()
		if cfg.MaxBytes > 0 && storageRefused(err) {
			return fmt.Errorf("ensure stream %s: the server cannot reserve its bound of %d bytes in its JetStream storage (give JetStream more storage, or lower the bound): %w", cfg.Name, cfg.MaxBytes, err)
		}
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	for _, kv := range []jetstream.KeyValueConfig{t.IdempotencyConfig(), t.TimersConfig(), t.AttemptsConfig()} {
		rctx, cancel := context.WithTimeout(ctx, EnsureRequestTimeout)
		_, err := js.CreateOrUpdateKeyValue(rctx, kv)
		cancel()
		if err != nil {
			return fmt.Errorf("ensure bucket %s: %w", kv.Bucket, err)
		}
	}
	return nil
}

// oneLayout reports ErrLayoutMismatch when both the single history stream
// and a partitioned history's first stream exist.
func oneLayout(ctx context.Context, js jetstream.JetStream) error {
	single, err := existingConfig(ctx, js, HistoryStream)
	if err != nil || single == nil {
		return err
	}
	first, err := existingConfig(ctx, js, HistoryPartitionStream(0))
	if err != nil || first == nil {
		return err
	}
	return fmt.Errorf("%w: both %s and %s exist; remove the one not in use", ErrLayoutMismatch, HistoryStream, HistoryPartitionStream(0))
}

// layoutName says a history layout in words.
func layoutName(k int) string {
	if k <= 1 {
		return "one stream, " + HistoryStream
	}
	return fmt.Sprintf("%d partitions, %s to %s", k, HistoryPartitionStream(0), HistoryPartitionStream(k-1))
}

// storageRefused reports whether err is the server's refusal to reserve a
// stream's storage: JSStorageResourcesExceededErr (10047, "insufficient
// storage resources available") on one server, and on a cluster
// JSClusterNoPeersErrF (10005) for want of storage ("no suitable peers for
// placement, insufficient storage").
func storageRefused(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == errCodeStorageResourcesExceeded ||
		apiErr.ErrorCode == errCodeClusterNoPeers && strings.Contains(apiErr.Description, "insufficient storage")
}

const (
	errCodeStorageResourcesExceeded jetstream.ErrorCode = 10047
	errCodeClusterNoPeers           jetstream.ErrorCode = 10005
)

// EnsureRequestTimeout bounds each create or update Ensure sends. On a
// cluster just formed, with several orchestrators ensuring at once, a
// create's answer is sometimes never sent although the stream is made
// within a second or two; the request then waits its whole timeout, and
// Ensure is retried (the second time an update, answered at once). A
// short bound keeps that stall short: a create answered later than this
// is retried as an update, which changes nothing.
const EnsureRequestTimeout = 5 * time.Second

// Default MaxDeliver of the consumers. JetStream counts every delivery of
// a message: a nak, an AckWait that ran out, a process that crashed with
// the message in hand. The delivery that reaches MaxDeliver is the last one
// the server makes, so the engine dead-letters it before it handles it
// (it may be the very message that crashes the process), with the reason
// LastDeliveryReason; the n-1 deliveries before it had their chance.
const (
	// DefaultOrchestratorMaxDeliver bounds the deliveries of an event that
	// calls for a decision. A failed decision is retried with NakWithDelay
	// after 200 ms, doubling to 10 s from the 7th delivery on (retryDelay in
	// orchestrator/worker.go), so 50 deliveries are about 7.5 minutes of
	// failing decisions (or 49 crashes, each AckWait long) before the event
	// is dead-lettered and its workflow parked blocked.
	DefaultOrchestratorMaxDeliver = 50
	// DefaultIntakeMaxDeliver bounds the deliveries of an order.created:
	// on the same retry schedule, 20 deliveries are about 2.5 minutes of
	// failing starts.
	DefaultIntakeMaxDeliver = 20
	// DefaultSignalsMaxDeliver bounds the deliveries of a signal: about 2.5
	// minutes of failing records.
	DefaultSignalsMaxDeliver = 20
	// DefaultParticipantMaxDeliver bounds the deliveries of a command. A
	// participant counts a command's attempts by its deliveries, so a
	// retry policy gets at most DefaultParticipantMaxDeliver-1 attempts: a
	// policy with MaxAttempts 0 (unlimited) or above that ends at the last
	// delivery, which is dead-lettered and answered with a non-retryable
	// "undeliverable" failure so the workflow goes on with its compensation.
	DefaultParticipantMaxDeliver = 100
)

// LastDeliveryReason is the dead-letter reason of a message taken on its
// last delivery, the numDelivered-th: the deliveries before it all ended
// without an ack.
func LastDeliveryReason(numDelivered uint64) string {
	return fmt.Sprintf("crashed or timed out %d deliveries", numDelivered-1)
}

// orDefault returns n, or def when n is not positive.
func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// missingStreams is Check's error: errors.Is matches it with
// jetstream.ErrStreamNotFound.
type missingStreams struct{ msg string }

func (e missingStreams) Error() string        { return e.msg }
func (e missingStreams) Is(target error) bool { return target == jetstream.ErrStreamNotFound }

// Check reports an error naming every one of the given streams that does
// not exist. A process whose credentials may not create streams (a
// participant) checks the topology instead of ensuring it.
func Check(ctx context.Context, js jetstream.JetStream, names ...string) error {
	var missing []string
	for _, n := range names {
		if _, err := js.Stream(ctx, n); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				missing = append(missing, n)
				continue
			}
			return fmt.Errorf("check stream %s: %w", n, err)
		}
	}
	if len(missing) > 0 {
		return missingStreams{fmt.Sprintf("missing streams %s: an orchestrator (or jetflow dev) creates them; start one first", strings.Join(missing, ", "))}
	}
	return nil
}

// OrchestratorConsumerConfig is the durable consumer shared by every
// orchestrator: the events that call for a decision. maxDeliver <= 0 is
// DefaultOrchestratorMaxDeliver.
func OrchestratorConsumerConfig(ackWait time.Duration, maxDeliver int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        OrchestratorConsumer,
		Description:    "jetflow orchestrators: history events that call for a decision",
		FilterSubjects: []string{StartFilter, ResultFilter, FiredFilter, SignalFilter, OperatorFilter, UpdateFilter, ChildDoneFilter, SignalOutDoneFilter},
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        ackWait,
		MaxDeliver:     orDefault(maxDeliver, DefaultOrchestratorMaxDeliver),
		MaxAckPending:  20000,
	}
}

// IntakeConsumerConfig is the durable consumer on Orders. maxDeliver <= 0
// is DefaultIntakeMaxDeliver.
func IntakeConsumerConfig(ackWait time.Duration, maxDeliver int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       IntakeConsumer,
		Description:   "jetflow intake: start a workflow per order.created",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       ackWait,
		MaxDeliver:    orDefault(maxDeliver, DefaultIntakeMaxDeliver),
		MaxAckPending: 5000,
	}
}

// SignalsConsumerConfig is the durable consumer that records signals into
// histories. maxDeliver <= 0 is DefaultSignalsMaxDeliver.
func SignalsConsumerConfig(ackWait time.Duration, maxDeliver int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       SignalsConsumer,
		Description:   "jetflow: record signal.<name>.<id> into the workflow's history",
		FilterSubject: SignalPrefix + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       ackWait,
		MaxDeliver:    orDefault(maxDeliver, DefaultSignalsMaxDeliver),
		// The router takes every delivered signal into its per-workflow
		// queues at once, so a signal sent after a flood to another
		// workflow is routed as soon as it is delivered; the server
		// delivers it once fewer than MaxAckPending signals are unacked.
		// 20,000 holds a flood of that size (about 1 KiB each in the
		// router's queues) without holding up the signals behind it.
		MaxAckPending: 20000,
	}
}

// ParticipantConsumerConfig is the durable consumer of a participant service.
// Redelivery after ackWait is what resumes a command whose participant died.
// maxDeliver <= 0 is DefaultParticipantMaxDeliver.
func ParticipantConsumerConfig(service string, ackWait time.Duration, maxAckPending, maxDeliver int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ParticipantConsumerPrefix + service,
		Description:   "jetflow participant " + service + ": its commands",
		FilterSubject: CommandFilter(service),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       ackWait,
		MaxDeliver:    orDefault(maxDeliver, DefaultParticipantMaxDeliver),
		MaxAckPending: maxAckPending,
	}
}
