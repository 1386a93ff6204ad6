package chaos

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestPoisonMessages publishes every kind of poison between good orders:
// garbage bytes, an oversized message, unknown kinds, results and commands
// naming the wrong workflow, a future schema version. Each one ends in the
// dead-letter stream with its reason (or, when larger than the stream
// allows, is refused to its publisher), and the good orders behind them
// complete as if nothing happened.
func TestPoisonMessages(t *testing.T) {
	h := newHarness(t, seedFor(t, 37), serverOptions{maxPayload: 4 << 20})
	h.orchestrator("o1", nil)
	h.participants()
	good := mix("good-", 40, false)

	hdr := func(kvs ...string) nats.Header {
		out := nats.Header{}
		for i := 0; i < len(kvs); i += 2 {
			out.Set(kvs[i], kvs[i+1])
		}
		return out
	}
	encoded := func(v schema.Kinded) ([]byte, nats.Header) {
		m, err := streams.NewMsg("x", v)
		if err != nil {
			t.Fatal(err)
		}
		return m.Data, m.Header
	}
	result := func(id string) ([]byte, nats.Header) {
		return encoded(&schema.Result{WorkflowID: id, CommandID: 1, Service: "payment", Action: "charge", Attempts: 1})
	}
	command := func(bodyID string) ([]byte, nats.Header) {
		raw, _ := schema.EncodeRaw(map[string]any{"order_id": bodyID, "amount_cents": 100, "currency": "EUR"})
		return encoded(&schema.Command{WorkflowID: bodyID, ID: 1, Service: "payment", Action: "charge", Input: raw,
			IdempotencyKey: bodyID + ".1", ReplyTo: streams.ResultSubject(bodyID, 1, "payment", "charge"), StartToClose: time.Second})
	}
	with := func(body []byte, base nats.Header, kvs ...string) ([]byte, nats.Header) {
		out := nats.Header{}
		for k, vs := range base {
			out[k] = append([]string(nil), vs...)
		}
		for i := 0; i < len(kvs); i += 2 {
			out.Set(kvs[i], kvs[i+1])
		}
		return body, out
	}

	type poison struct {
		name    string
		subject string
		body    []byte
		header  nats.Header
		dlq     string // dead-letter subject; "" when the publish itself must be refused
		reason  string
	}
	resBody, resHdr := result("poison-res-unknown")
	futBody, futHdr := with(resBody, resHdr, schema.HeaderSchema, "99")
	kindBody, kindHdr := with(resBody, resHdr, schema.HeaderKind, "teleport")
	cmdBody, cmdHdr := command("someone-else")
	cmdFutBody, cmdFutHdr := with(cmdBody, cmdHdr, schema.HeaderSchema, "99")
	cmdKindBody, cmdKindHdr := with(cmdBody, cmdHdr, schema.HeaderKind, "teleport")
	nearLimit := append([]byte(`{"order_id":"`), bytes.Repeat([]byte("x"), (1<<20)-16<<10)...)
	poisons := []poison{
		{"garbage order", streams.OrderCreated, []byte("\x00\xff\xfe garbage"), nil, "dlq.order.created", "invalid JSON"},
		{"order near the size limit, invalid", streams.OrderCreated, nearLimit, nil, "dlq.order.created", "the limit is"},
		{"oversized order (1.5 MiB)", streams.OrderCreated, bytes.Repeat([]byte("y"), 3<<19), nil, "", ""},
		{"result for a workflow never started", streams.ResultSubject("poison-res-unknown", 1, "payment", "charge"), resBody, resHdr, "dlq.wf", "unknown workflow"},
		{"result with a future schema version", streams.ResultSubject("poison-res-future", 1, "payment", "charge"), futBody, futHdr, "dlq.wf", "newer schema"},
		{"result of an unknown kind", streams.ResultSubject("poison-res-kind", 1, "payment", "charge"), kindBody, kindHdr, "dlq.wf", "unknown message kind"},
		{"garbage result", streams.ResultSubject("poison-res-garbage", 1, "payment", "charge"), []byte("not msgpack"), hdr(schema.HeaderKind, "result", schema.HeaderSchema, "1"), "dlq.wf", "undecodable"},
		{"result on an invalid workflow id", "wf.bad$id.res.1.payment.charge", resBody, resHdr, "dlq.wf", "not a workflow history subject"},
		{"command naming another workflow", streams.CommandSubject("poison-cmd-wrong", 1, "payment", "charge"), cmdBody, cmdHdr, "dlq.cmd.payment", "does not belong on subject"},
		{"command with a future schema version", streams.CommandSubject("poison-cmd-future", 1, "payment", "charge"), cmdFutBody, cmdFutHdr, "dlq.cmd.payment", "newer schema"},
		{"command of an unknown kind", streams.CommandSubject("poison-cmd-kind", 1, "payment", "charge"), cmdKindBody, cmdKindHdr, "dlq.cmd.payment", "message kind"},
		{"garbage command", streams.CommandSubject("poison-cmd-garbage", 1, "payment", "charge"), []byte{0xc1, 0xc1}, hdr(schema.HeaderKind, "command", schema.HeaderSchema, "1"), "dlq.cmd.payment", ""},
	}

	// Poison first, then the good orders, then the rest of the poison: the
	// good ones queue behind bad ones in every consumer.
	ctx := context.Background()
	publish := func(p poison) {
		_, err := h.js.PublishMsg(ctx, &nats.Msg{Subject: p.subject, Data: p.body, Header: p.header})
		if p.dlq == "" {
			if err == nil {
				t.Errorf("%s: the server accepted it", p.name)
			} else {
				h.logf("%s: refused at publish: %v", p.name, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s: publish: %v", p.name, err)
		}
		h.fault("poison: "+p.name, p.subject)
	}
	for _, p := range poisons[:6] {
		publish(p)
	}
	l := h.drive(ctx, good, 10*time.Millisecond)
	for _, p := range poisons[6:] {
		publish(p)
	}
	good = l.wait(good)
	h.settleAndCheck(good, settleBound)

	// Every poison is in its dead-letter subject with its reason.
	var letters []*nats.Msg
	want := 0
	for _, p := range poisons {
		if p.dlq != "" {
			want++
		}
	}
	h.eventually(30*time.Second, "not every poison was dead-lettered", func() bool {
		letters = nil
		for _, subj := range []string{"dlq.order.created", "dlq.wf", "dlq.cmd.payment"} {
			letters = append(letters, h.deadLetters(subj)...)
		}
		return len(letters) >= want
	})
	for _, p := range poisons {
		if p.dlq == "" {
			continue
		}
		found := false
		for _, m := range letters {
			if m.Subject != p.dlq || !strings.Contains(m.Header.Get(schema.HeaderReason), p.reason) {
				continue
			}
			if src := m.Header.Get(schema.HeaderSourceSubject); src == p.subject && bytes.Equal(m.Data, p.body) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no dead letter on %s from %s with a reason containing %q", p.name, p.dlq, p.subject, p.reason)
		}
	}
	for _, m := range letters {
		h.logf("dead letter %s from %s: %s", m.Subject, m.Header.Get(schema.HeaderSourceSubject), m.Header.Get(schema.HeaderReason))
	}
	// No poison started a workflow.
	st, err := h.statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id := range st {
		if !strings.HasPrefix(id, "good-") {
			t.Errorf("poison started workflow %s", id)
		}
	}
}
