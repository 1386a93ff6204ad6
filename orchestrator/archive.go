package orchestrator

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// DefaultRetention is how long a finished workflow stays in the history
// stream before it is archived, in the jetflow binary (--retention). The
// library's Config.Retention defaults to 0, keep for ever.
const DefaultRetention = 7 * 24 * time.Hour

// Archiver tuning.
const (
	// archiveBatch is how many end events one archiver fetches at a time.
	archiveBatch = 64
	// archiveConcurrency bounds the archives in flight per orchestrator.
	archiveConcurrency = 16
	// archivePoll is how often an archiver waiting for an end to be old
	// enough reads its clock again, and how long it waits when there is
	// nothing to fetch.
	archivePoll = 250 * time.Millisecond
	// archiveOrigin is the dead-letter origin of an end event the
	// archiver gave up on.
	archiveOrigin = "archive"
)

// archivable reports whether a workflow of status s may be archived: it
// ended and waits for nobody. A manual workflow waits for a person, a
// blocked or running one for its code.
func archivable(s schema.Status) bool {
	return s.Terminal() && s != schema.StatusManual
}

// runArchiver archives the workflows that ended more than Retention ago,
// until ctx is done. Every orchestrator runs one; they share the durable
// consumer of the index's end events, which come in the order the
// workflows ended. An archiver holds what it fetched until each end is old
// enough (the ones behind it ended later), keeping them in progress, so no
// end is redelivered or counted before its time.
func (o *Orchestrator) runArchiver(ctx context.Context) {
	log := o.log.With("part", "archiver")
	if err := streams.HistoryPurgeable(ctx, o.cfg.JS); err != nil {
		log.Error("archival is off", "err", err)
		return
	}
	var cons jetstream.Consumer
	err := streams.Await(ctx, log, "create the archiver's consumer", func(ctx context.Context) (err error) {
		cons, err = o.cfg.JS.CreateOrUpdateConsumer(ctx, streams.IndexStream, streams.ArchiverConsumerConfig(o.cfg.AckWait))
		return err
	})
	if err != nil || cons == nil {
		if ctx.Err() == nil {
			log.Error("archival is off", "err", err)
		}
		return
	}
	log.Info("archiver running", "retention", o.cfg.Retention)
	for ctx.Err() == nil {
		batch, err := cons.FetchNoWait(archiveBatch)
		var msgs []jetstream.Msg
		if err == nil {
			for m := range batch.Messages() {
				msgs = append(msgs, m)
			}
			err = batch.Error()
		}
		if err != nil && ctx.Err() == nil {
			log.Debug("archiver fetch", "err", err)
		}
		if len(msgs) == 0 {
			o.cfg.Metrics.ArchiveLag(0)
			sleepCtx(ctx, archivePoll)
			continue
		}
		o.cfg.Metrics.ArchiveLag(o.lagOf(msgs))
		o.archiveBatch(ctx, msgs)
	}
}

// archiveBatch archives the workflows of msgs, end events in the order
// they were indexed, each once it is old enough.
func (o *Orchestrator) archiveBatch(ctx context.Context, msgs []jetstream.Msg) {
	sem := make(chan struct{}, archiveConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, m := range msgs {
		due, ok := o.dueOf(m)
		if !ok {
			_ = m.Nak()
			continue
		}
		if !o.waitOld(ctx, due, msgs[i:]) {
			return // stopping: what is held is redelivered after AckWait
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			o.archiveEnd(ctx, m)
		}()
	}
}

// waitOld waits until the clock reaches due, keeping held in progress
// meanwhile. It reports false when ctx ended first.
func (o *Orchestrator) waitOld(ctx context.Context, due time.Time, held []jetstream.Msg) bool {
	kept := time.Now()
	for {
		now := o.cfg.Clock.Now()
		if !now.Before(due) {
			return true
		}
		if time.Since(kept) > o.cfg.AckWait/3 {
			for _, m := range held {
				_ = m.InProgress()
			}
			kept = time.Now()
		}
		if !sleepCtx(ctx, min(due.Sub(now), archivePoll)) {
			return false
		}
	}
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// archiveEnd archives the workflow of one end event of the index, then
// acks it; a failure is retried (nak with a delay) until the consumer's
// last delivery, which is dead-lettered: the workflow then stays in the
// history.
func (o *Orchestrator) archiveEnd(ctx context.Context, m jetstream.Msg) {
	if o.lastDelivery(ctx, m, archiveOrigin, streams.DefaultArchiverMaxDeliver, nil) {
		return
	}
	src := m.Headers().Get(streams.HeaderStreamSource)
	id, rest, ok := streams.ParseSubject(streams.SourceSubject(src))
	if !ok || streams.ValidHistoryID(id) != nil {
		o.refuse(ctx, m, archiveOrigin, "index end event names no workflow: "+streams.Clip(src, 200))
		return
	}
	// The sequence the index names is one of the stream it came from: an
	// end stored in a partition its workflow does not hash to is no part
	// of the workflow's history.
	if from := streams.SourceStream(src); from != streams.HistoryStreamOf(id) {
		o.refuse(ctx, m, archiveOrigin, "index end event from "+streams.Clip(from, 100)+", not from "+streams.HistoryStreamOf(id)+", the history stream of "+id)
		return
	}
	switch status, _, _ := streams.ParseDone(rest); status {
	case string(schema.StatusManual):
		_ = m.Ack() // waits for a person; a retry or a resolve ends it again
		return
	case string(schema.StatusContinuedAsNew):
		// The workflow goes on in its next run: the whole chain is
		// archived with the end of its last run.
		_ = m.Ack()
		return
	}
	var row uint64
	if md, err := m.Metadata(); err == nil {
		row = md.Sequence.Stream
	}
	if err := o.archive(ctx, id, streams.SourceSeq(src), row); err != nil {
		o.log.Warn("archive failed, will retry", "workflow_id", id, "err", err)
		_ = m.NakWithDelay(retryDelay(m))
		return
	}
	if due, ok := o.dueOf(m); ok {
		o.cfg.Metrics.ArchiveDelay(o.cfg.Clock.Now().Sub(due))
	}
	_ = m.Ack()
}

// lagOf is how far past its due time the oldest of msgs is (0 or less:
// none is due yet). Ends come in the order they were indexed, but a
// failed attempt's end comes back after its retry delay, among later ones.
func (o *Orchestrator) lagOf(msgs []jetstream.Msg) time.Duration {
	now := o.cfg.Clock.Now()
	var lag time.Duration
	for _, m := range msgs {
		if due, ok := o.dueOf(m); ok {
			lag = max(lag, now.Sub(due))
		}
	}
	return lag
}

// dueOf is when the end event m of the index is due for archival: the
// time its copy was stored in the index (within milliseconds of the end,
// unless the index was rebuilt) plus the retention.
func (o *Orchestrator) dueOf(m jetstream.Msg) (time.Time, bool) {
	md, err := m.Metadata()
	if err != nil {
		return time.Time{}, false
	}
	return md.Timestamp.Add(o.cfg.Retention), true
}

// archive moves finished workflow id to the archive: read its tree, write
// the archive record (acknowledged), purge the buckets' keys of the
// workflow, purge each event read (never one written after the read),
// drop the index's end event row. Each step can be repeated after a crash anywhere: a
// record already written by this run is kept, an empty tree only finishes
// the cleanup. endSeq is the history sequence of the end event that asked
// for it.
//
// id may be the history ID of run N > 1 of a workflow that continued as
// new: its end is the workflow's, and the whole chain is archived under
// the workflow ID, in one record (every run's tree, in run order, then the
// run pointers). The earlier runs' events and the pointers are purged
// before the last run's, so a tree of the last run without a start means
// the chain is gone.
func (o *Orchestrator) archive(ctx context.Context, id string, endSeq, row uint64) error {
	wid, last := streams.ParseRunID(id)
	evs, err := o.hist.Read(ctx, id, 0)
	if err != nil {
		return err
	}
	st := &state{id: id}
	st.add(evs)
	if st.start == nil {
		// Archived and purged by an earlier attempt (or an orphan):
		// finish the cleanup, once the stream's leader confirms the tree
		// holds no start (a lagging replica may answer a read with
		// nothing).
		if ev, err := o.hist.LastFromLeader(ctx, streams.StartSubject(id)); err != nil {
			return err
		} else if ev != nil {
			return fmt.Errorf("%w: no start read, the leader has one at #%d", errStaleRead, ev.Seq)
		}
		// Its record covers the end: whatever this read missed is
		// purged up to the record's last sequence.
		if rec, err := o.hist.Archived(ctx, wid); err != nil {
			return err
		} else if rec != nil && rec.LastSeq >= endSeq {
			return o.purgeArchivedUpTo(ctx, wid, last, rec.LastSeq, row)
		}
		for r := 1; r <= last; r++ {
			if err := streams.PurgeWorkflowKeys(ctx, o.cfg.NC, streams.RunID(wid, r), true); err != nil {
				return err
			}
		}
		if err := streams.PurgeEvents(ctx, o.cfg.NC, evs); err != nil {
			return err
		}
		return streams.DeleteMsg(ctx, o.cfg.NC, streams.IndexStream, row)
	}
	startSeq := st.events[0].Seq
	if st.lastSeq < endSeq {
		// A lagging read, or a purge an older release cut short (it
		// purged the events in parallel, the start among them, so the
		// end could be gone while the start was not). The record tells:
		// one whose last sequence reaches the end holds this run. Then
		// whatever the read saw or missed, every tree of the chain is
		// purged up to the record's last sequence: nothing written after
		// the archive is touched, nothing archived is left.
		rec, err := o.hist.Archived(ctx, wid)
		if err != nil {
			return err
		}
		if rec == nil || rec.LastSeq < endSeq || rec.StartSeq > startSeq {
			return fmt.Errorf("%w: read up to %d, the end is at %d", errStaleRead, st.lastSeq, endSeq)
		}
		return o.purgeArchivedUpTo(ctx, wid, last, rec.LastSeq, row)
	}
	switch {
	case startSeq > endSeq:
		// The end of an earlier run, archived already; the tree holds a
		// later run under the same ID.
		return streams.DeleteMsg(ctx, o.cfg.NC, streams.IndexStream, row)
	case !archivable(st.status) || st.status == schema.StatusContinuedAsNew:
		// Reopened since (an operator's retry): its next end is indexed
		// anew. A continued run is archived with its chain's last.
		return nil
	}
	earlier, err := o.earlierRuns(ctx, wid, last)
	if err != nil {
		return err
	}
	var ended time.Time
	for _, ev := range evs {
		if _, ok := ev.Value.(*schema.WorkflowFinished); ok {
			ended = ev.Time
		}
	}
	chain := append(append([]streams.Event{}, earlier...), evs...)
	if last > 1 {
		ptrs, err := o.hist.LastOfEach(ctx, []string{streams.RunPointerFilter(wid)})
		if err != nil {
			return err
		}
		chain = append(chain, ptrs...)
		earlier = append(earlier, ptrs...)
	}
	rec := &schema.ArchivedHistory{
		WorkflowID: wid, Type: st.start.Type, Status: st.status, Ended: ended,
		ArchivedAt: o.cfg.Clock.Now().UTC(), StartSeq: chain[0].Seq, LastSeq: st.lastSeq,
		Events: streams.ArchivedEventsOf(chain),
	}
	stored, written, err := o.hist.WriteArchive(ctx, rec)
	if err != nil {
		return err
	}
	if !written && stored.StartSeq != rec.StartSeq {
		// A run refused at its first decision because the ID was archived
		// (archivedEnd): the original's record stays, this run's dead
		// letter says what was refused.
		o.log.Info("refused run of an archived id removed, the original's record kept", "workflow_id", id)
	}
	failpoint.Hit("archive.before-purge")
	// Before the events: an attempt cut short after it is repeated whole
	// (the record is there, the tree too), and a delete repeated finds
	// nothing. A refused run of an archived ID is not in the record: its
	// signals are left to age out.
	if written || stored.StartSeq == rec.StartSeq {
		o.deleteRecordedSignals(ctx, wid, chain)
	}
	if err := o.purgeArchived(ctx, wid, last, earlier, evs, !written, row); err != nil {
		return err
	}
	o.cfg.Metrics.WorkflowArchived()
	return nil
}

// purgeArchivedUpTo finishes the removal of an archived chain whose trees
// may have been read short: each run's tree and the run pointers are
// purged below lastSeq+1 in one request each (rare: only after a crash or
// a lagging read), then the keys and the index row.
func (o *Orchestrator) purgeArchivedUpTo(ctx context.Context, wid string, last int, lastSeq, row uint64) error {
	// The last run's tree goes last: a chain whose last run has no start
	// left is gone (see archive).
	filters := []string{streams.RunPointerFilter(wid)}
	for r := 1; r <= last; r++ {
		filters = append(filters, streams.Tree(streams.RunID(wid, r)))
	}
	for _, f := range filters {
		if _, err := streams.Purge(ctx, o.cfg.NC, streams.HistoryStreamOf(wid), f, lastSeq+1); err != nil {
			return err
		}
	}
	for r := 1; r <= last; r++ {
		if err := streams.PurgeWorkflowKeys(ctx, o.cfg.NC, streams.RunID(wid, r), true); err != nil {
			return err
		}
	}
	o.cfg.Metrics.WorkflowArchived()
	return streams.DeleteMsg(ctx, o.cfg.NC, streams.IndexStream, row)
}

// purgeArchived removes an archived chain from the live streams: the
// buckets' keys of runs 1 to last, the earlier runs' events and run
// pointers, then the last run's events, then the index row. repeat says
// the record was there already: an earlier attempt may have purged some
// of the earlier runs' events, so what was read cannot tell which runs
// started a timer.
func (o *Orchestrator) purgeArchived(ctx context.Context, wid string, last int, earlier, evs []streams.Event, repeat bool, row uint64) error {
	// Only a run that started a timer has keys in the timers bucket
	// (every key is put after its TimerStarted event is stored). On a
	// first attempt every run was read whole; on a repeat every run's
	// timers are purged.
	timed := map[string]bool{}
	for _, ev := range slices.Concat(earlier, evs) {
		if _, ok := ev.Value.(*schema.TimerStarted); ok {
			hid, _, _ := streams.ParseSubject(ev.Subject)
			timed[hid] = true
		}
	}
	for r := 1; r <= last; r++ {
		hid := streams.RunID(wid, r)
		if err := streams.PurgeWorkflowKeys(ctx, o.cfg.NC, hid, repeat || timed[hid]); err != nil {
			return err
		}
	}
	if err := streams.PurgeEvents(ctx, o.cfg.NC, earlier); err != nil {
		return err
	}
	// The start goes first: a tree cut short by a crash then has no start,
	// and the next attempt only finishes the cleanup.
	start := streams.StartSubject(streams.RunID(wid, last))
	var first, rest []streams.Event
	for _, ev := range evs {
		if ev.Subject == start {
			first = append(first, ev)
		} else {
			rest = append(rest, ev)
		}
	}
	if err := streams.PurgeEvents(ctx, o.cfg.NC, first); err != nil {
		return err
	}
	if err := streams.PurgeEvents(ctx, o.cfg.NC, rest); err != nil {
		return err
	}
	failpoint.Hit("archive.after-purge")
	return streams.DeleteMsg(ctx, o.cfg.NC, streams.IndexStream, row)
}

// deleteRecordedSignals removes from JETFLOW_SIGNALS each signal an
// archived chain recorded before its run ended, by the sequence its event
// names, once the message there is confirmed to be that signal: on its
// subject, and stored no later than it was recorded (a stream made anew
// since begins its sequences again). The archive record holds them;
// left in JETFLOW_SIGNALS each would keep its subject in the server's
// memory for the stream's 30 days, which at 1M orders a day with a
// carrier's signal each is 30M subjects, several GB. Nothing else goes: a
// signal refused (dead-lettered), one never settled, one recorded or sent
// late, each stays whole where its dead letter or its route expects it.
//
// It is best effort: signals not deleted age out as before. A failure is
// logged and the deletes pause for signalPurgePause (a minute), so that a server
// whose permissions predate them (a nats-server.conf generated before the
// orchestrator role could delete from JETFLOW_SIGNALS, where the refused
// request only times out) does not hold every archive up.
func (o *Orchestrator) deleteRecordedSignals(ctx context.Context, wid string, evs []streams.Event) {
	if time.Now().UnixNano() < o.signalPurgeOffUntil.Load() {
		return
	}
	// A signal recorded after its run's first end was late: it is
	// dead-lettered too, and may still be routed (a late route). It stays.
	ended := map[string]uint64{}
	for _, ev := range evs {
		if _, ok := ev.Value.(*schema.WorkflowFinished); ok {
			hid, _, _ := streams.ParseSubject(ev.Subject)
			if e, ok := ended[hid]; !ok || ev.Seq < e {
				ended[hid] = ev.Seq
			}
		}
	}
	var (
		wg     sync.WaitGroup
		sem    = make(chan struct{}, signalDeletesInFlight)
		failed atomic.Pointer[error]
	)
	for _, ev := range evs {
		sig, ok := ev.Value.(*schema.Signal)
		if !ok {
			continue
		}
		seq, ok := streams.SignalEventSeq(ev.Subject)
		hid, _, _ := streams.ParseSubject(ev.Subject)
		if end, done := ended[hid]; !ok || !done || ev.Seq > end {
			continue
		}
		sem <- struct{}{}
		if failed.Load() != nil {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			dctx, cancel := context.WithTimeout(ctx, signalPurgeTimeout)
			defer cancel()
			if err := streams.DeleteSignal(dctx, o.cfg.NC, streams.SignalSubject(sig.Name, wid), seq, ev.Time); err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	if errp := failed.Load(); errp != nil && ctx.Err() == nil {
		o.signalPurgeOffUntil.Store(time.Now().Add(signalPurgePause).UnixNano())
		o.log.Warn("archive: the signals it recorded stay in "+streams.SignalsStream+" until they age out, and its deletes pause",
			"workflow_id", wid, "pause", signalPurgePause, "err", *errp,
			"hint", "the orchestrator role needs $JS.API.STREAM.MSG.DELETE."+streams.SignalsStream+": regenerate nats-server.conf with `jetflow auth config`")
	}
}

// signalPurgeTimeout bounds the removal of one recorded signal;
// signalPurgePause is how long removals pause after one failed;
// signalDeletesInFlight bounds the removals of one workflow's signals
// under way at once (a workflow that received thousands).
const (
	signalPurgeTimeout    = 5 * time.Second
	signalPurgePause      = time.Minute
	signalDeletesInFlight = 16
)

// earlierRuns reads the trees of runs 1 to last-1 of workflow wid, in run
// order. Each must hold its start and its continued-as-new end, unless the
// workflow's record is written already (a repeated attempt after a partial
// purge: what is left is purged).
func (o *Orchestrator) earlierRuns(ctx context.Context, wid string, last int) ([]streams.Event, error) {
	if last <= 1 {
		return nil, nil
	}
	rec, err := o.hist.Archived(ctx, wid)
	if err != nil {
		return nil, err
	}
	var out []streams.Event
	for r := 1; r < last; r++ {
		hid := streams.RunID(wid, r)
		evs, err := o.hist.Read(ctx, hid, 0)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			st := &state{id: hid}
			st.add(evs)
			if st.start == nil || st.status != schema.StatusContinuedAsNew {
				return nil, fmt.Errorf("%w: run %d of %s read without its start or its continued-as-new end", errStaleRead, r, wid)
			}
		}
		out = append(out, evs...)
	}
	return out, nil
}

// archivedEnd refuses a workflow whose ID belongs to an archived one: at
// its first decision (history = its start alone, first), the ID is looked
// up in the archive, and if it is there the workflow ends at once, failed
// with kind "duplicate", no command ever sent, and its start is copied to
// dlq.wf with the reason. The check is race-free: a start lands on an
// empty tree only after the original's purge, which follows its
// acknowledged archive record. It returns nil when the ID is free.
func (o *Orchestrator) archivedEnd(ctx context.Context, id string, first bool, st *state) (*schema.WorkflowFinished, error) {
	if _, run := streams.ParseRunID(id); !first || len(st.events) == 0 || run > 1 {
		// A later run is started by its predecessor's continued-as-new
		// end, in the history: its workflow is not archived.
		return nil, nil
	}
	rec, err := o.hist.Archived(ctx, id)
	if err != nil || rec == nil {
		return nil, err
	}
	startSeq := st.events[0].Seq
	if rec.StartSeq == startSeq {
		return nil, nil // this very run, archived while a stale copy decides
	}
	reason := duplicateReason(id, rec)
	if err := o.deadLetterStart(ctx, id, startSeq, st, reason); err != nil {
		return nil, err
	}
	return &schema.WorkflowFinished{Status: schema.StatusFailed, Error: reason, ErrorKind: "duplicate", NonRetryable: true}, nil
}

// duplicateReason is the reason a start under the ID of archived workflow
// id is refused.
func duplicateReason(id string, rec *schema.ArchivedHistory) string {
	return fmt.Sprintf("duplicate: workflow %s ended %s at %s and is archived; an ID is not reused while its workflow is kept (history or archive, --archive-retention)",
		id, rec.Status, rec.Ended.UTC().Format(time.RFC3339))
}

// deadLetterStart copies the start event of a refused run to dlq.wf.
func (o *Orchestrator) deadLetterStart(ctx context.Context, id string, startSeq uint64, st *state, reason string) error {
	body, kind, err := schema.Encode(st.start)
	if err != nil {
		return err
	}
	m := nats.NewMsg(streams.DeadLetterSubject("wf"))
	m.Data = body
	m.Header.Set(schema.HeaderReason, reason)
	m.Header.Set(schema.HeaderSourceSubject, streams.StartSubject(id))
	m.Header.Set(schema.HeaderSourceStream, streams.HistoryStreamOf(id))
	m.Header.Set(schema.HeaderSourceSeq, strconv.FormatUint(startSeq, 10))
	m.Header.Set("Orig-"+schema.HeaderKind, string(kind))
	m.Header.Set(jetstream.MsgIDHeader, "dlq-"+streams.HistoryStreamOf(id)+"-"+strconv.FormatUint(startSeq, 10))
	if _, err := o.cfg.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("dead letter of the refused start of %s: %w", id, err)
	}
	o.observeRefused("wf", reason)
	return nil
}

// archivedError returns the error of a verb on workflow id when it is
// archived, or notFound unchanged when it is not.
func archivedError(ctx context.Context, h *streams.History, id string, notFound error) error {
	rec, err := h.Archived(ctx, id)
	if err != nil || rec == nil {
		return notFound
	}
	return fmt.Errorf("%w (%w): workflow %s ended %s at %s and was archived at %s: it is read-only (jetflow show %s)",
		streams.ErrArchived, ErrNotApplicable, id, rec.Status, rec.Ended.UTC().Format(time.RFC3339), rec.ArchivedAt.UTC().Format(time.RFC3339), id)
}

// dropOrphan removes the events of an archived workflow's tree (it has no
// start) below seq below: events that reached it after it was archived
// and purged (a late result, a timer's fire), already dead-lettered with
// the reason. Nothing decides for such a tree.
func (o *Orchestrator) dropOrphan(ctx context.Context, id string, below uint64) {
	if _, err := streams.Purge(ctx, o.cfg.NC, streams.HistoryStreamOf(id), streams.Tree(id), below); err != nil {
		o.log.Warn("removing the events of an archived workflow failed", "workflow_id", id, "err", err)
	}
}

// orphanReason is the dead-letter reason of an event for a workflow
// without a start, and whether the workflow was archived (its late events
// are then removed; a stray for an ID never started stays where it was
// published, as before).
func (o *Orchestrator) orphanReason(ctx context.Context, id string, err error) (string, bool) {
	if rec, aerr := o.hist.Archived(ctx, id); aerr == nil && rec != nil {
		return fmt.Sprintf("workflow archived: %s ended %s at %s and was archived at %s; this late event is dropped",
			id, rec.Status, rec.Ended.UTC().Format(time.RFC3339), rec.ArchivedAt.UTC().Format(time.RFC3339)), true
	}
	return "result for an unknown workflow: " + err.Error(), false
}

// orArchived returns evs when they hold a start, else, when the workflow
// of history hid is archived, the events of run hid from its record (of
// the record's last run when current: the run a workflow ID names), with
// the record, the run's history ID and every event of the record (a
// workflow that continued as new is archived whole, every run in one
// record); else evs.
func orArchived(ctx context.Context, h *streams.History, hid string, current bool, evs []streams.Event) (*schema.ArchivedHistory, []streams.Event, string, []streams.Event, error) {
	for _, ev := range evs {
		if _, ok := ev.Value.(*schema.WorkflowStarted); ok {
			return nil, evs, hid, nil, nil
		}
	}
	rec, err := h.Archived(ctx, hid)
	if err != nil || rec == nil {
		return nil, evs, hid, nil, err
	}
	all, err := h.ArchivedEvents(ctx, rec)
	if err != nil {
		return nil, nil, hid, nil, err
	}
	if current {
		last := 0
		for _, ev := range all {
			if _, ok := ev.Value.(*schema.WorkflowStarted); ok {
				if tree, _, ok := streams.ParseSubject(ev.Subject); ok {
					if wid, run := streams.ParseRunID(tree); wid == rec.WorkflowID && run > last {
						last = run
					}
				}
			}
		}
		if last > 0 {
			hid = streams.RunID(rec.WorkflowID, last)
		}
	}
	var run []streams.Event
	for _, ev := range all {
		if tree, _, ok := streams.ParseSubject(ev.Subject); ok && tree == hid {
			run = append(run, ev)
		}
	}
	return rec, run, hid, all, nil
}

// archivedRuns fills the runs of d, run hid of archived workflow wid, from
// every event of its record: the pointers are purged from the history.
func archivedRuns(d *Description, wid, hid string, all []streams.Event) {
	_, run := streams.ParseRunID(hid)
	d.ID = wid
	if run > 1 {
		d.Run, d.RunID = run, hid
	}
	runs := map[int]*RunSummary{}
	for _, ev := range all {
		tree, _, ok := streams.ParseSubject(ev.Subject)
		if !ok {
			continue
		}
		id, r := streams.ParseRunID(tree)
		if id != wid || r == 0 {
			continue
		}
		switch v := ev.Value.(type) {
		case *schema.WorkflowStarted:
			runs[r] = &RunSummary{Run: r, RunID: tree, Status: schema.StatusRunning, StartedAt: ev.Time}
		case *schema.WorkflowFinished:
			if s := runs[r]; s != nil {
				s.Status = v.Status
			}
		}
	}
	if len(runs) < 2 {
		return
	}
	d.Run, d.RunID = run, hid
	for r := 1; r <= len(runs); r++ {
		s := runs[r]
		if s == nil {
			continue
		}
		if r == run {
			s.Status, s.StartedAt = d.Status, d.StartedAt
		}
		d.Runs = append(d.Runs, *s)
	}
}

// ArchivedQuery selects archived workflows for ListArchived.
type ArchivedQuery struct {
	// Since and Until bound when they were archived (zero: no bound).
	Since, Until time.Time
	// Limit is the page size. Default 50.
	Limit int
	// Cursor continues a listing: the Next of the page before.
	Cursor uint64
}

// ArchivedPage is one page of archived workflows, in the order they were
// archived.
type ArchivedPage struct {
	Workflows []streams.ArchivedEntry `json:"workflows"`
	// Next is the cursor of the next page; 0 when this one is the last.
	Next uint64 `json:"next,omitempty"`
}

// ListArchived lists archived workflows (jetflow list --archived): one
// direct get per workflow listed, from the first archived at or after
// q.Since, or after q.Cursor.
func ListArchived(ctx context.Context, js jetstream.JetStream, q ArchivedQuery) (*ArchivedPage, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	rows, next, err := historyOf(js).ArchivedPage(ctx, q.Since, q.Until, q.Cursor, q.Limit)
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []streams.ArchivedEntry{}
	}
	return &ArchivedPage{Workflows: rows, Next: next}, nil
}
