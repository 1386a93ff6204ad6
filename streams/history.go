package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/schema"
)

// Errors of the history writer.
var (
	// ErrFenced means another decision was appended to the workflow since the
	// sequence the caller replayed: re-read the tail and decide again.
	// It covers JetStream codes 10071 (wrong last sequence) and 10164
	// (another write to the subject in flight, clustered streams).
	ErrFenced = errors.New("jetflow: history moved on (fenced)")
	// ErrSubjectTaken means the fence held but the subject of a message
	// already holds one (the history stream keeps one message per
	// subject): something other than this decision was published there.
	// Re-reading does not help.
	ErrSubjectTaken = errors.New("jetflow: history subject already taken")
	// ErrNotFound means the workflow has no history.
	ErrNotFound = errors.New("jetflow: workflow not found")
)

// Header names of the JetStream protocol used here.
const (
	hdrExpectedLastSubjSeq        = "Nats-Expected-Last-Subject-Sequence"
	hdrLastSequence               = "Nats-Last-Sequence"
	hdrExpectedLastSubjSeqSubject = "Nats-Expected-Last-Subject-Sequence-Subject"
)

// Event is one message of a workflow history as read from the stream.
type Event struct {
	Seq     uint64
	Subject string
	Time    time.Time
	// Kind and Schema are the header values; Body the raw message.
	Kind   schema.Kind
	Schema string
	MsgID  string
	// TraceParent is the message's W3C traceparent header, if any.
	TraceParent string
	Body        []byte
	// Value is the decoded body, nil when DecodeErr is set.
	Value     schema.Kinded
	DecodeErr error
	// Origin is, for a message of IndexStream, its subject in the history
	// stream (from Nats-Stream-Source); "" otherwise.
	Origin string
}

func eventFromMsg(subject string, seq uint64, ts time.Time, h nats.Header, body []byte) Event {
	ev := Event{
		Seq:     seq,
		Subject: subject,
		Time:    ts,
		Kind:    schema.Kind(h.Get(schema.HeaderKind)),
		Schema:  h.Get(schema.HeaderSchema),
		MsgID:   h.Get(jetstream.MsgIDHeader),
		Body:    body,
		// The W3C trace context header (internal/tracing).
		TraceParent: h.Get("traceparent"),
		Origin:      SourceSubject(h.Get(HeaderStreamSource)),
	}
	ev.Value, ev.DecodeErr = schema.Decode(string(ev.Kind), ev.Schema, body)
	return ev
}

// NewMsg builds a history message for v on subject with the jetflow headers.
func NewMsg(subject string, v schema.Kinded) (*nats.Msg, error) {
	body, kind, err := schema.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", v.Kind(), err)
	}
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(schema.HeaderKind, string(kind))
	m.Header.Set(schema.HeaderSchema, schema.SchemaString)
	m.Header.Set(schema.HeaderContentType, schema.ContentTypeMsgpack)
	return m, nil
}

// History reads and appends workflow histories. Reads use direct get on the
// history stream, so no consumer is created per workflow; writes are fenced
// on the workflow's subject tree.
type History struct {
	nc *nats.Conn
	js jetstream.JetStream

	once   sync.Once
	subErr error
	prefix string
	next   atomic.Uint64
	mu     sync.Mutex
	calls  map[string]*call
}

// NewHistory returns a History on an open connection.
func NewHistory(nc *nats.Conn, js jetstream.JetStream) *History {
	return &History{nc: nc, js: js, calls: map[string]*call{}}
}

// mux starts the single reply subscription all reads share.
// call is one direct-get request waiting for its replies. Replies queue
// without bound, so the connection's one dispatcher never waits for a slow
// reader.
type call struct {
	mu      sync.Mutex
	replies []*nats.Msg
	ready   chan struct{} // signalled when replies were added
}

func (c *call) put(m *nats.Msg) {
	c.mu.Lock()
	c.replies = append(c.replies, m)
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

func (c *call) take() []*nats.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.replies
	c.replies = nil
	return out
}

func (h *History) mux() error {
	h.once.Do(func() {
		h.prefix = h.nc.NewInbox() + "."
		_, h.subErr = h.nc.Subscribe(h.prefix+"*", func(m *nats.Msg) {
			token := m.Subject[len(h.prefix):]
			h.mu.Lock()
			c := h.calls[token]
			h.mu.Unlock()
			if c != nil {
				c.put(m)
			}
		})
	})
	return h.subErr
}

// appendTimeout bounds one append, all its messages included.
const appendTimeout = 10 * time.Second

// readBatch is the page of a next_by_subj read of a history of more than
// the 1,024 subjects one multi_last serves.
const readBatch = 256

// errTooMany is the server's 413 answer to a multi_last over more subjects
// than it serves at once.
var errTooMany = errors.New("too many subjects")

// Read returns the events of workflow id with a stream sequence above after,
// in order. It returns no events and no error when there are none.
//
// Every message of a history has its own subject, so the history is the
// last message of every subject of wf.<id>.>: one "multi_last" direct get
// answers it from the stream's subject index, without walking the stream.
// Trees of more than 1024 subjects are read in batches with next_by_subj.
func (h *History) Read(ctx context.Context, id string, after uint64) ([]Event, error) {
	if err := h.mux(); err != nil {
		return nil, err
	}
	evs, _, err := h.get(ctx, id, map[string]any{"multi_last": []string{Tree(id)}, "seq": after + 1})
	if err == nil {
		sort.Slice(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
		return evs, nil
	}
	if !errors.Is(err, errTooMany) {
		return nil, err
	}
	return h.ReadAfter(ctx, id, after)
}

// ReadAfter is Read done by walking the stream from after (next_by_subj
// batches): it costs what the stream stored since after, every workflow's
// messages, where Read costs the number of subjects of the workflow's tree.
// A cached reader of a long history woken soon after its last read takes
// it: the read then costs what is new, not the history's length.
func (h *History) ReadAfter(ctx context.Context, id string, after uint64) ([]Event, error) {
	if err := h.mux(); err != nil {
		return nil, err
	}
	var out []Event
	for {
		evs, pending, err := h.get(ctx, id, map[string]any{"seq": after + 1, "next_by_subj": Tree(id), "batch": readBatch})
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
		if pending == 0 || len(evs) == 0 {
			return out, nil
		}
		after = evs[len(evs)-1].Seq
	}
}

// get sends one direct-get request and collects its answers until the end
// of batch, returning the events and the server's count of pending ones.
// Every reply names the sequence of the one before it (Nats-Last-Sequence),
// so a lost reply is an error, never a history with a hole.
func (h *History) get(ctx context.Context, id string, request map[string]any) ([]Event, uint64, error) {
	knowLayout(ctx, h.js)
	return h.getFrom(ctx, HistoryStreamOf(id), id, request)
}

// getFrom is get on any stream that allows direct gets.
func (h *History) getFrom(ctx context.Context, stream, id string, request map[string]any) ([]Event, uint64, error) {
	token := strconv.FormatUint(h.next.Add(1), 36)
	c := &call{ready: make(chan struct{}, 1)}
	h.mu.Lock()
	h.calls[token] = c
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.calls, token)
		h.mu.Unlock()
	}()
	req, _ := json.Marshal(request)
	if err := h.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, h.prefix+token, req); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var evs []Event
	var prev uint64
	chained := func(m *nats.Msg) error {
		if v := m.Header.Get(hdrLastSequence); v != "" && v != strconv.FormatUint(prev, 10) {
			return fmt.Errorf("read history of %s: a reply was lost (after #%d the server sent one following #%s)", id, prev, v)
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("read history of %s: %w", id, ctx.Err())
		case <-c.ready:
		}
		for _, m := range c.take() {
			switch m.Header.Get("Status") {
			case "404":
				if len(evs) > 0 {
					// "Message Not Found" after some replies: one failed to load.
					return nil, 0, fmt.Errorf("read history of %s: status 404 %s after %d events", id, m.Header.Get("Description"), len(evs))
				}
				return nil, 0, nil
			case "204":
				if err := chained(m); err != nil {
					return nil, 0, err
				}
				pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				return evs, pending, nil
			case "413":
				return nil, 0, errTooMany
			case "":
			default:
				return nil, 0, fmt.Errorf("read history of %s: status %s %s", id, m.Header.Get("Status"), m.Header.Get("Description"))
			}
			if err := chained(m); err != nil {
				return nil, 0, err
			}
			seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil {
				return nil, 0, fmt.Errorf("read history of %s: bad sequence header", id)
			}
			prev = seq
			ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
			evs = append(evs, eventFromMsg(m.Header.Get(jetstream.SubjectHeader), seq, ts, m.Header, m.Data))
		}
	}
}

// LastFromLeader is Last answered by the stream's leader rather than by any
// replica: on a clustered stream a direct get may come from a follower that
// has not applied the latest writes. Use it where a stale "none" would be
// taken for a fact.
func (h *History) LastFromLeader(ctx context.Context, subject string) (*Event, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	knowLayout(ctx, h.js)
	m, err := h.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+HistoryStreamFor(subject), req)
	if err != nil {
		return nil, fmt.Errorf("last %s: %w", subject, err)
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("last %s: %w", subject, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("last %s: %w", subject, resp.Error)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("last %s: empty answer", subject)
	}
	hdr := nats.Header{}
	if len(resp.Message.Header) > 0 {
		parsed, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("last %s: headers: %w", subject, err)
		}
		hdr = parsed
	}
	ev := eventFromMsg(resp.Message.Subject, resp.Message.Seq, resp.Message.Time, hdr, resp.Message.Data)
	return &ev, nil
}

// Last returns the last message on subject (wildcards allowed) in the
// history stream, or nil when there is none. It uses the stream's subject
// index, so it does not scan.
func (h *History) Last(ctx context.Context, subject string) (*Event, error) {
	req, _ := json.Marshal(map[string]any{"last_by_subj": subject})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	knowLayout(ctx, h.js)
	m, err := h.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+HistoryStreamFor(subject), req)
	if err != nil {
		return nil, fmt.Errorf("last %s: %w", subject, err)
	}
	switch m.Header.Get("Status") {
	case "":
	case "404":
		return nil, nil
	default:
		return nil, fmt.Errorf("last %s: status %s %s", subject, m.Header.Get("Status"), m.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("last %s: bad sequence header", subject)
	}
	ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	ev := eventFromMsg(m.Header.Get(jetstream.SubjectHeader), seq, ts, m.Header, m.Data)
	return &ev, nil
}

// Append writes msgs to the history of workflow id, fenced: the first
// message is accepted only if the last message on wf.<id>.> has sequence
// expectLast (0: the workflow has no history yet), and each following one
// only if the message before it is still the last. The messages are written
// one after the other, each once the previous one is acknowledged, so what
// lands is always a prefix of msgs in their order. Each message must carry a
// Nats-Msg-Id. It returns the sequence of the last message written and how
// many were acknowledged.
//
// On ErrFenced, ErrSubjectTaken or any other error more of the messages
// than acknowledged may have landed (a lost ack): use Landed to find out
// before deciding anything else.
func (h *History) Append(ctx context.Context, id string, expectLast uint64, msgs []*nats.Msg) (uint64, int, error) {
	// Bounded: a server that dies with a write in flight must not hang the
	// caller.
	ctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	tree := Tree(id)
	last := expectLast
	for i, m := range msgs {
		if i > 0 {
			failpoint.Hit("history.mid-append")
		}
		m.Header.Set(hdrExpectedLastSubjSeq, strconv.FormatUint(last, 10))
		m.Header.Set(hdrExpectedLastSubjSeqSubject, tree)
		ack, err := publishMsg(ctx, h.js, m)
		if err != nil {
			return last, i, translate(err)
		}
		last = ack.Sequence
	}
	return last, len(msgs), nil
}

// Landed reads the history of id after expectLast and reports how many of
// an append's messages, identified by their Nats-Msg-Ids in order, are in
// it. Append writes in order, so they are always the first n.
func (h *History) Landed(ctx context.Context, id string, expectLast uint64, msgIDs []string) (int, []Event, error) {
	evs, err := h.Read(ctx, id, expectLast)
	if err != nil {
		return 0, nil, err
	}
	stored := make(map[string]bool, len(evs))
	for _, ev := range evs {
		stored[ev.MsgID] = true
	}
	n := 0
	for n < len(msgIDs) && stored[msgIDs[n]] {
		n++
	}
	return n, evs, nil
}

// errCodeStoreFailed is the JetStream error code of a write the store
// refused (JSStreamStoreFailedF), among others for a per-subject limit.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// StreamFull reports whether err is a publish the stream refused because
// it is at its bound (MaxBytes or MaxMsgs with DiscardNew), with the
// server's description ("maximum bytes exceeded"): the message is not
// stored, and sending it again only succeeds once there is room.
func StreamFull(err error) (reason string, full bool) {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed &&
		(strings.Contains(apiErr.Description, "maximum bytes exceeded") || strings.Contains(apiErr.Description, "maximum messages exceeded")) {
		return apiErr.Description, true
	}
	return "", false
}

// translate maps JetStream errors to this package's sentinels.
func translate(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return fmt.Errorf("%w: %s", ErrFenced, apiErr.Description)
		case errCodeStoreFailed:
			// The history stream keeps one message per subject. The server
			// checks the expected sequences first, so this refusal means the
			// fence held and the subject was taken by someone else.
			if strings.Contains(apiErr.Description, "maximum messages per subject") {
				return fmt.Errorf("%w: %s", ErrSubjectTaken, apiErr.Description)
			}
		}
	}
	return err
}

// PublishFirst publishes m only if no message was ever published on its
// subject, and reports whether this call wrote it. A retry of the same
// message within the duplicate window (same Nats-Msg-Id) counts as written
// by the first call, not this one.
func PublishFirst(ctx context.Context, js jetstream.JetStream, m *nats.Msg) (bool, error) {
	m.Header.Set(hdrExpectedLastSubjSeq, "0")
	m.Header.Set(hdrExpectedLastSubjSeqSubject, m.Subject)
	ack, err := publishMsg(ctx, js, m)
	if err != nil {
		if err = translate(err); errors.Is(err, ErrFenced) || errors.Is(err, ErrSubjectTaken) {
			return false, nil
		}
		return false, err
	}
	return !ack.Duplicate, nil
}
