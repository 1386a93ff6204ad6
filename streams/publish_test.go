package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/streams"
)

// TestPublishWithoutDeadlineEnds: a write whose context has no deadline
// and whose acknowledgement never comes (a responder that does not answer,
// as a lost ack or a refused publish looks to the writer) ends with an
// error after the JetStream context's default timeout instead of waiting
// for ever.
func TestPublishWithoutDeadlineEnds(t *testing.T) {
	env := natstest.RunJetStream(t)
	sub, err := env.NC.SubscribeSync("lost.ack")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	js, err := jetstream.New(env.NC, jetstream.WithDefaultTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("lost.ack")
	m.Data = []byte("x")
	done := make(chan error, 1)
	go func() {
		_, err := streams.PublishFirst(context.Background(), js, m)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a publish nobody acknowledged succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a publish nobody acknowledges, with no deadline, still waits after 30s")
	}
}
