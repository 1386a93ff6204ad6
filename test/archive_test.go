package test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/participants/shipping"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// subjects returns the subjects of stream matching filter, with their
// message counts.
func (s *stack) subjects(stream, filter string) map[string]uint64 {
	s.t.Helper()
	ctx := context.Background()
	st, err := s.env.JS.Stream(ctx, stream)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.Subjects
}

// archived returns the archive record of id, or nil.
func (s *stack) archived(id string) *schema.ArchivedHistory {
	s.t.Helper()
	rec, err := streams.NewHistory(s.env.NC, s.env.JS).Archived(context.Background(), id)
	if err != nil {
		s.t.Fatalf("archive of %s: %v", id, err)
	}
	return rec
}

// TestFinishedWorkflowsAreArchivedPastRetention runs orders through a
// retention window on a clock the test moves: a finished order stays in
// the history until its end is older than the retention, then its history
// is in the archive (show finds it, whole, marked archived), and nothing
// of it keeps a subject in the history, the index or the idempotency
// bucket; a manual order is never archived; a re-published archived order
// is refused as a duplicate without overwriting the original's record; a
// late result for it is dead-lettered and removed; a verb on it is
// refused naming the archive. How long past its window each was archived
// is observed: seconds for the orders archived as they came due, an hour
// for the run archived an hour late.
func TestFinishedWorkflowsAreArchivedPastRetention(t *testing.T) {
	s, clock := timerStack(t)
	s.retention = time.Hour
	s.metrics = metrics.New()
	s.orchestrator()
	s.participants()

	done := order("arch-", 1, map[string]string{"pickup": "at_creation"})
	comp := order("arch-", 2, map[string]string{"inventory": "out_of_stock", "pickup": "at_creation"})
	manual := order("arch-", 3, map[string]string{"shipping": "fail", "refund": "fail_always"})
	s.publishOrder(done)
	s.publishOrder(comp)
	s.publishOrder(manual)
	ids := []string{done.OrderID, comp.OrderID, manual.OrderID}
	st := s.waitSettled(ids, time.Minute)
	if st[done.OrderID] != schema.StatusCompleted || st[comp.OrderID] != schema.StatusCompensated || st[manual.OrderID] != schema.StatusManual {
		t.Fatalf("statuses %v, want completed, compensated, manual", st)
	}
	before := s.describe(done.OrderID)
	if before.Archived || s.archived(done.OrderID) != nil {
		t.Fatal("archived before its retention")
	}
	const delay = "jetflow_archive_delay_seconds"
	if n, _ := histogram(t, s.metrics, delay); n != 0 {
		t.Fatalf("%d archive delays observed before any end was due", n)
	}

	// The clock reaches each end's due time (its end plus an hour) the
	// moment it jumps: the ends are due since the seconds they ended.
	clock.Advance(time.Hour)
	natstest.Eventually(t, time.Minute, func() bool {
		return s.archivedAndGone(done.OrderID) && s.archivedAndGone(comp.OrderID)
	}, "finished orders not archived and removed 1h after their end with a 1h retention")
	natstest.Eventually(t, 10*time.Second, func() bool {
		n, _ := histogram(t, s.metrics, delay)
		return n == 2
	}, "the two archived orders' delays were not observed")
	onTime, onTimeSum := histogram(t, s.metrics, delay)
	if onTimeSum > 2*5*60 {
		t.Fatalf("archive delays sum to %.0f s for two orders archived as they came due, want the seconds since they ended", onTimeSum)
	}

	// show finds it, whole, read-only.
	after := s.describe(done.OrderID)
	if !after.Archived || after.Status != schema.StatusCompleted || len(after.History) != len(before.History) {
		t.Fatalf("archived describe: archived %v status %s, %d events; want archived completed with %d events",
			after.Archived, after.Status, len(after.History), len(before.History))
	}
	// Nothing of the archived orders keeps a subject.
	for _, id := range []string{done.OrderID, comp.OrderID} {
		if keys := s.subjects("KV_"+streams.IdempotencyBucket, "$KV."+streams.IdempotencyBucket+".*."+id+".>"); len(keys) != 0 {
			t.Errorf("%s: idempotency keys left: %v", id, keys)
		}
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		return len(s.subjects(streams.IndexStream, streams.IndexDoneFilter(string(schema.StatusCompleted)))) == 0
	}, "the index still lists the archived order's end")
	// The manual order waits for a person: never archived.
	if s.archived(manual.OrderID) != nil || s.describe(manual.OrderID).Status != schema.StatusManual {
		t.Fatal("a manual workflow was archived")
	}
	page, err := orchestrator.ListArchived(context.Background(), s.env.JS, orchestrator.ArchivedQuery{})
	if err != nil || len(page.Workflows) != 2 {
		t.Fatalf("list --archived: %+v, %v; want the 2 archived orders", page, err)
	}

	// A verb on it names the archive.
	if _, err := orchestrator.Cancel(context.Background(), s.env.JS, done.OrderID, alice); !errors.Is(err, streams.ErrArchived) {
		t.Fatalf("cancel of an archived workflow: %v, want ErrArchived", err)
	}

	// A late result is dead-lettered as archived and removed.
	late := streams.ResultSubject(done.OrderID, 99, "payment", "charge")
	res, _ := streams.NewMsg(late, &schema.Result{WorkflowID: done.OrderID, CommandID: 99, Service: "payment", Action: "charge"})
	res.Subject = streams.PublishSubject(res.Subject)
	if _, err := s.env.JS.PublishMsg(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, func() bool {
		for _, r := range s.deadLetters("dlq.wf") {
			if strings.HasPrefix(r, "workflow archived: "+done.OrderID) {
				return len(s.subjects(streams.HistoryStreamOf(done.OrderID), streams.Tree(done.OrderID))) == 0
			}
		}
		return false
	}, "a late result for an archived workflow was not dead-lettered and removed")

	// The same order again is refused at the intake, and a start that
	// lands all the same (after the start's duplicate window, say) is
	// refused at its first decision; the original's record stays.
	original := s.archived(done.OrderID)
	s.publishOrder(done)
	refused := func(subject, prefix string) func() bool {
		return func() bool {
			for _, r := range s.deadLetters(subject) {
				if strings.HasPrefix(r, prefix) {
					return true
				}
			}
			return false
		}
	}
	natstest.Eventually(t, time.Minute, refused("dlq.order.created", "duplicate: workflow "+done.OrderID),
		"a re-published archived order was not refused at the intake")
	// From here on the clock is an hour past every window: what ends is
	// archived an hour late.
	clock.Advance(time.Hour)
	body, _ := schema.EncodeRaw(done)
	start, _ := streams.NewMsg(streams.StartSubject(done.OrderID), &schema.WorkflowStarted{WorkflowID: done.OrderID, Type: fulfillment.WorkflowType, Input: body, Source: "test"})
	start.Subject = streams.PublishSubject(start.Subject)
	if _, err := s.env.JS.PublishMsg(context.Background(), start); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, refused("dlq.wf", "duplicate: workflow "+done.OrderID),
		"a start under an archived ID was not refused at its first decision")
	// The clock is 2 h ahead: the refused run, ended at once, is archived
	// in its turn, an hour late, without replacing the original's record.
	natstest.Eventually(t, time.Minute, func() bool {
		return len(s.subjects(streams.HistoryStreamOf(done.OrderID), streams.Tree(done.OrderID))) == 0
	}, "the refused run was not removed")
	natstest.Eventually(t, 10*time.Second, func() bool {
		n, _ := histogram(t, s.metrics, delay)
		return n > onTime
	}, "the refused run's archive delay was not observed")
	if n, sum := histogram(t, s.metrics, delay); (sum-onTimeSum)/float64(n-onTime) < (55*time.Minute).Seconds() ||
		(sum-onTimeSum)/float64(n-onTime) > (65*time.Minute).Seconds() {
		t.Fatalf("archive delay %.0f s on average for %d ends archived an hour late, want about 3600", (sum-onTimeSum)/float64(n-onTime), n-onTime)
	}
	if rec := s.archived(done.OrderID); rec.StartSeq != original.StartSeq || rec.Status != schema.StatusCompleted {
		t.Fatalf("archive record replaced: start #%d %s, want the original #%d completed", rec.StartSeq, rec.Status, original.StartSeq)
	}
	// The refused run sent nothing: the order was charged once.
	if ledger := kinds(s.ledgers()[done.OrderID]); ledger["charge"] != 1 {
		t.Fatalf("ledger of the re-published order: %v, want one charge", ledger)
	}
}

// archivingAuthStack is an auth stack (newAuthStack) with its orchestrator
// and participants running, archiving an hour after each end on a clock
// the test moves.
func archivingAuthStack(t *testing.T) (*stack, *orchestrator.ManualClock) {
	s := newAuthStack(t)
	clock := &orchestrator.ManualClock{}
	s.clock, s.retention = clock, time.Hour
	s.orchestrator()
	s.participants()
	return s, clock
}

// archivedAndGone reports whether id has its archive record and nothing
// left in the history.
func (s *stack) archivedAndGone(id string) bool {
	return s.archived(id) != nil && len(s.subjects(streams.HistoryStreamOf(id), streams.Tree(id))) == 0
}

// TestArchiveUnderRolePermissions: on a server enforcing the roles, the
// orchestrator archives and purges, and no other role may purge the
// history: the operator's purge is refused.
func TestArchiveUnderRolePermissions(t *testing.T) {
	s, clock := archivingAuthStack(t)
	o := order("arch-auth-", 1, map[string]string{"pickup": "at_creation"})
	s.publishOrder(o)
	s.waitSettled([]string{o.OrderID}, time.Minute)
	opNC, _ := s.connect(natsauth.Operator)
	if _, err := streams.Purge(context.Background(), opNC, streams.HistoryStreamOf(o.OrderID), streams.Tree(o.OrderID), 0); err == nil {
		t.Fatal("the operator purged a history")
	}
	if len(s.subjects(streams.HistoryStreamOf(o.OrderID), streams.Tree(o.OrderID))) == 0 {
		t.Fatal("the operator's refused purge removed the history")
	}
	clock.Advance(2 * time.Hour)
	natstest.Eventually(t, time.Minute, func() bool { return s.archivedAndGone(o.OrderID) }, "the orchestrator role did not archive and purge")
}

// TestArchivalRemovesTheSignalsItRecorded: the carrier's signal an order
// recorded stays in JETFLOW_SIGNALS (30 days, a subject each) until the
// order is archived; the archiver then deletes it, under the orchestrator
// role's permissions, and keeps a signal sent after it (late, refused).
func TestArchivalRemovesTheSignalsItRecorded(t *testing.T) {
	s, clock := archivingAuthStack(t)
	ctx := context.Background()
	o := order("arch-sig-", 1, map[string]string{"pickup": "1s"})
	s.publishOrder(o)
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("order: %s", st[o.OrderID])
	}
	subject := streams.SignalSubject(shipping.PickedUpSignal, o.OrderID)
	if n := s.subjects(streams.SignalsStream, subject)[subject]; n != 1 {
		t.Fatalf("%s holds %d signals before archival, want the carrier's", subject, n)
	}
	late, err := s.env.JS.Publish(ctx, subject, []byte(`{"carrier":"late"}`))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, func() bool {
		dl, err := streams.SignalDeadLetter(ctx, s.env.NC, late.Sequence)
		return err == nil && dl != nil
	}, "the late signal was not refused")

	clock.Advance(2 * time.Hour)
	natstest.Eventually(t, time.Minute, func() bool { return s.archivedAndGone(o.OrderID) }, "the order was not archived")
	natstest.Eventually(t, 10*time.Second, func() bool {
		return s.subjects(streams.SignalsStream, subject)[subject] == 1
	}, "%s holds more than the late signal after archival", subject)
	st, err := s.env.JS.Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil || m.Sequence != late.Sequence {
		t.Fatalf("left on %s: %v %v, want the late signal #%d", subject, m, err, late.Sequence)
	}
}

// TestArchiverFinishesAPurgeCutShort: an archiver that died in the middle
// of a purge can leave a tree whose start is there and whose end is gone,
// its record written. The archiver's next attempt, from the index row it
// still holds, finishes the cleanup from the record instead of taking the
// tree for a lagging read for ever (the archive step alone:
// orchestrator's TestArchiveFinishesAPurgeCutShort).
func TestArchiverFinishesAPurgeCutShort(t *testing.T) {
	s, clock := timerStack(t)
	s.retention = time.Hour
	s.orchestrator()
	s.participants()
	o := order("cut-", 1, map[string]string{"pickup": "at_creation"})
	s.publishOrder(o)
	if st := s.waitSettled([]string{o.OrderID}, time.Minute); st[o.OrderID] != schema.StatusCompleted {
		t.Fatalf("status %s, want completed", st[o.OrderID])
	}
	ctx := context.Background()
	h := streams.NewHistory(s.env.NC, s.env.JS)
	evs, err := h.Read(ctx, o.OrderID, 0)
	if err != nil {
		t.Fatal(err)
	}
	end := evs[len(evs)-1]
	if _, ok := end.Value.(*schema.WorkflowFinished); !ok {
		t.Fatalf("last event %s is not the end", end.Subject)
	}
	// The archiver learns of the end from the index, which sources it
	// from the history a moment later (List above reads the history): the
	// end is purged only once the index holds it, as it always is by the
	// archiver.
	natstest.Eventually(t, time.Minute, func() bool {
		return len(s.subjects(streams.IndexStream, streams.IndexDoneFilter(string(schema.StatusCompleted)))) == 1
	}, "the index did not get the end")
	// The state a crash mid-purge left: the record written, the end
	// purged, the start and the rest still there.
	rec := &schema.ArchivedHistory{
		WorkflowID: o.OrderID, Type: fulfillment.WorkflowType, Status: schema.StatusCompleted,
		Ended: end.Time, ArchivedAt: end.Time, StartSeq: evs[0].Seq, LastSeq: end.Seq,
		Events: streams.ArchivedEventsOf(evs),
	}
	if _, _, err := h.WriteArchive(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := streams.Purge(ctx, s.env.NC, streams.HistoryStreamFor(end.Subject), end.Subject, end.Seq+1); err != nil {
		t.Fatal(err)
	}

	clock.Advance(2 * time.Hour)
	// Two minutes: a failed attempt is retried with a growing delay (to
	// 10 s), and a loaded machine can fail several.
	natstest.Eventually(t, 2*time.Minute, func() bool {
		return len(s.subjects(streams.HistoryStreamOf(o.OrderID), streams.Tree(o.OrderID))) == 0 &&
			len(s.subjects(streams.IndexStream, streams.IndexDoneFilter(string(schema.StatusCompleted)))) == 0
	}, "the purge cut short was not finished")
	if got := s.archived(o.OrderID); got == nil || got.StartSeq != rec.StartSeq || got.Status != schema.StatusCompleted {
		t.Fatalf("archive record %+v, want the one written", got)
	}
	if dl := s.deadLetters(streams.DeadLetterSubject("archive")); len(dl) != 0 {
		t.Fatalf("dead letters on dlq.archive: %v", dl)
	}
}
