package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
)

// ArchiveStream holds the histories of archived workflows, one message per
// workflow on arch.<id> (the history as msgpack, compressed by the server),
// aged out by its own limits (Topology.ArchiveMaxAge, ArchiveMaxBytes).
const ArchiveStream = "JETFLOW_ARCHIVE"

// ArchivePrefix starts the subjects of ArchiveStream.
const ArchivePrefix = "arch"

// ArchiveFilter matches the archive records, one per workflow (not the
// extra parts of a split history, arch.<id>.part.<n>).
const ArchiveFilter = ArchivePrefix + ".*"

// ArchiveSubject is where the archive record of workflow id is written.
func ArchiveSubject(id string) string { return ArchivePrefix + "." + id }

// ArchivePartSubject is part n (from 1) of a history split over several
// archive messages.
func ArchivePartSubject(id string, n int) string {
	return ArchivePrefix + "." + id + ".part." + strconv.Itoa(n)
}

// ErrArchived means the workflow is no longer in the history stream: its
// history is in ArchiveStream, read-only.
var ErrArchived = errors.New("jetflow: workflow archived")

// Stream names of the buckets the archiver cleans after a workflow.
const (
	kvIdempotencyStream = "KV_" + IdempotencyBucket
	kvTimersStream      = "KV_" + TimersBucket
)

// archiveConfig is the configuration of ArchiveStream.
func (t Topology) archiveConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        ArchiveStream,
		Description: "jetflow archive: the histories of finished workflows past retention, arch.<workflow id>",
		Subjects:    []string{ArchivePrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
		// One subject per archived workflow (a split history adds one per
		// extra part), removed with the record when it ages out: the
		// server's memory for the archive is bounded by its limits.
		MaxAge:      t.ArchiveMaxAge,
		MaxBytes:    orDefault64(t.ArchiveMaxBytes, -1),
		Discard:     jetstream.DiscardOld,
		Compression: jetstream.S2Compression,
		AllowDirect: true,
		DenyDelete:  true,
		Duplicates:  boundedBy(t.DuplicateWindow, t.ArchiveMaxAge),
		MaxMsgSize:  t.MaxMsgSize + 64<<10,
	}
}

// boundedBy is window, shortened to maxAge when that is set and shorter:
// the server refuses a stream whose duplicate window outlasts its
// messages (a short --archive-retention).
func boundedBy(window, maxAge time.Duration) time.Duration {
	if maxAge > 0 && maxAge < window {
		return maxAge
	}
	return window
}

func orDefault64(n, def int64) int64 {
	if n <= 0 {
		return def
	}
	return n
}

// apiRequest sends a JetStream API request and decodes its answer into
// resp, returning the API error, if any, as *jetstream.APIError.
func apiRequest(ctx context.Context, nc *nats.Conn, subject string, req any, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return err
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if r.Error != nil {
		return r.Error
	}
	if resp != nil {
		return json.Unmarshal(m.Data, resp)
	}
	return nil
}

// Purge removes the messages of stream on filter with a sequence below
// below (0: all of them) and returns how many it removed. The history
// stream allows it for the archiver only (see docs/ARCHITECTURE.md): a
// purge bounded by the last sequence read never removes what was written
// after the read.
func Purge(ctx context.Context, nc *nats.Conn, stream, filter string, below uint64) (uint64, error) {
	req := map[string]any{"filter": filter}
	if below > 0 {
		req["seq"] = below
	}
	var resp struct {
		Purged uint64 `json:"purged"`
	}
	if err := apiRequest(ctx, nc, "$JS.API.STREAM.PURGE."+stream, req, &resp); err != nil {
		return 0, fmt.Errorf("purge %s of %s: %w", filter, stream, err)
	}
	return resp.Purged, nil
}

// DeleteMsg removes message seq of stream; a message already gone is no
// error.
func DeleteMsg(ctx context.Context, nc *nats.Conn, stream string, seq uint64) error {
	err := apiRequest(ctx, nc, "$JS.API.STREAM.MSG.DELETE."+stream, map[string]any{"seq": seq, "no_erase": true}, nil)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound || apiErr.Code == 404 || apiErr.ErrorCode == errCodeSequenceNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s #%d: %w", stream, seq, err)
	}
	return nil
}

// DeleteSignal removes message seq of SignalsStream if it is the signal a
// history recorded under that sequence at time recorded: on subject, and
// stored no later than that. A message gone already, or any other (the
// stream was made anew since and its sequences began again), is left, and
// is no error. The server's own Nats-Subject and Nats-Time-Stamp headers
// are the last of their names (a publisher's headers come first).
func DeleteSignal(ctx context.Context, nc *nats.Conn, subject string, seq uint64, recorded time.Time) error {
	m, err := directMsg(ctx, nc, SignalsStream, map[string]any{"seq": seq})
	if err != nil || m == nil || lastHeader(m.Header, jetstream.SubjectHeader) != subject {
		return err
	}
	stored, err := time.Parse(time.RFC3339Nano, lastHeader(m.Header, jetstream.TimeStampHeaer))
	if err != nil || stored.After(recorded) {
		return nil
	}
	return DeleteMsg(ctx, nc, SignalsStream, seq)
}

// lastHeader is the last value of header name, "" when there is none.
func lastHeader(h nats.Header, name string) string {
	v := h.Values(name)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// errCodeSequenceNotFound is the server's answer to deleting a message
// that is not there (JSSequenceNotFoundErrF).
const errCodeSequenceNotFound jetstream.ErrorCode = 10057

// PurgeWorkflowKeys removes what the buckets hold under workflow id: the
// participants' idempotency records (<service>.<id>.<command>, and their
// heartbeat details) and the timers' entries and delete markers
// (<id>.<timer>). A purge leaves no marker, so nothing of the workflow
// keeps a subject in the server's memory. Run it only once the history is
// archived: a key removed from the idempotency bucket is open again.
// timers false skips the timers bucket: for a history that started no
// timer, which has no key there (every key is put after its
// TimerStarted event is stored), one request less.
func PurgeWorkflowKeys(ctx context.Context, nc *nats.Conn, id string, timers bool) error {
	if _, err := Purge(ctx, nc, kvIdempotencyStream, "$KV."+IdempotencyBucket+".*."+id+".>", 0); err != nil {
		return err
	}
	if !timers {
		return nil
	}
	_, err := Purge(ctx, nc, kvTimersStream, "$KV."+TimersBucket+"."+id+".>", 0)
	return err
}

// directMsg sends one direct get to stream and returns the message, or nil
// when there is none.
func directMsg(ctx context.Context, nc *nats.Conn, stream string, req map[string]any) (*nats.Msg, error) {
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream, body)
	return directReply(m, err, stream)
}

// LastBySubject returns the last message of stream on subject, read with a
// direct get addressed to the subject (a role can be granted that for some
// subjects only), or nil when there is none.
func LastBySubject(ctx context.Context, nc *nats.Conn, stream, subject string) (*nats.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream+"."+subject, nil)
	return directReply(m, err, subject)
}

// directReply reads a direct get's answer: the message, nil for "no
// message" (404), an error naming what was read otherwise.
func directReply(m *nats.Msg, err error, what string) (*nats.Msg, error) {
	if err != nil {
		return nil, fmt.Errorf("direct get %s: %w", what, err)
	}
	switch m.Header.Get("Status") {
	case "":
		return m, nil
	case "404":
		return nil, nil
	default:
		return nil, fmt.Errorf("direct get %s: status %s %s", what, m.Header.Get("Status"), m.Header.Get("Description"))
	}
}

// Archived returns the archive record of workflow id (with the events of
// its first part), or nil when it has none. id may be the history ID of a
// run (RunID): a workflow that continued as new is archived whole, every
// run in the one record of its workflow ID.
func (h *History) Archived(ctx context.Context, id string) (*schema.ArchivedHistory, error) {
	if wid, run := ParseRunID(id); run > 1 {
		id = wid
	}
	m, err := directMsg(ctx, h.nc, ArchiveStream, map[string]any{"last_by_subj": ArchiveSubject(id)})
	if err != nil || m == nil {
		return nil, err
	}
	var rec schema.ArchivedHistory
	if err := schema.Msgpack.Unmarshal(m.Data, &rec); err != nil {
		return nil, fmt.Errorf("archive record of %s: %w", id, err)
	}
	return &rec, nil
}

// ArchivedEvents returns the whole history of an archive record, the
// parts it was split into included, as the history stream held it.
func (h *History) ArchivedEvents(ctx context.Context, rec *schema.ArchivedHistory) ([]Event, error) {
	all := rec.Events
	for n := 1; n < rec.Parts; n++ {
		m, err := directMsg(ctx, h.nc, ArchiveStream, map[string]any{"last_by_subj": ArchivePartSubject(rec.WorkflowID, n)})
		if err != nil {
			return nil, err
		}
		var p schema.ArchivedPart
		if m == nil {
			return nil, fmt.Errorf("archive of %s: part %d of %d is missing", rec.WorkflowID, n, rec.Parts)
		}
		if err := schema.Msgpack.Unmarshal(m.Data, &p); err != nil {
			return nil, fmt.Errorf("archive of %s: part %d: %w", rec.WorkflowID, n, err)
		}
		all = append(all, p.Events...)
	}
	evs := make([]Event, len(all))
	for i, a := range all {
		hdr := nats.Header{}
		hdr.Set(schema.HeaderKind, a.Kind)
		hdr.Set(schema.HeaderSchema, a.Schema)
		if a.MsgID != "" {
			hdr.Set(jetstream.MsgIDHeader, a.MsgID)
		}
		if a.TraceParent != "" {
			hdr.Set("traceparent", a.TraceParent)
		}
		evs[i] = eventFromMsg(a.Subject, a.Seq, a.Time, hdr, a.Body)
	}
	return evs, nil
}

// ArchivedEventsOf converts history events to their archived form.
func ArchivedEventsOf(evs []Event) []schema.ArchivedEvent {
	out := make([]schema.ArchivedEvent, len(evs))
	for i, ev := range evs {
		out[i] = schema.ArchivedEvent{Seq: ev.Seq, Subject: ev.Subject, Time: ev.Time, Kind: string(ev.Kind),
			Schema: ev.Schema, MsgID: ev.MsgID, TraceParent: ev.TraceParent, Body: ev.Body}
	}
	return out
}

// archivePartBudget is what one archive message may hold of events: the
// max payload less room for the record's own fields and headers.
func archivePartBudget(maxPayload int) int { return maxPayload - 16<<10 }

// archivedSize estimates the encoded size of one archived event.
func archivedSize(a schema.ArchivedEvent) int {
	return len(a.Body) + len(a.Subject) + len(a.Kind) + len(a.Schema) + len(a.MsgID) + len(a.TraceParent) + 96
}

// WriteArchive stores rec (its Events are the whole history) in
// ArchiveStream, unless workflow rec.WorkflowID already has a record
// there: it then writes nothing and returns that record. A history larger
// than one message is split, its extra parts written first, so a record
// is only ever found whole. It returns the record as stored and whether
// this call wrote it. The write is acknowledged by JetStream when it
// returns nil.
func (h *History) WriteArchive(ctx context.Context, rec *schema.ArchivedHistory) (*schema.ArchivedHistory, bool, error) {
	budget := archivePartBudget(MaxPayload(h.nc))
	var parts [][]schema.ArchivedEvent
	size, from := 0, 0
	for i, a := range rec.Events {
		if n := archivedSize(a); size+n > budget && i > from {
			parts = append(parts, rec.Events[from:i])
			size, from = 0, i
		}
		size += archivedSize(a)
	}
	parts = append(parts, rec.Events[from:])
	if len(parts) > 1 {
		// Parts are written before the record: look first, so that a
		// record already there gets no second set of parts. A record of
		// one message needs no look: its write expects an empty subject.
		if old, err := h.Archived(ctx, rec.WorkflowID); err != nil || old != nil {
			return old, false, err
		}
	}
	for n := 1; n < len(parts); n++ {
		body, err := schema.Msgpack.Marshal(&schema.ArchivedPart{WorkflowID: rec.WorkflowID, StartSeq: rec.StartSeq, Part: n, Events: parts[n]})
		if err != nil {
			return nil, false, err
		}
		m := nats.NewMsg(ArchivePartSubject(rec.WorkflowID, n))
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("arch-%s-%d-%d", rec.WorkflowID, rec.StartSeq, n))
		if _, err := h.js.PublishMsg(ctx, m); err != nil {
			return nil, false, fmt.Errorf("archive %s part %d: %w", rec.WorkflowID, n, err)
		}
	}
	whole := rec.Events
	rec.Parts, rec.Events = len(parts), parts[0]
	defer func() { rec.Events = whole }()
	body, err := schema.Msgpack.Marshal(rec)
	if err != nil {
		return nil, false, err
	}
	m := nats.NewMsg(ArchiveSubject(rec.WorkflowID))
	m.Data = body
	// No Nats-Msg-Id: the expected-last-subject-sequence of 0 already
	// makes a retry harmless, and the server would keep every ID of the
	// duplicate window in memory.
	m.Header.Set(schema.HeaderWorkflowID, rec.WorkflowID)
	m.Header.Set(schema.HeaderStatus, string(rec.Status))
	written, err := PublishFirst(ctx, h.js, m)
	if err != nil {
		return nil, false, fmt.Errorf("archive %s: %w", rec.WorkflowID, err)
	}
	if written {
		stored := *rec
		return &stored, true, nil
	}
	// Another archiver wrote it first (or an earlier attempt of this one,
	// within the duplicate window): the stored record is the one.
	old, err := h.Archived(ctx, rec.WorkflowID)
	if err == nil && old == nil {
		err = fmt.Errorf("archive %s: the record was refused as a duplicate but cannot be read", rec.WorkflowID)
	}
	return old, false, err
}

// ArchivedEntry is one archived workflow as listed: no history.
type ArchivedEntry struct {
	// Seq is the record's sequence in ArchiveStream: a listing's cursor.
	Seq        uint64        `json:"-"`
	ID         string        `json:"id"`
	Type       string        `json:"type"`
	Status     schema.Status `json:"status"`
	Ended      time.Time     `json:"ended"`
	ArchivedAt time.Time     `json:"archived_at"`
}

// ArchivedPage lists archive records in the order they were archived:
// from the first one archived at or after since (zero: the oldest kept),
// or after the cursor after (a record's Seq) when it is not 0, up to limit
// records archived before until (zero: no end). It returns the entries and
// the cursor of the next page (0 when there is none).
func (h *History) ArchivedPage(ctx context.Context, since, until time.Time, after uint64, limit int) ([]ArchivedEntry, uint64, error) {
	var out []ArchivedEntry
	next, err := h.archivedRecords(ctx, since, until, after, limit, func(seq uint64, data []byte) error {
		// Decoded without its events: listing reads what it shows.
		var rec struct {
			WorkflowID string        `msgpack:"workflow_id"`
			Type       string        `msgpack:"type"`
			Status     schema.Status `msgpack:"status"`
			Ended      time.Time     `msgpack:"ended"`
			ArchivedAt time.Time     `msgpack:"archived_at"`
		}
		if err := schema.Msgpack.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("list archive: record #%d: %w", seq, err)
		}
		out = append(out, ArchivedEntry{Seq: seq, ID: rec.WorkflowID, Type: rec.Type, Status: rec.Status, Ended: rec.Ended, ArchivedAt: rec.ArchivedAt})
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if out == nil {
		out = []ArchivedEntry{}
	}
	return out, next, nil
}

// ArchivedRecord is an archive record as stored, with its sequence in
// ArchiveStream (a cursor, as ArchivedEntry.Seq).
type ArchivedRecord struct {
	Seq    uint64
	Record *schema.ArchivedHistory
}

// ArchivedRecords is ArchivedPage with whole records: their first part,
// events included (ArchivedEvents reads the rest of a split one). A record
// that does not decode ends the page with a *BadRecordError; the records
// before it are returned with it.
func (h *History) ArchivedRecords(ctx context.Context, since, until time.Time, after uint64, limit int) ([]ArchivedRecord, uint64, error) {
	var out []ArchivedRecord
	next, err := h.archivedRecords(ctx, since, until, after, limit, func(seq uint64, data []byte) error {
		var rec schema.ArchivedHistory
		if err := schema.Msgpack.Unmarshal(data, &rec); err != nil {
			return &BadRecordError{Seq: seq, Err: err}
		}
		out = append(out, ArchivedRecord{Seq: seq, Record: &rec})
		return nil
	})
	return out, next, err
}

// BadRecordError is an archive record that cannot be read: Seq, its
// sequence in ArchiveStream, is the cursor that goes on after it.
type BadRecordError struct {
	Seq uint64
	Err error
}

func (e *BadRecordError) Error() string {
	return fmt.Sprintf("archive record %d: %v", e.Seq, e.Err)
}

func (e *BadRecordError) Unwrap() error { return e.Err }

// archivedRecords walks the archive records of ArchivedPage, one direct
// get each, handing each record's sequence and body to take, and returns
// the cursor of the next page (0 when there is none).
func (h *History) archivedRecords(ctx context.Context, since, until time.Time, after uint64, limit int, take func(seq uint64, data []byte) error) (uint64, error) {
	req := map[string]any{"next_by_subj": ArchiveFilter}
	switch {
	case after > 0:
		req["seq"] = after + 1
	case !since.IsZero():
		req["start_time"] = since.UTC().Format(time.RFC3339Nano)
	default:
		req["seq"] = 1
	}
	var last uint64
	for n := 0; n < limit; n++ {
		m, err := directMsg(ctx, h.nc, ArchiveStream, req)
		if err != nil {
			return 0, err
		}
		if m == nil {
			return 0, nil
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return 0, errors.New("read archive: bad sequence header")
		}
		ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		if !until.IsZero() && !ts.Before(until) {
			return 0, nil
		}
		if err := take(seq, m.Data); err != nil {
			return 0, err
		}
		last = seq
		req = map[string]any{"next_by_subj": ArchiveFilter, "seq": seq + 1}
	}
	return last, nil
}

// keepDenyPurge keeps DenyPurge on a history stream created with it (by a
// version before archival): the server never lifts it in place ("can not
// cancel deny purge"), so such a stream is updated otherwise and its
// workflows are not archived (HistoryPurgeable reports it).
func keepDenyPurge(ctx context.Context, js jetstream.JetStream, cfg *jetstream.StreamConfig) error {
	old, err := existingConfig(ctx, js, cfg.Name)
	if err == nil && old != nil && old.DenyPurge {
		cfg.DenyPurge = true
	}
	return err
}

// existingConfig is the configuration of stream name, nil when there is
// no such stream.
func existingConfig(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamConfig, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return &s.CachedInfo().Config, nil
}

// keepSchedules keeps message schedules, and the subjects, of a signals
// stream made with them (by a version before the callbacks streams): the
// server never turns schedules off in place ("message schedules can not be
// disabled"), so such a stream is updated otherwise, and SignalsRollupExposed
// says what it leaves open. Schedules refuse DiscardNew, so such a stream
// keeps its DiscardOld and takes no bound: dropping its oldest signals
// would lose those not yet recorded.
func keepSchedules(ctx context.Context, js jetstream.JetStream, cfg *jetstream.StreamConfig) error {
	old, err := existingConfig(ctx, js, cfg.Name)
	if err == nil && old != nil && old.AllowMsgSchedules {
		cfg.AllowMsgSchedules = true
		cfg.Subjects = old.Subjects
		cfg.Discard = old.Discard
		cfg.MaxBytes = old.MaxBytes
	}
	return err
}

// SignalsRollupExposed reports an error when the signals stream allows
// message schedules (it was made by a version before the callbacks
// streams): the server then allows roll-ups on it, so any party that may
// send a signal can remove every signal not yet recorded with a
// Nats-Rollup header. The engine refuses such a signal and says so, but the
// signals it removed are gone.
func SignalsRollupExposed(ctx context.Context, js jetstream.JetStream) error {
	cfg, err := existingConfig(ctx, js, SignalsStream)
	if err != nil {
		return err
	}
	if cfg != nil && cfg.AllowMsgSchedules {
		return fmt.Errorf("%s allows message schedules (made by an earlier version; the server cannot turn them off in place), so it allows roll-ups: any signal publisher can remove the signals not yet recorded, and it takes no bound (--signals-max-bytes); docs/ARCHITECTURE.md, \"Trust boundary\", says how to make it anew", SignalsStream)
	}
	return nil
}

// HistoryPurgeable reports an error when the history stream denies purge
// (it was created before archival, and the server cannot lift that in
// place): its finished workflows cannot be removed, so they are not
// archived.
func HistoryPurgeable(ctx context.Context, js jetstream.JetStream) error {
	// A partitioned history is made with purge allowed: only the single
	// stream can be older than archival.
	s, err := js.Stream(ctx, HistoryStreams()[0])
	if err != nil {
		return fmt.Errorf("history stream: %w", err)
	}
	if s.CachedInfo().Config.DenyPurge {
		return fmt.Errorf("%s denies purge (created before archival; the server cannot lift that in place): finished workflows are kept in it, not archived; docs/ARCHITECTURE.md, \"Retention and archival\", says how to move to a stream that allows it", HistoryStream)
	}
	return nil
}

// ArchiverConsumer is the durable consumer all orchestrators share to
// archive finished workflows: the end events of IndexStream, in the order
// the workflows ended.
const ArchiverConsumer = "jetflow-archiver"

// DefaultArchiverMaxDeliver bounds the deliveries of one end event to the
// archiver: an archive that fails this often is dead-lettered (dlq.archive)
// and its workflow stays in the history.
const DefaultArchiverMaxDeliver = 20

// ArchiverConsumerConfig is the configuration of ArchiverConsumer.
func ArchiverConsumerConfig(ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ArchiverConsumer,
		Description:   "jetflow archiver: archive and remove finished workflows past retention",
		FilterSubject: IndexDoneFilter(""),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       ackWait,
		MaxDeliver:    DefaultArchiverMaxDeliver,
		// An archiver holds the ends it fetched until they are old enough:
		// a few batches per orchestrator.
		MaxAckPending: 4096,
	}
}

// SourceSeq returns the sequence a message of IndexStream had in the
// history stream, from its Nats-Stream-Source header value, or 0.
func SourceSeq(header string) uint64 {
	f := strings.Split(header, " ")
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(f[1], 10, 64)
	return n
}

// purgeInFlight bounds the purge requests PurgeEvents has in flight.
const purgeInFlight = 64

// PurgeEvents removes the history events evs, each by a purge of its own
// subject bounded by its sequence, up to purgeInFlight requests in flight
// together. A
// purge of one message is what the server handles cheaply: a purge that
// removes several (a whole tree at once) makes every consumer of the
// stream recount its pending messages over the whole stream, which at
// hundreds of archives a second costs more than the orders themselves
// (docs/BENCHMARKS.md). The history keeps one message per subject, so a
// subject's purge removes exactly the event read, never one written after.
func PurgeEvents(ctx context.Context, nc *nats.Conn, evs []Event) error {
	errs := make([]error, len(evs))
	sem := make(chan struct{}, purgeInFlight)
	var wg sync.WaitGroup
	for i, ev := range evs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, errs[i] = Purge(ctx, nc, HistoryStreamFor(ev.Subject), ev.Subject, ev.Seq+1)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
