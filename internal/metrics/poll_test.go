package metrics_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestPollReadsQueuesAndConsumers checks the gauges read from JetStream:
// the manual queue's depth, the blocked workflows (a blocked workflow that
// ended since is not), dead letters stored by origin, consumer pending,
// the subjects and messages of the streams that grow with the workflows
// kept or with what anyone publishes, and the bounds of those bounded.
func TestPollReadsQueuesAndConsumers(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := natstest.Context(t)
	if err := streams.Ensure(ctx, env.JS, streams.Topology{OrdersMaxBytes: 1 << 20, DeadLetterMaxBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	pub := func(subject string) {
		t.Helper()
		if _, err := env.JS.Publish(ctx, subject, []byte("x")); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}
	for _, s := range []string{
		streams.DoneSubject("a", string(schema.StatusManual)),
		streams.DoneSubject("b", string(schema.StatusManual)),
		streams.DoneSubject("c", string(schema.StatusCompleted)),
		streams.BlockedSubject("d", 3),
		streams.BlockedSubject("d", 7),
		streams.BlockedSubject("e", 2),
		streams.DoneSubject("e", string(schema.StatusCompensated)),
		// f was manual, then resolved by an operator: out of the queue.
		streams.DoneSubject("f", string(schema.StatusManual)),
		streams.DoneSubject("f", string(schema.StatusResolved)),
		// g was manual, retried, and manual again: in it once.
		streams.DoneSubject("g", string(schema.StatusManual)),
		streams.OperatorSubject("g", 40, schema.VerbRetry),
		streams.DoneSubjectAfter("g", string(schema.StatusManual), 41),
		streams.DeadLetterSubject("signal"),
		streams.SignalDeadLetterSubject(41),
		streams.SignalDeadLetterSubject(42),
		streams.DeadLetterSubject("cmd.payment"),
		streams.OrderCreated,
	} {
		pub(s)
	}
	if _, err := env.JS.CreateOrUpdateConsumer(ctx, streams.HistoryStream, jetstream.ConsumerConfig{Durable: "probe", FilterSubject: streams.DoneFilter}); err != nil {
		t.Fatal(err)
	}
	// A callbacks stream with two callbacks due and not yet sent; the
	// other system named has no stream.
	if _, err := env.JS.CreateOrUpdateConsumer(ctx, streams.CallbacksStream("payment"), streams.CallbackConsumerConfig("payment")); err != nil {
		t.Fatal(err)
	}
	pub(streams.CallbackDueSubject("payment", "o-1", "payment.settled"))
	pub(streams.CallbackDueSubject("payment", "o-2", "payment.settled"))
	m := metrics.New()
	cfg := metrics.PollConfig{NC: env.NC, JS: env.JS, Queues: true, QueueDepth: func(ctx context.Context) (int, int, error) { return orchestrator.QueueDepth(ctx, env.JS) }, Consumers: []metrics.Consumer{{streams.HistoryStream, "probe"}, {streams.HistoryStream, "absent"}, metrics.CallbackConsumer("payment"), metrics.CallbackConsumer("nowhere")}}
	// The index follows the history by milliseconds.
	natstest.Eventually(t, 10*time.Second, func() bool {
		n, err := streams.NewHistory(env.NC, env.JS).CountOn(ctx, streams.IndexStream, streams.IndexDoneFilter(""))
		return err == nil && n == 8
	}, "the index did not catch up with the history")
	if err := m.PollOnce(ctx, cfg, streams.NewHistory(env.NC, env.JS)); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName()
			var ls []string
			for _, l := range mt.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			if g := mt.GetGauge(); g != nil {
				got[key] = g.GetValue()
			}
		}
	}
	for k, want := range map[string]float64{
		"jetflow_manual_queue_depth": 3,
		"jetflow_workflows_blocked":  1,
		// A signal's dead letters, each on dlq.signal.<seq>, are one series.
		"jetflow_dead_letters_stored{origin=signal}":                                                                                     3,
		"jetflow_dead_letters_stored{origin=cmd.payment}":                                                                                1,
		"jetflow_consumer_pending_messages{consumer=probe,stream=" + streams.HistoryStream + "}":                                         8,
		"jetflow_consumer_pending_messages{consumer=" + streams.CallbackConsumer + ",stream=" + streams.CallbacksStream("payment") + "}": 2,
		// 12 events, each on a subject of its own; the index holds their
		// 8 ends and 3 blocked events on one subject per status (manual,
		// completed, compensated, resolved) and one for blocked.
		"jetflow_stream_subjects{stream=" + streams.HistoryStream + "}":     12,
		"jetflow_stream_messages{stream=" + streams.HistoryStream + "}":     12,
		"jetflow_stream_subjects{stream=" + streams.IndexStream + "}":       5,
		"jetflow_stream_messages{stream=" + streams.IndexStream + "}":       11,
		"jetflow_stream_subjects{stream=" + streams.DeadLetterStream + "}":  4,
		"jetflow_stream_messages{stream=" + streams.DeadLetterStream + "}":  4,
		"jetflow_stream_messages{stream=" + streams.ArchiveStream + "}":     0,
		"jetflow_stream_messages{stream=" + streams.OrdersStream + "}":      1,
		"jetflow_stream_messages{stream=" + streams.SignalsStream + "}":     0,
		"jetflow_stream_max_bytes{stream=" + streams.OrdersStream + "}":     1 << 20,
		"jetflow_stream_max_bytes{stream=" + streams.DeadLetterStream + "}": 2 << 20,
		"jetflow_stream_max_bytes{stream=" + streams.SignalsStream + "}":    0,
		"jetflow_stream_max_bytes{stream=" + streams.HistoryStream + "}":    0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (exported %v), want %v", k, v, ok, want)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "jetflow_dead_letters_stored{origin=signal.") {
			t.Errorf("a signal's dead letter has a series of its own: %s", k)
		}
	}
	if b := got["jetflow_stream_bytes{stream="+streams.HistoryStream+"}"]; b < 12 {
		t.Errorf("history stream bytes = %v, want at least its 12 one-byte bodies", b)
	}
}
