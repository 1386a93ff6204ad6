package streams_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// A history larger than one message is archived in parts and read back
// whole; a second record for the same ID is not written over the first.
func TestArchiveSplitsALargeHistoryAndKeepsTheFirstRecord(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	h := streams.NewHistory(env.NC, env.JS)
	big := strings.Repeat("x", 200<<10) // 200 KiB per event: 11 events need several 1 MiB messages
	var evs []schema.ArchivedEvent
	for i := 1; i <= 11; i++ {
		body, _ := schema.Msgpack.Marshal(&schema.Marker{ID: i, Name: "m", Value: mustRaw(t, big)})
		evs = append(evs, schema.ArchivedEvent{Seq: uint64(i), Subject: streams.MarkerSubject("big", i), Time: time.Unix(int64(i), 0).UTC(),
			Kind: string(schema.KindMarker), Schema: schema.SchemaString, Body: body})
	}
	rec := &schema.ArchivedHistory{WorkflowID: "big", Type: "t", Status: schema.StatusCompleted, StartSeq: 1, LastSeq: 11, Events: evs}
	stored, written, err := h.WriteArchive(ctx, rec)
	if err != nil || !written {
		t.Fatalf("write: written %v, %v", written, err)
	}
	if stored.Parts < 3 {
		t.Fatalf("a 2.2 MB history was stored in %d parts", stored.Parts)
	}
	got, err := h.Archived(ctx, "big")
	if err != nil || got == nil {
		t.Fatalf("read record: %v, %v", got, err)
	}
	back, err := h.ArchivedEvents(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 11 {
		t.Fatalf("read back %d events, want 11", len(back))
	}
	for i, ev := range back {
		m, ok := ev.Value.(*schema.Marker)
		if ev.DecodeErr != nil || !ok || m.ID != i+1 || ev.Seq != uint64(i+1) || ev.Subject != streams.MarkerSubject("big", i+1) {
			t.Fatalf("event %d read back as %+v (%v)", i, ev.Value, ev.DecodeErr)
		}
	}
	later := &schema.ArchivedHistory{WorkflowID: "big", Type: "t", Status: schema.StatusFailed, StartSeq: 99, LastSeq: 99}
	stored, written, err = h.WriteArchive(ctx, later)
	if err != nil || written || stored.StartSeq != 1 || stored.Status != schema.StatusCompleted {
		t.Fatalf("second record: written %v, stored %+v, %v; want the first kept", written, stored, err)
	}
	// A second record of several parts too: its parts must not replace the
	// first record's (a part is read by its subject's last message).
	other := make([]schema.ArchivedEvent, len(evs))
	for i, ev := range evs {
		body, _ := schema.Msgpack.Marshal(&schema.Marker{ID: 100 + i, Name: "other", Value: mustRaw(t, big)})
		ev.Body = body
		other[i] = ev
	}
	bigLater := &schema.ArchivedHistory{WorkflowID: "big", Type: "t", Status: schema.StatusFailed, StartSeq: 99, LastSeq: 110, Events: other}
	if stored, written, err = h.WriteArchive(ctx, bigLater); err != nil || written || stored.StartSeq != 1 {
		t.Fatalf("second record of several parts: written %v, stored %+v, %v; want the first kept", written, stored, err)
	}
	if back, err = h.ArchivedEvents(ctx, stored); err != nil || len(back) != 11 {
		t.Fatalf("read back %d events (%v), want 11", len(back), err)
	}
	for i, ev := range back {
		if m, ok := ev.Value.(*schema.Marker); !ok || m.ID != i+1 {
			t.Fatalf("event %d of the kept record is not marker %d: a second record's part replaced it", i, i+1)
		}
	}
}

func mustRaw(t *testing.T, v any) []byte {
	t.Helper()
	r, err := schema.EncodeRaw(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A purge bounded by the last sequence read removes the tree up to it and
// nothing written after it; the fence then refuses a stale decision on
// the emptied tree, and a start lands on it (the ID reuse the
// orchestrator refuses while the archive holds the ID).
func TestPurgeUpToTheLastReadKeepsLaterEvents(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	h := streams.NewHistory(env.NC, env.JS)
	last, _, err := h.Append(ctx, "p", 0, []*nats.Msg{marker(t, "p", 1), marker(t, "p", 2)})
	if err != nil {
		t.Fatal(err)
	}
	late, _, err := h.Append(ctx, "p", last, []*nats.Msg{marker(t, "p", 3)})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := streams.Purge(ctx, env.NC, streams.HistoryStream, streams.Tree("p"), last+1); err != nil || n != 2 {
		t.Fatalf("purge: %d, %v; want 2 removed", n, err)
	}
	evs, err := h.Read(ctx, "p", 0)
	if err != nil || len(evs) != 1 || evs[0].Seq != late {
		t.Fatalf("after the purge: %d events, %v; want the one written after the read", len(evs), err)
	}
	if _, err := streams.Purge(ctx, env.NC, streams.HistoryStream, streams.Tree("p"), late+1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Append(ctx, "p", late, []*nats.Msg{marker(t, "p", 4)}); !errors.Is(err, streams.ErrFenced) {
		t.Fatalf("stale append on a purged tree: %v, want ErrFenced", err)
	}
}

// A history stream created denying purge (before archival) cannot have
// that lifted by the server: Ensure keeps it and still upgrades the rest,
// and HistoryPurgeable says archival is off and why.
func TestEnsureKeepsDenyPurgeOfAnEarlierHistory(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := env.JS.DeleteStream(ctx, streams.HistoryStream); err != nil {
		t.Fatal(err)
	}
	old := streams.Topology{}.StreamConfigs()[0]
	old.DenyPurge, old.Description = true, "before archival"
	if _, err := env.JS.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		t.Fatalf("Ensure on a history stream denying purge: %v", err)
	}
	s, err := env.JS.Stream(ctx, streams.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; !cfg.DenyPurge || cfg.Description == "before archival" {
		t.Fatalf("DenyPurge %v, description %q: want DenyPurge kept and the rest upgraded", cfg.DenyPurge, cfg.Description)
	}
	if err := streams.HistoryPurgeable(ctx, env.JS); err == nil || !strings.Contains(err.Error(), "denies purge") {
		t.Fatalf("HistoryPurgeable: %v", err)
	}
}

// signalsConfig is the signals stream's configuration of today.
func signalsConfig(t *testing.T) jetstream.StreamConfig {
	t.Helper()
	for _, c := range (streams.Topology{}).StreamConfigs() {
		if c.Name == streams.SignalsStream {
			return c
		}
	}
	t.Fatal("no signals stream in the topology")
	return jetstream.StreamConfig{}
}

// The signals stream allows neither roll-ups nor schedules: the server
// refuses a signal that would purge the signals before it, and
// SignalsRollupExposed says nothing.
func TestSignalsStreamRefusesRollups(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	waiting := streams.SignalSubject("carrier.picked_up", "o-1")
	if _, err := env.JS.Publish(ctx, waiting, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{jetstream.MsgRollupAll, jetstream.MsgRollupSubject} {
		m := nats.NewMsg(streams.SignalSubject("carrier.picked_up", "o-2"))
		m.Header.Set(jetstream.MsgRollup, how)
		if _, err := env.JS.PublishMsg(ctx, m); err == nil {
			t.Errorf("a signal with Nats-Rollup %s was taken", how)
		}
	}
	m := nats.NewMsg(streams.SignalSubject("carrier.picked_up", "o-3"))
	m.Header.Set("Nats-Schedule", "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	m.Header.Set("Nats-Schedule-Target", waiting)
	if _, err := env.JS.PublishMsg(ctx, m); err == nil {
		t.Error("a scheduled signal was taken")
	}
	s, err := env.JS.Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("%d signals, want the first one alone", n)
	}
	if err := streams.SignalsRollupExposed(ctx, env.JS); err != nil {
		t.Errorf("SignalsRollupExposed: %v", err)
	}
}

// A signals stream made by the version before the bound (DiscardOld, no
// schedules) takes the bound in place, signals kept, and refuses a signal
// past it.
func TestEnsureBoundsAnEarlierSignalsStream(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := env.JS.DeleteStream(ctx, streams.SignalsStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatal(err)
	}
	old := signalsConfig(t)
	old.Discard, old.MaxBytes = jetstream.DiscardOld, -1
	if _, err := env.JS.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	waiting, err := env.JS.Publish(ctx, streams.SignalSubject("carrier.picked_up", "o-1"), []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	const bound = 64 << 10
	if err := streams.Ensure(ctx, env.JS, streams.Topology{SignalsMaxBytes: bound}); err != nil {
		t.Fatal(err)
	}
	s, err := env.JS.Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Discard != jetstream.DiscardNew || cfg.MaxBytes != bound {
		t.Fatalf("discard %v, max bytes %d: want DiscardNew and %d", cfg.Discard, cfg.MaxBytes, bound)
	}
	if _, err := s.GetMsg(ctx, waiting.Sequence); err != nil {
		t.Fatalf("the signal stored before the bound: %v", err)
	}
	if _, err := env.JS.Publish(ctx, streams.SignalSubject("flood", "o-2"), make([]byte, bound)); err == nil || !strings.Contains(err.Error(), "maximum bytes exceeded") {
		t.Fatalf("a signal past the bound: %v, want maximum bytes exceeded", err)
	}
}

// A signals stream made with message schedules (by an earlier version)
// cannot have them turned off by the server: Ensure keeps them, and its
// subjects, and upgrades the rest; SignalsRollupExposed says what is open.
func TestEnsureKeepsSchedulesOfAnEarlierSignalsStream(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := env.JS.DeleteStream(ctx, streams.SignalsStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatal(err)
	}
	old := signalsConfig(t)
	old.Subjects = append(old.Subjects, "schedule.>")
	old.AllowMsgSchedules, old.Description = true, "with schedules"
	old.Discard, old.MaxBytes = jetstream.DiscardOld, -1 // as an earlier version made it
	if _, err := env.JS.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	// A callback scheduled the old way, pending across the upgrade.
	due := streams.SignalSubject("carrier.picked_up", "o-old")
	m := nats.NewMsg(streams.ScheduleSubject("o-old.carrier.picked_up"))
	m.Header.Set("Nats-Schedule", "@at "+time.Now().Add(5*time.Second).UTC().Format(time.RFC3339Nano))
	m.Header.Set("Nats-Schedule-Target", due)
	if _, err := env.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	// A bound asked for is not applied: schedules refuse DiscardNew, and
	// dropping the oldest signals would lose those not yet recorded.
	if err := streams.Ensure(ctx, env.JS, streams.Topology{SignalsMaxBytes: 1 << 20}); err != nil {
		t.Fatalf("Ensure on a signals stream with schedules: %v", err)
	}
	s, err := env.JS.Stream(ctx, streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLastMsgForSubject(ctx, m.Subject); err != nil {
		t.Fatalf("the schedule is not pending across the upgrade (Ensure took over 5 s?): %v", err)
	}
	if cfg := s.CachedInfo().Config; !cfg.AllowMsgSchedules || len(cfg.Subjects) != 2 || cfg.Description == "with schedules" {
		t.Fatalf("schedules %v, subjects %v, description %q: want schedules and subjects kept and the rest upgraded", cfg.AllowMsgSchedules, cfg.Subjects, cfg.Description)
	} else if cfg.Discard != jetstream.DiscardOld || cfg.MaxBytes > 0 {
		t.Fatalf("discard %v, max bytes %d: want the earlier stream's DiscardOld and no bound", cfg.Discard, cfg.MaxBytes)
	}
	if err := streams.SignalsRollupExposed(ctx, env.JS); err == nil || !strings.Contains(err.Error(), "roll-ups") || !strings.Contains(err.Error(), "no bound") {
		t.Fatalf("SignalsRollupExposed: %v", err)
	}
	natstest.Eventually(t, 30*time.Second, func() bool {
		got, err := s.GetLastMsgForSubject(ctx, due)
		return err == nil && streams.CheckScheduled("carrier.picked_up", "o-old", got.Header.Get(streams.HeaderScheduler)) == nil &&
			got.Header.Get(streams.HeaderScheduler) != ""
	}, "the schedule pending across the upgrade did not fire")
}
