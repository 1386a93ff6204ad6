package schema

import "time"

// ArchivedEvent is one message of an archived history, as the history
// stream held it: its stream sequence, subject, time, the headers that name
// its value, and its body unchanged.
type ArchivedEvent struct {
	Seq     uint64    `msgpack:"seq" json:"seq"`
	Subject string    `msgpack:"subject" json:"subject"`
	Time    time.Time `msgpack:"time" json:"time"`
	Kind    string    `msgpack:"kind" json:"kind"`
	Schema  string    `msgpack:"schema,omitempty" json:"schema,omitempty"`
	MsgID   string    `msgpack:"msg_id,omitempty" json:"msg_id,omitempty"`
	// TraceParent is the message's W3C traceparent header, if any.
	TraceParent string `msgpack:"traceparent,omitempty" json:"traceparent,omitempty"`
	Body        []byte `msgpack:"body" json:"body"`
}

// ArchivedHistory is the archive record of a finished workflow: what
// listing needs (type, status, end time, when it was archived) and its
// whole history. A history too large for one message is split: the record
// holds the first events and says how many parts there are; the others
// are ArchivedPart messages written before it.
type ArchivedHistory struct {
	WorkflowID string    `msgpack:"workflow_id" json:"workflow_id"`
	Type       string    `msgpack:"type" json:"type"`
	Status     Status    `msgpack:"status" json:"status"`
	Ended      time.Time `msgpack:"ended" json:"ended"`
	ArchivedAt time.Time `msgpack:"archived_at" json:"archived_at"`
	// StartSeq is the stream sequence of the workflow's start event: it
	// tells this run from a later one under the same ID.
	StartSeq uint64 `msgpack:"start_seq" json:"start_seq"`
	// LastSeq is the last sequence of the tree when it was archived; the
	// tree was purged up to and including it.
	LastSeq uint64 `msgpack:"last_seq" json:"last_seq"`
	// Parts is the number of messages the history takes, this one
	// included (1 unless it was split).
	Parts  int             `msgpack:"parts" json:"parts"`
	Events []ArchivedEvent `msgpack:"events" json:"events"`
}

// ArchivedPart is part n (from 1) of a history split over several archive
// messages.
type ArchivedPart struct {
	WorkflowID string          `msgpack:"workflow_id" json:"workflow_id"`
	StartSeq   uint64          `msgpack:"start_seq" json:"start_seq"`
	Part       int             `msgpack:"part" json:"part"`
	Events     []ArchivedEvent `msgpack:"events" json:"events"`
}
