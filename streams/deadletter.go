package streams

import (
	"context"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
)

// DeadLetter copies a refused message to dlq.<origin> with the reason and
// where it came from, and returns once JetStream has stored it. The caller
// acks the original only after this returns nil, so a refused message is
// never lost and never blocks the messages behind it.
func DeadLetter(ctx context.Context, js jetstream.JetStream, origin string, src jetstream.Msg, reason string) error {
	m := nats.NewMsg(DeadLetterSubject(origin))
	m.Data = src.Data()
	for k, vs := range src.Headers() {
		for _, v := range vs {
			m.Header.Add("Orig-"+k, v)
		}
	}
	m.Header.Set(schema.HeaderReason, reason)
	m.Header.Set(schema.HeaderSourceSubject, src.Subject())
	if md, err := src.Metadata(); err == nil {
		m.Header.Set(schema.HeaderSourceSeq, strconv.FormatUint(md.Sequence.Stream, 10))
		// One dead letter per source message, however often it is redelivered.
		m.Header.Set(jetstream.MsgIDHeader, "dlq-"+md.Stream+"-"+strconv.FormatUint(md.Sequence.Stream, 10))
	}
	_, err := js.PublishMsg(ctx, m)
	return err
}
