package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
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
// connection with the operator's credentials.
//
// Each operation the engine does not have yet is one adapter function
// below (cancel, terminate, retry, resolve, resume, listPage, counts,
// signalAndWait), so wiring the engine's function is a one-line change.
type NATSBackend struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	hist *streams.History

	// The index of starts and endings, in stream order, for listPage and
	// counts until the engine pages its list itself.
	mu    sync.Mutex
	order []*entry
	byID  map[string]*entry
	next  uint64 // the history sequence to read from
	// names interns the types and statuses, which repeat.
	names map[string]string
}

// entry is one workflow in the index.
type entry struct {
	seq    uint64
	id     string
	typ    string
	time   time.Time
	status schema.Status
	reason string
	done   bool
}

// NewNATSBackend returns the backend on nc.
func NewNATSBackend(nc *nats.Conn, js jetstream.JetStream) *NATSBackend {
	return &NATSBackend{nc: nc, js: js, hist: streams.NewHistory(nc, js), byID: map[string]*entry{}, next: 1, names: map[string]string{}}
}

// Describe returns a workflow's state and decoded history.
func (b *NATSBackend) Describe(ctx context.Context, id string) (*orchestrator.Description, error) {
	return orchestrator.Describe(ctx, b.hist, id)
}

// List returns one page of workflows, newest start first.
func (b *NATSBackend) List(ctx context.Context, opts ListOptions) (Page, error) {
	if opts.Limit <= 0 {
		opts.Limit = DefaultLimit
	}
	opts.Limit = min(opts.Limit, MaxLimit)
	if opts.Status != "" && !opts.Status.Valid() {
		return Page{}, fmt.Errorf("status %q: want running, completed, compensated, manual or blocked", opts.Status)
	}
	p, err := b.listPage(ctx, opts)
	if err != nil {
		return Page{}, err
	}
	for i := range p.Workflows {
		b.fillSummary(ctx, &p.Workflows[i])
	}
	return p, nil
}

// Counts returns how many workflows are in each status.
func (b *NATSBackend) Counts(ctx context.Context) (map[schema.Status]int, error) {
	return b.counts(ctx)
}

// listPage pages the workflows. The engine's paged list replaces it:
// orchestrator.ListPage. Until then it keeps an index of the starts and
// endings in the history stream, brought up to date with what was written
// since the last page (the first page reads them all), and reads only the
// page's rows further.
func (b *NATSBackend) listPage(ctx context.Context, opts ListOptions) (Page, error) {
	var before uint64
	if opts.Cursor != "" {
		var err error
		if before, err = strconv.ParseUint(opts.Cursor, 10, 64); err != nil {
			return Page{}, fmt.Errorf("cursor %q: not a cursor of this list", opts.Cursor)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.refresh(ctx); err != nil {
		return Page{}, err
	}
	p := Page{Workflows: []Summary{}}
	var last uint64
	for i := len(b.order) - 1; i >= 0; i-- {
		e := b.order[i]
		if before != 0 && e.seq >= before ||
			opts.Status != "" && e.status != opts.Status ||
			opts.Type != "" && e.typ != opts.Type ||
			!strings.HasPrefix(e.id, opts.Prefix) ||
			!opts.Since.IsZero() && e.time.Before(opts.Since) ||
			!opts.Until.IsZero() && !e.time.Before(opts.Until) {
			continue
		}
		if len(p.Workflows) == opts.Limit {
			p.Next = strconv.FormatUint(last, 10)
			break
		}
		last = e.seq
		p.Workflows = append(p.Workflows, Summary{ID: e.id, Status: e.status, Type: e.typ, StartedAt: e.time, Reason: e.reason})
	}
	return p, nil
}

// counts counts the workflows by status. The engine's Counts replaces it:
// orchestrator.Counts.
func (b *NATSBackend) counts(ctx context.Context) (map[schema.Status]int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.refresh(ctx); err != nil {
		return nil, err
	}
	out := map[schema.Status]int{}
	for _, e := range b.order {
		out[e.status]++
	}
	return out, nil
}

// refresh reads the starts, blocks and endings written since the last
// refresh into the index; the status follows orchestrator.List: an ending
// over a block over a start. The caller holds b.mu.
func (b *NATSBackend) refresh(ctx context.Context) error {
	cons, err := b.js.OrderedConsumer(ctx, streams.HistoryStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{streams.StartFilter, streams.BlockedFilter, streams.DoneFilter},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    b.next,
		// A console stopped mid-read leaves nothing behind for long.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	// One consumer per refresh: deleted once read, not left to expire.
	defer func() { _ = b.js.DeleteConsumer(context.WithoutCancel(ctx), streams.HistoryStream, info.Name) }()
	if info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return err
	}
	defer it.Stop()
	// One refresh reads for at most refreshFor; what it read stays in the
	// index, so the next page goes on from there.
	rctx, cancel := context.WithTimeout(ctx, refreshFor)
	defer cancel()
	for n := uint64(0); n < info.NumPending; n++ {
		m, err := it.Next(jetstream.NextContext(rctx))
		if err != nil {
			return fmt.Errorf("reading the workflow index: %d of %d starts and endings read (reload to go on): %w", n, info.NumPending, err)
		}
		b.add(m)
	}
	return nil
}

// refreshFor bounds one refresh of the index.
const refreshFor = 20 * time.Second

// add puts one start, block or ending into the index.
func (b *NATSBackend) add(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	b.next = md.Sequence.Stream + 1
	id, rest, ok := streams.ParseSubject(m.Subject())
	if !ok {
		return
	}
	v, _ := schema.Decode(m.Headers().Get(schema.HeaderKind), m.Headers().Get(schema.HeaderSchema), m.Data())
	e := b.byID[id]
	switch {
	case rest == "start":
		if e != nil {
			return
		}
		e = &entry{seq: md.Sequence.Stream, id: id, time: md.Timestamp, status: schema.StatusRunning}
		if ws, ok := v.(*schema.WorkflowStarted); ok {
			e.typ = b.intern(ws.Type)
		}
		b.byID[id] = e
		b.order = append(b.order, e)
	case e == nil:
	case strings.HasPrefix(rest, "blocked."):
		if !e.done {
			e.status = schema.StatusBlocked
			if wb, ok := v.(*schema.WorkflowBlocked); ok {
				e.reason = wb.Reason
			}
		}
	case strings.HasPrefix(rest, "done."):
		e.done, e.status = true, schema.Status(b.intern(strings.TrimPrefix(rest, "done.")))
		if wf, ok := v.(*schema.WorkflowFinished); ok {
			e.reason = wf.Reason
			if e.reason == "" {
				e.reason = wf.Error
			}
		}
	}
}

// intern returns the one copy of s the index keeps.
func (b *NATSBackend) intern(s string) string {
	if v, ok := b.names[s]; ok {
		return v
	}
	if len(b.names) >= 10000 { // not a name that repeats: keep it as it is
		return s
	}
	s = strings.Clone(s)
	b.names[s] = s
	return s
}

// fillSummary reads when one listed workflow last moved.
func (b *NATSBackend) fillSummary(ctx context.Context, s *Summary) {
	s.UpdatedAt = s.StartedAt
	stream, err := b.js.Stream(ctx, streams.HistoryStream)
	if err != nil {
		return
	}
	if m, err := stream.GetLastMsgForSubject(ctx, streams.Tree(s.ID)); err == nil {
		s.UpdatedAt = m.Time
	}
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

// Act applies an operator verb to workflow id.
func (b *NATSBackend) Act(ctx context.Context, verb Verb, id string, r Request) (uint64, error) {
	if err := streams.ValidID(id); err != nil {
		return 0, err
	}
	var do func(context.Context, jetstream.JetStream, string, Request) (uint64, error)
	switch verb {
	case VerbCancel:
		do = cancel
	case VerbTerminate:
		do = terminate
	case VerbRetry:
		do = retry
	case VerbResolve:
		do = resolve
	case VerbResume:
		do = resume
	default:
		return 0, fmt.Errorf("verb %q: want one of cancel, terminate, retry, resolve, resume", verb)
	}
	return do(ctx, b.js, id, r)
}

// The operator verbs: each becomes the engine's function of that name,
// orchestrator.Cancel(ctx, js, id, orchestrator.Request(r)) and so on, with
// orchestrator.ErrNotApplicable wrapped as ErrNotApplicable (the page
// answers 409 Conflict with the engine's message).

func cancel(_ context.Context, _ jetstream.JetStream, _ string, _ Request) (uint64, error) {
	return 0, fmt.Errorf("cancel: %w", ErrNotAvailable)
}

func terminate(_ context.Context, _ jetstream.JetStream, _ string, _ Request) (uint64, error) {
	return 0, fmt.Errorf("terminate: %w", ErrNotAvailable)
}

func retry(_ context.Context, _ jetstream.JetStream, _ string, _ Request) (uint64, error) {
	return 0, fmt.Errorf("retry: %w", ErrNotAvailable)
}

func resolve(_ context.Context, _ jetstream.JetStream, _ string, _ Request) (uint64, error) {
	return 0, fmt.Errorf("resolve: %w", ErrNotAvailable)
}

func resume(_ context.Context, _ jetstream.JetStream, _ string, _ Request) (uint64, error) {
	return 0, fmt.Errorf("resume: %w", ErrNotAvailable)
}

// Signal sends signal name to workflow id, as `jetflow signal` does.
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
	return signalAndWait(ctx, b.js, id, name, payload)
}

// signalAndWait publishes the signal and returns once JetStream stored it.
// The engine's orchestrator.SignalAndWait replaces it, and waits for the
// verdict too.
func signalAndWait(ctx context.Context, js jetstream.JetStream, id, name string, payload []byte) (SignalVerdict, error) {
	ack, err := js.Publish(ctx, streams.SignalSubject(name, id), payload)
	if err != nil {
		return SignalVerdict{}, fmt.Errorf("publish %s: %w", streams.SignalSubject(name, id), err)
	}
	return SignalVerdict{StreamSeq: ack.Sequence}, nil
}

// Start starts a workflow, as orchestrator.Start does for any caller.
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
	source := "console"
	if r.Identity != "" {
		source += " (" + r.Identity + ")"
	}
	return orchestrator.Start(ctx, b.js, wfType, id, v, source)
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
