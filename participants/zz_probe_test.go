package participants

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jetflow/internal/natstest"
	"jetflow/streams"
)

func TestZZProbe(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := natstest.Context(t)
	s, _ := env.JS.Stream(ctx, streams.HistoryStream)
	info, _ := s.Info(ctx)
	cfg := info.Config
	cfg.MaxMsgSize = 1
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("update: %v", err)
	}
	m := nats.NewMsg("wf.x.res.a.b")
	m.Data = []byte("hello")
	_, err := env.JS.PublishMsg(ctx, m)
	t.Logf("publish with tiny max: %v", err)
	cfg.MaxMsgSize = 1 << 20
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("restore: %v", err)
	}
	_, err = env.JS.PublishMsg(ctx, m)
	t.Logf("publish after restore: %v", err)

	d, _ := env.JS.Stream(ctx, streams.DeadLetterStream)
	dinfo, _ := d.Info(ctx)
	dcfg := dinfo.Config
	dcfg.MaxMsgSize = 1
	_, err = env.JS.UpdateStream(ctx, dcfg)
	t.Logf("dlq update: %v", err)

	cons, err := env.JS.CreateOrUpdateConsumer(ctx, streams.HistoryStream, streams.ParticipantConsumerConfig("p", 30*time.Second, 10))
	if err != nil {
		t.Fatal(err)
	}
	c := nats.NewMsg(streams.CommandSubject("x", "p", "a"))
	c.Data = []byte("cmd")
	if _, err := env.JS.PublishMsg(ctx, c); err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got jetstream.Msg
	for msg := range b.Messages() {
		got = msg
	}
	md, _ := got.Metadata()
	t.Logf("md %+v", md)
	got.NakWithDelay(time.Second)
	start := time.Now()
	for range 3 {
		ci, _ := cons.Info(ctx)
		t.Logf("after nak: pending %d ackpending %d redelivered %d waiting %d", ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
	}
	b, err = cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	for msg := range b.Messages() {
		md, _ := msg.Metadata()
		t.Logf("redelivered after %v: %d", time.Since(start), md.NumDelivered)
		ci, _ := cons.Info(ctx)
		t.Logf("after redelivery: ackpending %d redelivered %d", ci.NumAckPending, ci.NumRedelivered)
		msg.Ack()
	}
	kvs, _ := env.JS.Stream(ctx, "KV_"+streams.IdempotencyBucket)
	ki, _ := kvs.Info(ctx)
	t.Logf("kv cfg discard %v maxmsgs %d", ki.Config.Discard, ki.Config.MaxMsgs)
}
