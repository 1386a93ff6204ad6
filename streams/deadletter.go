package streams

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
)

// Bounds of a dead letter's parts. The body gets what is left of the max
// payload after the headers.
const (
	// maxReason bounds the reason header.
	maxReason = 2048
	// maxOrigValue bounds each copied Orig-* header value.
	maxOrigValue = 1024
	// maxOrigName bounds the name of a copied header; a longer one is
	// dropped (a cut name would no longer name anything).
	maxOrigName = 256
	// maxOrigTotal bounds all copied Orig-* headers together; the values
	// beyond it are dropped.
	maxOrigTotal = 32 << 10
	// maxTruncated bounds the Jetflow-Truncated header itself.
	maxTruncated = 1024
	// dlqReserve is kept free of body for the Jetflow-Truncated header and
	// the publish's own overhead.
	dlqReserve = maxTruncated + 256
)

// DeadLetter copies a refused message to dlq.<origin> with the reason and
// where it came from, and returns once JetStream has stored it. The caller
// acks the original only after this returns nil, so a refused message is
// never lost and never blocks the messages behind it.
//
// The copy always fits the connection's max payload, whatever the refused
// message holds: the reason is cut to 2 KiB, each copied Orig-* header
// value to 1 KiB (32 KiB for all of them), and the body to what is left.
// What was cut is listed in Jetflow-Truncated ("body 1048000 bytes, kept
// 1012345; header Orig-X 66560 bytes, kept 1024"). Nothing is lost: the
// original stays whole in its stream, named by Jetflow-Source-Stream and
// Jetflow-Source-Seq.
//
// A signal's dead letter goes to dlq.signal.<seq>, seq being the signal's
// sequence in SignalsStream, so the verdict on one signal is found by
// subject (SignalDeadLetter) without reading the others.
func DeadLetter(ctx context.Context, js jetstream.JetStream, origin string, src jetstream.Msg, reason string) error {
	subject := DeadLetterSubject(origin)
	if md, err := src.Metadata(); err == nil && origin == SignalOrigin && md.Stream == SignalsStream {
		subject = SignalDeadLetterSubject(md.Sequence.Stream)
	}
	m := deadLetterMsg(subject, src, reason, MaxPayload(js.Conn()))
	_, err := js.PublishMsg(ctx, m)
	return err
}

// deadLetterMsg builds the dead-letter copy of src, at most limit bytes.
func deadLetterMsg(subject string, src jetstream.Msg, reason string, limit int) *nats.Msg {
	m := nats.NewMsg(subject)
	var cut []string
	if len(reason) > maxReason {
		cut = append(cut, fmt.Sprintf("reason %d bytes, kept %d", len(reason), maxReason))
		reason = Clip(reason, maxReason)
	}
	m.Header.Set(schema.HeaderReason, reason)
	m.Header.Set(schema.HeaderSourceSubject, src.Subject())
	if md, err := src.Metadata(); err == nil {
		m.Header.Set(schema.HeaderSourceStream, md.Stream)
		m.Header.Set(schema.HeaderSourceSeq, strconv.FormatUint(md.Sequence.Stream, 10))
		// One dead letter per source message, however often it is redelivered.
		m.Header.Set(jetstream.MsgIDHeader, "dlq-"+md.Stream+"-"+strconv.FormatUint(md.Sequence.Stream, 10))
	}

	h := src.Headers()
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	copied, dropped := 0, 0
	for _, k := range keys {
		if len(k) > maxOrigName {
			cut = append(cut, fmt.Sprintf("header name of %d bytes dropped", len(k)))
			continue
		}
		for _, v := range h[k] {
			if copied >= maxOrigTotal {
				dropped++
				continue
			}
			if len(v) > maxOrigValue {
				cut = append(cut, fmt.Sprintf("header Orig-%s %d bytes, kept %d", k, len(v), maxOrigValue))
				v = Clip(v, maxOrigValue)
			}
			m.Header.Add("Orig-"+k, v)
			copied += len("Orig-") + len(k) + len(v) + 4
		}
	}
	if dropped > 0 {
		cut = append(cut, fmt.Sprintf("%d header values dropped", dropped))
	}

	body := src.Data()
	if room := max(limit-MsgSize(m)-dlqReserve, 0); len(body) > room {
		cut = append(cut, fmt.Sprintf("body %d bytes, kept %d", len(body), room))
		body = body[:room]
	}
	m.Data = body
	if len(cut) > 0 {
		m.Header.Set(schema.HeaderTruncated, Clip(strings.Join(cut, "; "), maxTruncated-32))
	}
	return m
}

// Reason classes: the short, bounded names of ReasonClass.
const (
	ReasonLastDelivery         = "last_delivery"
	ReasonUndecodable          = "undecodable"
	ReasonUnknownWorkflow      = "unknown_workflow"
	ReasonFinishedWorkflow     = "finished_workflow"
	ReasonUnknownAction        = "unknown_action"
	ReasonBadSubject           = "bad_subject"
	ReasonTooLarge             = "too_large"
	ReasonConflictingDuplicate = "conflicting_duplicate"
	ReasonSignalCap            = "signal_cap"
	ReasonSignalRule           = "signal_rule"
	ReasonInvalid              = "invalid"
	ReasonOther                = "other"
)

// reasonClasses maps a phrase of a dead-letter reason to its class; the
// first that matches wins.
var reasonClasses = []struct{ phrase, class string }{
	{"crashed or timed out", ReasonLastDelivery},
	{"undecodable", ReasonUndecodable},
	{"message kind", ReasonUndecodable},
	{"unknown workflow", ReasonUnknownWorkflow},
	{"finished workflow", ReasonFinishedWorkflow},
	{"has no handler for action", ReasonUnknownAction},
	{"conflicting duplicate", ReasonConflictingDuplicate},
	{"signals waiting, the limit", ReasonSignalCap},
	{"the limit is", ReasonTooLarge},
	{"bytes, more than", ReasonTooLarge},
	{"max payload", ReasonTooLarge},
	{"does not belong on subject", ReasonBadSubject},
	{"is not a result subject", ReasonBadSubject},
	{"subject must be", ReasonBadSubject},
	{"not a workflow history subject", ReasonBadSubject},
	{"already holds a message", ReasonBadSubject},
	{"already recorded at history seq", ReasonSignalRule},
	{" refused: ", ReasonSignalRule},
	{"invalid", ReasonInvalid},
}

// ReasonClass reduces a dead-letter reason (the Jetflow-Reason header) to
// one of a few short classes (ReasonLastDelivery, ReasonTooLarge, ...,
// ReasonOther), for a metric label or a summary: a reason quotes values,
// a class does not.
func ReasonClass(reason string) string {
	for _, c := range reasonClasses {
		if strings.Contains(reason, c.phrase) {
			return c.class
		}
	}
	return ReasonOther
}
