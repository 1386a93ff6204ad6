package orchestrator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// archiveFixture is one finished workflow written straight into the
// history (a start, two blocked events, a completed end), indexed, and an
// orchestrator that is not running: the tests call its archive step
// directly, so nothing but the state they build decides the outcome.
type archiveFixture struct {
	t   *testing.T
	env *natstest.Env
	o   *Orchestrator
	id  string
	evs []streams.Event // start, blocked, blocked, end
	row uint64          // the end's row in the index
}

func newArchiveFixture(t *testing.T) *archiveFixture {
	t.Helper()
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	reg := workflow.NewRegistry()
	workflow.Register(reg, "x", func(ctx workflow.Context, in string) (string, error) { return in, nil })
	o, err := New(Config{NC: env.NC, JS: env.JS, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	f := &archiveFixture{t: t, env: env, o: o, id: "arch-1"}
	writeHistories(t, env.JS, []synthetic{{id: f.id, wfType: "x", blocked: 2, end: schema.StatusCompleted}})
	if f.evs, err = o.hist.Read(ctx, f.id, 0); err != nil {
		t.Fatal(err)
	}
	if len(f.evs) != 4 {
		t.Fatalf("history of %d events, want 4", len(f.evs))
	}
	ix, err := env.JS.Stream(ctx, streams.IndexStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ix.GetLastMsgForSubject(ctx, streams.IndexDoneFilter(string(schema.StatusCompleted)))
	if err != nil {
		t.Fatal(err)
	}
	f.row = m.Sequence
	return f
}

func (f *archiveFixture) end() streams.Event { return f.evs[len(f.evs)-1] }

// writeRecord writes the archive record an earlier attempt wrote before it
// was cut short.
func (f *archiveFixture) writeRecord() *schema.ArchivedHistory {
	f.t.Helper()
	rec := &schema.ArchivedHistory{
		WorkflowID: f.id, Type: "x", Status: schema.StatusCompleted, Ended: f.end().Time,
		ArchivedAt: f.end().Time, StartSeq: f.evs[0].Seq, LastSeq: f.end().Seq,
		Events: streams.ArchivedEventsOf(f.evs),
	}
	if _, _, err := f.o.hist.WriteArchive(context.Background(), rec); err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// purge removes events of the tree, as a purge cut short did.
func (f *archiveFixture) purge(evs ...streams.Event) {
	f.t.Helper()
	for _, ev := range evs {
		if _, err := streams.Purge(context.Background(), f.env.NC, streams.HistoryStream, ev.Subject, ev.Seq+1); err != nil {
			f.t.Fatal(err)
		}
	}
}

// left returns the messages left in the workflow's tree and the index's
// completed rows.
func (f *archiveFixture) left() (tree, rows uint64) {
	f.t.Helper()
	ctx := context.Background()
	count := func(stream, filter string) uint64 {
		s, err := f.env.JS.Stream(ctx, stream)
		if err != nil {
			f.t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			f.t.Fatal(err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n
	}
	return count(streams.HistoryStream, streams.Tree(f.id)), count(streams.IndexStream, streams.IndexDoneFilter(string(schema.StatusCompleted)))
}

// checkGone asserts the tree and the index row are gone and the record is
// the one written first.
func (f *archiveFixture) checkGone(want *schema.ArchivedHistory) {
	f.t.Helper()
	if tree, rows := f.left(); tree != 0 || rows != 0 {
		f.t.Fatalf("%d events left in the tree, %d index rows, want none", tree, rows)
	}
	got, err := f.o.hist.Archived(context.Background(), f.id)
	if err != nil {
		f.t.Fatal(err)
	}
	if got == nil || got.StartSeq != want.StartSeq || got.LastSeq != want.LastSeq || len(got.Events) != len(want.Events) {
		f.t.Fatalf("archive record %+v, want the one written (start %d, last %d, %d events)", got, want.StartSeq, want.LastSeq, len(want.Events))
	}
}

// A crash in the middle of a purge left the record written, the end
// purged, the start and the rest still there: the next attempt finishes
// the cleanup from the record in one call, instead of taking the tree for
// a lagging read for ever.
func TestArchiveFinishesAPurgeCutShort(t *testing.T) {
	f := newArchiveFixture(t)
	rec := f.writeRecord()
	f.purge(f.end())
	if err := f.o.archive(context.Background(), f.id, f.end().Seq, f.row); err != nil {
		t.Fatalf("archive: %v", err)
	}
	f.checkGone(rec)
}

// The same with the start purged too: a tree without a start was
// archived by an earlier attempt, and only the cleanup is left.
func TestArchiveFinishesATreeWithoutItsStart(t *testing.T) {
	f := newArchiveFixture(t)
	rec := f.writeRecord()
	f.purge(f.evs[0], f.end())
	if err := f.o.archive(context.Background(), f.id, f.end().Seq, f.row); err != nil {
		t.Fatalf("archive: %v", err)
	}
	f.checkGone(rec)
}

// A read short of the end with no record to cover it is a lagging read:
// the attempt fails, to be retried, and removes nothing.
func TestArchiveRetriesAReadShortOfTheEnd(t *testing.T) {
	f := newArchiveFixture(t)
	f.purge(f.end())
	err := f.o.archive(context.Background(), f.id, f.end().Seq, f.row)
	if !errors.Is(err, errStaleRead) {
		t.Fatalf("archive: %v, want %v", err, errStaleRead)
	}
	if tree, rows := f.left(); tree != 3 || rows != 1 {
		t.Fatalf("%d events left in the tree, %d index rows, want 3 and 1", tree, rows)
	}
	if rec, err := f.o.hist.Archived(context.Background(), f.id); err != nil || rec != nil {
		t.Fatalf("archive record %+v (%v), want none", rec, err)
	}
}

// The whole tree read: the record is written, then everything purged.
func TestArchiveWritesTheRecordThenPurges(t *testing.T) {
	f := newArchiveFixture(t)
	if err := f.o.archive(context.Background(), f.id, f.end().Seq, f.row); err != nil {
		t.Fatalf("archive: %v", err)
	}
	f.checkGone(&schema.ArchivedHistory{StartSeq: f.evs[0].Seq, LastSeq: f.end().Seq, Events: make([]schema.ArchivedEvent, len(f.evs))})
}

// publish writes one event into the history.
func (f *archiveFixture) publish(subject string, v schema.Kinded) streams.Event {
	f.t.Helper()
	m, err := streams.NewMsg(subject, v)
	if err != nil {
		f.t.Fatal(err)
	}
	ack, err := f.env.JS.PublishMsg(context.Background(), m)
	if err != nil {
		f.t.Fatal(err)
	}
	return streams.Event{Subject: subject, Seq: ack.Sequence, Value: v}
}

// firedTimer leaves what a fired timer leaves in the timers bucket: the
// delete marker of its entry.
func (f *archiveFixture) firedTimer(hid string, id int) {
	f.t.Helper()
	ctx := context.Background()
	kv, err := f.env.JS.KeyValue(ctx, streams.TimersBucket)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := kv.Put(ctx, TimerKey(hid, id), []byte("{}")); err != nil {
		f.t.Fatal(err)
	}
	if err := kv.Delete(ctx, TimerKey(hid, id)); err != nil {
		f.t.Fatal(err)
	}
}

// timerKeys returns the timers bucket's subjects of history hid.
func (f *archiveFixture) timerKeys(hid string) map[string]uint64 {
	f.t.Helper()
	ctx := context.Background()
	s, err := f.env.JS.Stream(ctx, "KV_"+streams.TimersBucket)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("$KV."+streams.TimersBucket+"."+hid+".>"))
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.Subjects
}

// indexRow waits for the index row of the end at history sequence end.
func (f *archiveFixture) indexRow(status schema.Status, end uint64) uint64 {
	f.t.Helper()
	ctx := context.Background()
	ix, err := f.env.JS.Stream(ctx, streams.IndexStream)
	if err != nil {
		f.t.Fatal(err)
	}
	var row uint64
	natstest.Eventually(f.t, time.Minute, func() bool {
		m, err := ix.GetLastMsgForSubject(ctx, streams.IndexDoneFilter(string(status)))
		if err == nil && streams.SourceSeq(m.Header.Get(streams.HeaderStreamSource)) == end {
			row = m.Sequence
		}
		return row > 0
	}, "the index did not get the end at #%d", end)
	return row
}

// A run that started a timer leaves its entry (or the entry's delete
// marker) in the timers bucket: archiving it purges the run's keys there.
// A run that started none has no key there, and the archiver skips that
// bucket for it.
func TestArchivePurgesTheTimersOfARunThatStartedOne(t *testing.T) {
	f := newArchiveFixture(t)
	ctx := context.Background()
	const id = "arch-timed"
	f.publish(streams.StartSubject(id), &schema.WorkflowStarted{WorkflowID: id, Type: "x", Source: "test"})
	f.publish(streams.TimerSubject(id, 1), &schema.TimerStarted{ID: 1, Duration: time.Hour, Due: time.Now().Add(time.Hour)})
	end := f.publish(streams.DoneSubject(id, string(schema.StatusCompleted)), &schema.WorkflowFinished{Status: schema.StatusCompleted})
	f.firedTimer(id, 1)
	// The purge requests the timers bucket's stream gets: the connection's
	// read loop puts each in the channel before it reads the Flush's
	// answer, so after a Flush the channel holds all there were.
	purges := make(chan *nats.Msg, 16)
	sub, err := f.env.NC.ChanSubscribe("$JS.API.STREAM.PURGE.KV_"+streams.TimersBucket, purges)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := f.env.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.o.archive(ctx, id, end.Seq, f.indexRow(schema.StatusCompleted, end.Seq)); err != nil {
		t.Fatalf("archive: %v", err)
	}
	if keys := f.timerKeys(id); len(keys) != 0 {
		t.Fatalf("timer keys left after the archive: %v", keys)
	}
	// The fixture's workflow started no timer: archived all the same,
	// without a request to the timers bucket.
	if err := f.o.archive(ctx, f.id, f.end().Seq, f.row); err != nil {
		t.Fatalf("archive: %v", err)
	}
	if tree, _ := f.left(); tree != 0 {
		t.Fatalf("%d events left in the timerless tree", tree)
	}
	if err := f.env.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(purges); n != 1 {
		t.Fatalf("%d purges of the timers bucket for one workflow with a timer and one without, want 1", n)
	}
}

// A chain of two runs, run 1 with a timer, whose archive was cut short
// after its record and run 1's tree were gone: the next attempt reads run
// 1 empty, and must still purge run 1's timer keys.
func TestArchiveRepeatPurgesTheTimersOfRunsAlreadyGone(t *testing.T) {
	f := newArchiveFixture(t)
	ctx := context.Background()
	const wid = "chain"
	run2 := streams.RunID(wid, 2)
	s1 := f.publish(streams.StartSubject(wid), &schema.WorkflowStarted{WorkflowID: wid, Type: "x", Source: "test"})
	t1 := f.publish(streams.TimerSubject(wid, 1), &schema.TimerStarted{ID: 1, Duration: time.Hour, Due: time.Now().Add(time.Hour)})
	e1 := f.publish(streams.DoneSubject(wid, string(schema.StatusContinuedAsNew)), &schema.WorkflowFinished{Status: schema.StatusContinuedAsNew})
	f.firedTimer(wid, 1)
	s2 := f.publish(streams.StartSubject(run2), &schema.WorkflowStarted{WorkflowID: wid, Type: "x", Source: "test"})
	e2 := f.publish(streams.DoneSubject(run2, string(schema.StatusCompleted)), &schema.WorkflowFinished{Status: schema.StatusCompleted})
	row := f.indexRow(schema.StatusCompleted, e2.Seq)
	chain := []streams.Event{s1, t1, e1, s2, e2}
	if _, _, err := f.o.hist.WriteArchive(ctx, &schema.ArchivedHistory{
		WorkflowID: wid, Type: "x", Status: schema.StatusCompleted, StartSeq: s1.Seq, LastSeq: e2.Seq,
		Events: streams.ArchivedEventsOf(chain),
	}); err != nil {
		t.Fatal(err)
	}
	f.purge(s1, t1, e1) // cut short here: run 1's tree gone, its keys not
	if err := f.o.archive(ctx, run2, e2.Seq, row); err != nil {
		t.Fatalf("archive: %v", err)
	}
	if keys := f.timerKeys(wid); len(keys) != 0 {
		t.Fatalf("timer keys of run 1 left after the archive: %v", keys)
	}
}

// TestArchiveLagIsHowLateTheOldestEndIs: the lag the archiver reports of
// the ends it fetched is how far the oldest is past its copy's time in
// the index plus the retention, and nothing while none is due.
func TestArchiveLagIsHowLateTheOldestEndIs(t *testing.T) {
	f := newArchiveFixture(t) // one end in the index, arch-1's
	ctx := context.Background()
	m, err := streams.NewMsg(streams.DoneSubject("arch-2", string(schema.StatusCompensated)), &schema.WorkflowFinished{Status: schema.StatusCompensated})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	cons, err := f.env.JS.CreateOrUpdateConsumer(ctx, streams.IndexStream, jetstream.ConsumerConfig{Durable: "lag", FilterSubject: streams.IndexDoneFilter("")})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	natstest.Eventually(t, 10*time.Second, func() bool {
		batch, err := cons.FetchNoWait(10)
		if err != nil {
			return false
		}
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		return len(msgs) == 2
	}, "the index did not hold the two ends")
	first, _ := msgs[0].Metadata()
	clock := &ManualClock{}
	f.o.cfg.Clock, f.o.cfg.Retention = clock, time.Hour
	if lag := f.o.lagOf(msgs); lag > 0 {
		t.Fatalf("lag %v before any end is due, want none", lag)
	}
	clock.Advance(3 * time.Hour)
	// The oldest is late by its age plus the two hours past the window.
	want := time.Since(first.Timestamp) + 2*time.Hour
	if lag := f.o.lagOf(msgs); lag < want || lag > want+time.Minute {
		t.Fatalf("lag %v, want about %v (the oldest end's)", lag, want)
	}
}

// TestDeleteRecordedSignalsTakesOnlyWhatTheChainRecorded: of the signals
// an archived history names, only the ones it recorded before its end,
// still on their subject and stored before they were recorded, leave
// JETFLOW_SIGNALS. A signal recorded after the end (late, perhaps still
// routed), one a forged or stale event names on another subject or from
// after it was recorded (a signals stream made anew), and one never
// recorded stay.
func TestDeleteRecordedSignalsTakesOnlyWhatTheChainRecorded(t *testing.T) {
	f := newArchiveFixture(t)
	ctx := context.Background()
	pub := func(name, id string) uint64 {
		t.Helper()
		ack, err := f.env.JS.Publish(ctx, streams.SignalSubject(name, id), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	recordedBefore := pub("ping", "w")
	recordedLate := pub("ping", "w")
	othersSignal := pub("ping", "x")
	neverRecorded := pub("ping", "w")
	storedAfter := pub("ping", "w")
	later, earlier := time.Now().Add(time.Minute), time.Now().Add(-time.Minute)
	ev := func(seq uint64, subject string, at time.Time, v schema.Kinded) streams.Event {
		return streams.Event{Seq: seq, Subject: subject, Time: at, Value: v}
	}
	sig := &schema.Signal{Name: "ping"}
	evs := []streams.Event{
		ev(10, streams.StartSubject("w"), earlier, &schema.WorkflowStarted{WorkflowID: "w", Type: "x"}),
		ev(11, streams.SignalEventSubject("w", recordedBefore), later, sig),
		ev(12, streams.SignalEventSubject("w", othersSignal), later, sig),
		ev(13, streams.SignalEventSubject("w", storedAfter), earlier, sig),
		ev(14, streams.DoneSubject("w", string(schema.StatusCompleted)), later, &schema.WorkflowFinished{Status: schema.StatusCompleted}),
		ev(15, streams.SignalEventSubject("w", recordedLate), later, sig),
	}
	f.o.deleteRecordedSignals(ctx, "w", evs)
	st, err := f.env.JS.Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]bool{recordedBefore: false, recordedLate: true, othersSignal: true, neverRecorded: true, storedAfter: true} {
		_, err := st.GetMsg(ctx, seq)
		if got := err == nil; got != want {
			t.Errorf("signal #%d kept %v, want %v (%v)", seq, got, want, err)
		}
	}
}
