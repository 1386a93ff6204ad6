package streams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishMsg publishes m and waits for the stream's acknowledgement, as
// jetstream.JetStream.PublishMsg does: the same retries when no stream
// answers (a leader change), the same errors. It differs in one thing:
// the acknowledgement of a stored message, which the server writes from a
// fixed template ({"stream":"S","seq":N}, with ,"duplicate": true for a
// deduplicated one), is read without encoding/json, whose reflection was
// about 4% of the CPU of an order (every history write is acknowledged so);
// any other answer, an error among them, is decoded with it. A context
// without a deadline is bounded by the JetStream context's default timeout
// (5 s unless set), as PublishMsg bounds it: a lost acknowledgement or a
// publish the server refuses (a permission violation, which has no answer)
// ends in an error, not a wait for ever. A history message goes to its
// subject as published (PublishSubject): its partition's in a partitioned
// history.
func publishMsg(ctx context.Context, js jetstream.JetStream, m *nats.Msg) (*jetstream.PubAck, error) {
	if strings.HasPrefix(m.Subject, "wf.") {
		knowLayout(ctx, js)
	}
	if ps := PublishSubject(m.Subject); ps != m.Subject {
		c := *m
		c.Subject = ps
		m = &c
	}
	if _, ok := ctx.Deadline(); !ok {
		timeout := js.Options().DefaultTimeout
		if timeout <= 0 {
			timeout = defaultPublishTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	nc := js.Conn()
	resp, err := nc.RequestMsgWithContext(ctx, m)
	for r := 0; errors.Is(err, nats.ErrNoResponders) && r < jetstream.DefaultPubRetryAttempts; r++ {
		select {
		case <-ctx.Done():
		case <-time.After(jetstream.DefaultPubRetryWait):
		}
		resp, err = nc.RequestMsgWithContext(ctx, m)
	}
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, jetstream.ErrNoStreamResponse
		}
		return nil, err
	}
	if ack, ok := parseAck(resp.Data); ok {
		return ack, nil
	}
	var full struct {
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(resp.Data, &full); err != nil {
		return nil, jetstream.ErrInvalidJSAck
	}
	if full.Error != nil {
		return nil, fmt.Errorf("nats: %w", full.Error)
	}
	if full.PubAck == nil || full.PubAck.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return full.PubAck, nil
}

// defaultPublishTimeout bounds a publish whose context has no deadline
// when the JetStream context sets no default timeout: jetstream's own
// default.
const defaultPublishTimeout = 5 * time.Second

var (
	ackStream    = []byte(`{"stream":"`)
	ackDomain    = []byte(`,"domain":"`)
	ackSeq       = []byte(`,"seq":`)
	ackDuplicate = []byte(`,"duplicate": true}`)
)

// parseAck reads the acknowledgement of a stored message in the form the
// server writes it: {"stream":"S"[,"domain":"D"],"seq":N} or the same
// ending ,"duplicate": true}. It reports false for anything else (an
// error, a batch's or a counter's acknowledgement, a name with an escape),
// which the caller decodes as JSON.
func parseAck(b []byte) (*jetstream.PubAck, bool) {
	rest, ok := bytes.CutPrefix(b, ackStream)
	if !ok {
		return nil, false
	}
	stream, rest, ok := quoted(rest)
	if !ok || stream == "" {
		return nil, false
	}
	ack := &jetstream.PubAck{Stream: stream}
	if r, found := bytes.CutPrefix(rest, ackDomain); found {
		if ack.Domain, rest, ok = quoted(r); !ok {
			return nil, false
		}
	}
	if rest, ok = bytes.CutPrefix(rest, ackSeq); !ok {
		return nil, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	if err != nil {
		return nil, false
	}
	ack.Sequence = seq
	switch rest = rest[n:]; {
	case len(rest) == 1 && rest[0] == '}':
	case bytes.Equal(rest, ackDuplicate):
		ack.Duplicate = true
	default:
		return nil, false
	}
	return ack, true
}

// quoted reads a JSON string without escapes up to its closing quote (the
// opening one already read) and returns it and what follows.
func quoted(b []byte) (string, []byte, bool) {
	end := bytes.IndexByte(b, '"')
	if end < 0 || bytes.IndexByte(b[:end], '\\') >= 0 {
		return "", nil, false
	}
	return string(b[:end]), b[end+1:], true
}
