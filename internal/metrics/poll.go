package metrics

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// Consumer names a durable consumer whose state Poll exports.
type Consumer struct {
	Stream, Name string
}

// EngineConsumers are the durable consumers of the orchestrator.
var EngineConsumers = []Consumer{
	{streams.HistoryStream, streams.OrchestratorConsumer},
	{streams.OrdersStream, streams.IntakeConsumer},
	{streams.SignalsStream, streams.SignalsConsumer},
}

// ParticipantConsumer is the durable consumer of participant service (one
// per stream of a partitioned history: Poll reads each).
func ParticipantConsumer(service string) Consumer {
	return Consumer{streams.HistoryStream, streams.ParticipantConsumerPrefix + service}
}

// CallbackConsumer is the consumer that forwards simulated system's due
// callbacks as signals: its pending messages are callbacks due and not yet
// sent, its redelivered ones callbacks whose signal could not be sent.
func CallbackConsumer(system string) Consumer {
	return Consumer{streams.CallbacksStream(system), streams.CallbackConsumer}
}

// inEachHistoryStream is c, or, for a consumer of the history stream, its
// namesake in each stream of a partitioned history.
func inEachHistoryStream(c Consumer) []Consumer {
	if c.Stream != streams.HistoryStream {
		return []Consumer{c}
	}
	var out []Consumer
	for _, stream := range streams.HistoryStreams() {
		out = append(out, Consumer{stream, c.Name})
	}
	return out
}

// QueueDepth reads the manual queue's depth and the blocked count.
type QueueDepth func(ctx context.Context) (manual, blocked int, err error)

// PollConfig says what Poll reads, and how often.
type PollConfig struct {
	// NC and JS are the connection. Required.
	NC *nats.Conn
	JS jetstream.JetStream
	// Every is the period. Default 15s.
	Every time.Duration
	// Queues reads the manual queue's depth, the blocked workflows, the
	// dead letters stored and the sizes of JETFLOW_DLQ and SizedStreams
	// (an orchestrator's or an operator's process).
	Queues bool
	// QueueDepth, with Queues, reads how many workflows are in the manual
	// queue and blocked now (orchestrator.QueueDepth); nil leaves those
	// gauges out.
	QueueDepth QueueDepth
	// Consumers are the consumers whose pending, ack-pending and
	// redelivered counts are exported.
	Consumers []Consumer
	// Logger receives the failures, at debug level. Default: discarded.
	Logger *slog.Logger
}

// Poll reads the gauges of cfg now and then every cfg.Every until ctx
// ends. Failed reads are counted (jetflow_poll_errors_total) and leave the
// gauges at their last value.
//
// Cost: the manual queue's depth and the blocked count are whatever
// cfg.QueueDepth costs (orchestrator.QueueDepth: the index events of the
// manual ends and blocked events ever recorded, and one multi_last per
// 1,000 of them); the dead letters stored are one stream info, the sizes
// of SizedStreams one stream info each, and each consumer one consumer
// info.
func (m *Metrics) Poll(ctx context.Context, cfg PollConfig) {
	if m == nil {
		return
	}
	if cfg.Every <= 0 {
		cfg.Every = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hist := streams.NewHistory(cfg.NC, cfg.JS)
	t := time.NewTicker(cfg.Every)
	defer t.Stop()
	for {
		if err := m.PollOnce(ctx, cfg, hist); err != nil && ctx.Err() == nil {
			m.pollErrors.Inc()
			cfg.Logger.Debug("metrics poll", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PollOnce reads the gauges of cfg once, through hist.
func (m *Metrics) PollOnce(ctx context.Context, cfg PollConfig, hist *streams.History) error {
	ctx, cancel := context.WithTimeout(ctx, max(cfg.Every, 5*time.Second))
	defer cancel()
	var errs []error
	if cfg.Queues {
		errs = append(errs, m.pollQueues(ctx, cfg.JS, hist, cfg.QueueDepth))
	}
	for _, c := range cfg.Consumers {
		for _, c := range inEachHistoryStream(c) {
			errs = append(errs, m.pollConsumer(ctx, cfg.JS, c))
		}
	}
	return errors.Join(errs...)
}

func (m *Metrics) pollQueues(ctx context.Context, js jetstream.JetStream, hist *streams.History, depth QueueDepth) error {
	if depth != nil {
		manual, blocked, err := depth(ctx)
		if err != nil {
			return err
		}
		m.manualQueue.Set(float64(manual))
		m.blocked.Set(float64(blocked))
	}

	ds, err := js.Stream(ctx, streams.DeadLetterStream)
	if err != nil {
		return err
	}
	dinfo, err := ds.Info(ctx, jetstream.WithSubjectFilter(streams.DeadLetterPrefix+".>"))
	if err != nil {
		return err
	}
	// A signal's dead letter has a subject of its own, dlq.signal.<seq>:
	// they are counted under origin signal, so a flood of refused signals
	// is one series, not one per signal.
	stored := map[string]uint64{}
	for subj, n := range dinfo.State.Subjects {
		origin := strings.TrimPrefix(subj, streams.DeadLetterPrefix+".")
		if strings.HasPrefix(origin, streams.SignalOrigin+".") {
			origin = streams.SignalOrigin
		}
		stored[origin] += n
	}
	// Reset first: an origin whose dead letters are all gone (the oldest
	// dropped under --dead-letter-max-bytes) reads 0, not its last count.
	m.deadStored.Reset()
	for origin, n := range stored {
		m.deadStored.WithLabelValues(origin).Set(float64(n))
	}
	m.setStream(dinfo)
	var errs []error
	var sized []string
	for _, name := range SizedStreams {
		if name == streams.HistoryStream {
			sized = append(sized, streams.HistoryStreams()...)
			continue
		}
		sized = append(sized, name)
	}
	for _, name := range sized {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // the archive stream before a first Ensure that made it
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// CachedInfo is the answer to the look-up just made.
		m.setStream(s.CachedInfo())
	}
	return errors.Join(errs...)
}

// SizedStreams are the streams, besides JETFLOW_DLQ, whose subjects,
// messages, bytes and bound the queues' poll exports: the ones that grow
// with the workflows kept (the history and its index) and archived, and
// the two anyone permitted may publish to (orders, whose bound refuses a
// flood, and signals).
var SizedStreams = []string{streams.HistoryStream, streams.IndexStream, streams.ArchiveStream, streams.OrdersStream, streams.SignalsStream}

func (m *Metrics) setStream(info *jetstream.StreamInfo) {
	name, st := info.Config.Name, info.State
	m.streamSubjects.WithLabelValues(name).Set(float64(st.NumSubjects))
	m.streamMessages.WithLabelValues(name).Set(float64(st.Msgs))
	m.streamBytes.WithLabelValues(name).Set(float64(st.Bytes))
	m.streamMaxBytes.WithLabelValues(name).Set(float64(max(info.Config.MaxBytes, 0)))
}

func (m *Metrics) pollConsumer(ctx context.Context, js jetstream.JetStream, c Consumer) error {
	cons, err := js.Consumer(ctx, c.Stream, c.Name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // not created yet
	}
	if err != nil {
		return err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	m.consumerPending.WithLabelValues(c.Stream, c.Name).Set(float64(info.NumPending))
	m.consumerAckPending.WithLabelValues(c.Stream, c.Name).Set(float64(info.NumAckPending))
	m.consumerRedelivered.WithLabelValues(c.Stream, c.Name).Set(float64(info.NumRedelivered))
	return nil
}
