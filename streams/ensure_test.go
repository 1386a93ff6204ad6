package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/streams"
)

// TestConsumersGetMaxDeliverInPlace: every consumer, as an earlier version
// created it (no MaxDeliver: unlimited redeliveries), is updated in place by
// CreateOrUpdateConsumer with the current configuration, keeping its
// position, so a message that crashes its process cannot be delivered
// forever.
func TestConsumersGetMaxDeliverInPlace(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	for _, tc := range []struct {
		stream string
		cfg    jetstream.ConsumerConfig
		want   int
	}{
		{streams.HistoryStream, streams.OrchestratorConsumerConfig(time.Second, 0), streams.DefaultOrchestratorMaxDeliver},
		{streams.OrdersStream, streams.IntakeConsumerConfig(time.Second, 0), streams.DefaultIntakeMaxDeliver},
		{streams.SignalsStream, streams.SignalsConsumerConfig(time.Second, 0), streams.DefaultSignalsMaxDeliver},
		{streams.HistoryStream, streams.ParticipantConsumerConfig("payment", time.Second, 16, 0), streams.DefaultParticipantMaxDeliver},
		{streams.HistoryStream, streams.ParticipantConsumerConfig("shipping", time.Second, 16, 7), 7},
	} {
		t.Run(tc.cfg.Durable, func(t *testing.T) {
			old := tc.cfg
			old.MaxDeliver = -1
			if _, err := env.JS.CreateOrUpdateConsumer(ctx, tc.stream, old); err != nil {
				t.Fatal(err)
			}
			c, err := env.JS.CreateOrUpdateConsumer(ctx, tc.stream, tc.cfg)
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			info, err := c.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Config.MaxDeliver != tc.want {
				t.Fatalf("MaxDeliver %d, want %d", info.Config.MaxDeliver, tc.want)
			}
		})
	}
	if got := streams.LastDeliveryReason(50); got != "crashed or timed out 49 deliveries" {
		t.Errorf("LastDeliveryReason(50) = %q", got)
	}
}
