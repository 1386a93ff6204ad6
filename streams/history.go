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

	"jetflow/internal/failpoint"
	"jetflow/schema"
)

// Errors of the history writer.
var (
	// ErrFenced means another decision was appended to the workflow since the
	// sequence the caller replayed: re-read the tail and decide again.
	// It covers JetStream codes 10071 (wrong last sequence) and 10164
	// (another write to the subject in flight, clustered streams).
	ErrFenced = errors.New("jetflow: history moved on (fenced)")
	// ErrNotFound means the workflow has no history.
	ErrNotFound = errors.New("jetflow: workflow not found")
)

// Header names of the JetStream protocol used here.
const (
	hdrExpectedLastSubjSeq        = "Nats-Expected-Last-Subject-Sequence"
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
	Body   []byte
	// Value is the decoded body, nil when DecodeErr is set.
	Value     schema.Kinded
	DecodeErr error
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
// call is one direct-get request waiting for its replies.
type call struct {
	replies chan *nats.Msg
	// done is closed when the reader stops reading replies.
	done chan struct{}
}

// replyBuffer is how many replies of one request may wait for its reader.
const replyBuffer = 32

func (h *History) mux() error {
	h.once.Do(func() {
		h.prefix = nats.NewInbox() + "."
		_, h.subErr = h.nc.Subscribe(h.prefix+"*", func(m *nats.Msg) {
			token := m.Subject[len(h.prefix):]
			h.mu.Lock()
			c := h.calls[token]
			h.mu.Unlock()
			if c != nil {
				select {
				case c.replies <- m:
				case <-c.done: // the reader gave up
				}
			}
		})
	})
	return h.subErr
}

// appendTimeout bounds one append, all its messages included.
const appendTimeout = 10 * time.Second

const (
	readBatch = 256
	// multiLastMax is the server's cap on subjects per multi_last request.
	multiLastMax = 1024
)

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
	evs, _, err := h.get(ctx, id, map[string]any{"multi_last": []string{Tree(id)}, "seq": after + 1}, multiLastMax)
	if err == nil {
		sort.Slice(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
		return evs, nil
	}
	if !errors.Is(err, errTooMany) {
		return nil, err
	}
	var out []Event
	for {
		evs, pending, err := h.get(ctx, id, map[string]any{"seq": after + 1, "next_by_subj": Tree(id), "batch": readBatch}, readBatch)
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
func (h *History) get(ctx context.Context, id string, request map[string]any, max int) ([]Event, uint64, error) {
	token := strconv.FormatUint(h.next.Add(1), 36)
	c := &call{replies: make(chan *nats.Msg, min(max+1, replyBuffer)), done: make(chan struct{})}
	h.mu.Lock()
	h.calls[token] = c
	h.mu.Unlock()
	defer func() {
		close(c.done)
		h.mu.Lock()
		delete(h.calls, token)
		h.mu.Unlock()
	}()
	req, _ := json.Marshal(request)
	if err := h.nc.PublishRequest("$JS.API.DIRECT.GET."+HistoryStream, h.prefix+token, req); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var evs []Event
	for {
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("read history of %s: %w", id, ctx.Err())
		case m := <-c.replies:
			switch m.Header.Get("Status") {
			case "404":
				return evs, 0, nil
			case "204":
				pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				return evs, pending, nil
			case "413":
				return nil, 0, errTooMany
			case "":
			default:
				return nil, 0, fmt.Errorf("read history of %s: status %s %s", id, m.Header.Get("Status"), m.Header.Get("Description"))
			}
			seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil {
				return nil, 0, fmt.Errorf("read history of %s: bad sequence header", id)
			}
			ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
			evs = append(evs, eventFromMsg(m.Header.Get(jetstream.SubjectHeader), seq, ts, m.Header, m.Data))
		}
	}
}

// Last returns the last message on subject (wildcards allowed) in the
// history stream, or nil when there is none. It uses the stream's subject
// index, so it does not scan.
func (h *History) Last(ctx context.Context, subject string) (*Event, error) {
	req, _ := json.Marshal(map[string]any{"last_by_subj": subject})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := h.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+HistoryStream, req)
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
// Nats-Msg-Id. It returns the sequence of the last message written.
//
// On ErrFenced or any other error some of the messages may have landed (a
// refusal part way, or a lost ack): use Landed to find out which before
// deciding anything else.
func (h *History) Append(ctx context.Context, id string, expectLast uint64, msgs []*nats.Msg) (uint64, error) {
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
		ack, err := h.js.PublishMsg(ctx, m)
		if err != nil {
			return last, translate(err)
		}
		last = ack.Sequence
	}
	return last, nil
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

// translate maps JetStream errors to this package's sentinels.
func translate(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return fmt.Errorf("%w: %s", ErrFenced, apiErr.Description)
		case errCodeStoreFailed:
			// The history stream keeps one message per subject: a second one
			// is refused like a fenced write (when the server checks the
			// per-subject limit before the expected sequence).
			if strings.Contains(apiErr.Description, "maximum messages per subject") {
				return fmt.Errorf("%w: %s", ErrFenced, apiErr.Description)
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
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		if err = translate(err); errors.Is(err, ErrFenced) {
			return false, nil
		}
		return false, err
	}
	return !ack.Duplicate, nil
}
