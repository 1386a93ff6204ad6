package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// DefaultLimit is the page size when a request names none; MaxLimit the
// largest a request may ask for.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// NATSBackend is the Backend over the engine's Go API on a JetStream
// connection with the operator's credentials: the list is
// orchestrator.ListPage, the counts orchestrator.Counts, the verbs
// orchestrator.Cancel, Terminate, Retry, Resolve and Resume, a signal
// orchestrator.SignalAndWait and a start orchestrator.StartAs. It keeps no
// state of its own between requests.
type NATSBackend struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	hist *streams.History
}

// NewNATSBackend returns the backend on nc.
func NewNATSBackend(nc *nats.Conn, js jetstream.JetStream) *NATSBackend {
	return &NATSBackend{nc: nc, js: js, hist: streams.NewHistory(nc, js)}
}

// DescribeRun returns the state and decoded history of a run of a
// workflow that continued as new (0: the current run).
func (b *NATSBackend) DescribeRun(ctx context.Context, id string, run int) (*orchestrator.Description, error) {
	return orchestrator.DescribeRun(ctx, b.hist, id, run)
}

// Describe returns a workflow's state and decoded history.
func (b *NATSBackend) Describe(ctx context.Context, id string) (*orchestrator.Description, error) {
	return orchestrator.Describe(ctx, b.hist, id)
}

// prefixRounds bounds the engine's pages one List with an ID prefix reads
// to fill its page.
const prefixRounds = 10

// List returns one page of workflows in the order of
// orchestrator.ListPage: by start time, or, with a final status or
// blocked, by the time the workflows reached it.
//
// The engine does not filter by ID: with opts.Prefix the console keeps
// the matching workflows of the engine's pages, reading up to
// prefixRounds of them until it has opts.Limit; the page may then hold
// fewer (its Next goes on) or, from the last page read, more.
func (b *NATSBackend) List(ctx context.Context, opts ListOptions) (Page, error) {
	if opts.Limit <= 0 {
		opts.Limit = DefaultLimit
	}
	opts.Limit = min(opts.Limit, MaxLimit)
	if opts.Status != "" && !opts.Status.Valid() {
		return Page{}, fmt.Errorf("status %q: want one of %s", opts.Status, statusNames())
	}
	eo := orchestrator.ListOptions{Status: opts.Status, Type: opts.Type, Since: opts.Since, Limit: opts.Limit, Cursor: opts.Cursor}
	if !opts.Until.IsZero() {
		// The engine's Until is inclusive; the console's is not.
		eo.Until = opts.Until.Add(-time.Nanosecond)
	}
	p := Page{Workflows: []Summary{}}
	for round := 0; round < prefixRounds; round++ {
		ep, err := orchestrator.ListPage(ctx, b.js, eo)
		if err != nil {
			return Page{}, err
		}
		for _, w := range ep.Workflows {
			if strings.HasPrefix(w.ID, opts.Prefix) {
				p.Workflows = append(p.Workflows, Summary{ID: w.ID, Status: w.Status, Type: w.Type, StartedAt: w.StartedAt, UpdatedAt: w.UpdatedAt, Reason: w.Reason})
			}
		}
		p.Next = ep.Next
		if opts.Prefix == "" || ep.Next == "" || len(p.Workflows) >= opts.Limit {
			break
		}
		eo.Cursor = ep.Next
	}
	return p, nil
}

// statusNames lists the statuses a list may be filtered by.
func statusNames() string {
	names := make([]string, len(statuses))
	for i, s := range statuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// Counts returns how many workflows are in each status.
func (b *NATSBackend) Counts(ctx context.Context) (map[schema.Status]int, error) {
	return orchestrator.Counts(ctx, b.js)
}

// DeadLetters returns one page of dead letters, newest first, reading only
// the page's messages (direct gets by sequence, downward).
func (b *NATSBackend) DeadLetters(ctx context.Context, opts DeadLetterOptions) (DeadLetterPage, error) {
	if opts.Limit <= 0 {
		opts.Limit = DefaultLimit
	}
	opts.Limit = min(opts.Limit, MaxLimit)
	stream, err := b.js.Stream(ctx, streams.DeadLetterStream)
	if err != nil {
		return DeadLetterPage{}, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return DeadLetterPage{}, err
	}
	top := info.State.LastSeq
	if opts.Cursor != "" {
		c, err := strconv.ParseUint(opts.Cursor, 10, 64)
		if err != nil || c == 0 {
			return DeadLetterPage{}, fmt.Errorf("cursor %q: not a cursor of this list", opts.Cursor)
		}
		top = min(top, c-1)
	}
	p := DeadLetterPage{Letters: []DeadLetter{}}
	// Deleted sequences are skipped; a page looks at most this many.
	probes := 20 * opts.Limit
	for seq := top; seq >= max(info.State.FirstSeq, 1) && seq > 0; seq-- {
		if len(p.Letters) == opts.Limit || probes == 0 {
			p.Next = strconv.FormatUint(seq+1, 10)
			break
		}
		probes--
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return DeadLetterPage{}, err
		}
		p.Letters = append(p.Letters, deadLetter(m))
	}
	return p, nil
}

// DeadLetter returns the dead letter at stream sequence seq.
func (b *NATSBackend) DeadLetter(ctx context.Context, seq uint64) (*DeadLetter, error) {
	stream, err := b.js.Stream(ctx, streams.DeadLetterStream)
	if err != nil {
		return nil, err
	}
	m, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("dead letter %d: %w", seq, streams.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	d := deadLetter(m)
	return &d, nil
}

// deadLetter decodes a dead-letter message.
func deadLetter(m *jetstream.RawStreamMsg) DeadLetter {
	d := DeadLetter{
		Seq:           m.Sequence,
		Origin:        strings.TrimPrefix(m.Subject, streams.DeadLetterPrefix+"."),
		Reason:        m.Header.Get(schema.HeaderReason),
		Time:          m.Time,
		SourceSubject: m.Header.Get(schema.HeaderSourceSubject),
		SourceStream:  m.Header.Get(schema.HeaderSourceStream),
		Truncated:     m.Header.Get(schema.HeaderTruncated),
		Body:          Readable(m.Data),
		Size:          len(m.Data),
	}
	d.SourceSeq, _ = strconv.ParseUint(m.Header.Get(schema.HeaderSourceSeq), 10, 64)
	if id, _, ok := streams.ParseSubject(d.SourceSubject); ok {
		d.WorkflowID = id
	} else if _, id, ok := streams.ParseSignalSubject(d.SourceSubject); ok {
		d.WorkflowID = id
	} else if id := m.Header.Get("Orig-" + schema.HeaderWorkflowID); id != "" {
		d.WorkflowID = id
	}
	if streams.ValidID(d.WorkflowID) != nil {
		d.WorkflowID = ""
	}
	for k, v := range m.Header {
		if name, ok := strings.CutPrefix(k, "Orig-"); ok {
			if d.Headers == nil {
				d.Headers = map[string][]string{}
			}
			d.Headers[name] = v
		}
	}
	return d
}

// Readable renders a message body for people: msgpack decoded to indented
// JSON, JSON indented, UTF-8 text as it is, anything else as a hex dump of
// its first 4 KiB.
func Readable(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	if json.Valid(body) {
		return indent(body)
	}
	if js, err := schema.ToJSON(body); err == nil {
		return indent(js)
	}
	if utf8.Valid(body) {
		return string(body)
	}
	const show = 4 << 10
	s := fmt.Sprintf("% x", body[:min(len(body), show)])
	if len(body) > show {
		s += fmt.Sprintf(" … (%d bytes)", len(body))
	}
	return s
}

func indent(js []byte) string {
	var out strings.Builder
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return string(js)
	}
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return string(js)
	}
	return strings.TrimRight(out.String(), "\n")
}

// Act applies an operator verb to workflow id. A verb that does not apply
// to the workflow in its status is an error wrapping ErrNotApplicable
// with the engine's reason.
func (b *NATSBackend) Act(ctx context.Context, verb Verb, id string, r Request) (uint64, error) {
	if err := streams.ValidID(id); err != nil {
		return 0, err
	}
	var do func(context.Context, jetstream.JetStream, string, orchestrator.Request) (uint64, error)
	switch verb {
	case VerbCancel:
		do = orchestrator.Cancel
	case VerbTerminate:
		do = orchestrator.Terminate
	case VerbRetry:
		do = orchestrator.Retry
	case VerbResolve:
		do = orchestrator.Resolve
	case VerbResume:
		do = orchestrator.Resume
	default:
		return 0, fmt.Errorf("verb %q: want one of cancel, terminate, retry, resolve, resume", verb)
	}
	seq, err := do(ctx, b.js, id, orchestrator.Request(r))
	if errors.Is(err, orchestrator.ErrNotApplicable) {
		return 0, fmt.Errorf("%w: %w", ErrNotApplicable, err)
	}
	return seq, err
}

// Signal sends signal name to workflow id, as `jetflow signal` does, and
// waits for its verdict: recorded in the history, or refused with the
// reason. If no orchestrator gives one before ctx ends (or signalWait
// passes), the verdict says only where the signal is stored.
func (b *NATSBackend) Signal(ctx context.Context, id, name string, payload []byte, _ Request) (SignalVerdict, error) {
	if err := streams.ValidID(id); err != nil {
		return SignalVerdict{}, err
	}
	if !validType(name) {
		return SignalVerdict{}, fmt.Errorf("signal name %q: want dot-separated names of letters, digits, - and _", clip(name, 80))
	}
	if len(payload) > 0 && !json.Valid(payload) {
		return SignalVerdict{}, fmt.Errorf("payload %q: not valid JSON", clip(string(payload), 80))
	}
	if len(payload) == 0 {
		payload = nil
	}
	wctx, cancel := context.WithTimeout(ctx, signalWait)
	defer cancel()
	v, err := orchestrator.SignalAndWait(wctx, b.js, id, name, payload)
	if errors.Is(err, orchestrator.ErrNoVerdict) {
		return SignalVerdict{StreamSeq: v.StreamSeq}, nil
	}
	if err != nil {
		return SignalVerdict{}, err
	}
	return SignalVerdict{Recorded: v.Recorded, HistorySeq: v.HistorySeq, Reason: v.Reason, StreamSeq: v.StreamSeq}, nil
}

// signalWait bounds the wait for a signal's verdict: the page answers
// with the signal's sequence after it.
const signalWait = 5 * time.Second

// Start starts a workflow with orchestrator.StartAs: the start records who
// asked and why as its source.
func (b *NATSBackend) Start(ctx context.Context, wfType, id string, input []byte, r Request) (bool, error) {
	if !validType(wfType) {
		return false, fmt.Errorf("workflow type %q: want dot-separated names of letters, digits, - and _", wfType)
	}
	var v any
	if len(input) > 0 {
		if err := json.Unmarshal(input, &v); err != nil {
			return false, fmt.Errorf("input %q: not valid JSON: %w", clip(string(input), 80), err)
		}
	}
	return orchestrator.StartAs(ctx, b.js, wfType, id, v, orchestrator.Request(r))
}

// validType accepts dotted names such as the workflow type
// "order.fulfillment" or the signal "carrier.picked_up".
func validType(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for _, p := range strings.Split(t, ".") {
		if streams.ValidToken(p) != nil {
			return false
		}
	}
	return true
}

// clip shortens s to n bytes for an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// sortedKeys returns a map's keys, sorted.
func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
