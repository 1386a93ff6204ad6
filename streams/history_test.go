package streams_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

func marker(t *testing.T, id string, n int) *nats.Msg {
	t.Helper()
	m, err := streams.NewMsg(streams.MarkerSubject(id, n), &schema.Marker{ID: n, Name: "n"})
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:%d", id, n))
	return m
}

func TestEnsureIsIdempotent(t *testing.T) {
	env := natstest.RunJetStream(t) // ensures once
	if err := streams.Ensure(context.Background(), env.JS, streams.Topology{}); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	s, err := env.JS.Stream(context.Background(), streams.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	// Purge is the archiver's (streams.Purge, bounded by the last sequence
	// it read); delete and a TTL stay denied.
	if !cfg.AllowDirect || cfg.DenyPurge || !cfg.DenyDelete || cfg.MaxAge != 0 ||
		cfg.MaxMsgsPerSubject != 1 || cfg.Discard != jetstream.DiscardNew || !cfg.DiscardNewPerSubject {
		t.Fatalf("history stream config lost a guarantee: %+v", cfg)
	}
}

// An archive retention shorter than the duplicate window (a test or a
// benchmark keeping archived orders for seconds) is a valid topology: the
// archive's duplicate window is cut to it, which the server requires.
func TestEnsureTakesAnArchiveRetentionShorterThanTheDuplicateWindow(t *testing.T) {
	env := natstest.RunJetStream(t)
	top := streams.Topology{ArchiveMaxAge: 30 * time.Second}
	if err := streams.Ensure(context.Background(), env.JS, top); err != nil {
		t.Fatalf("Ensure with a 30 s archive retention: %v", err)
	}
	s, err := env.JS.Stream(context.Background(), streams.ArchiveStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.MaxAge != 30*time.Second || cfg.Duplicates != 30*time.Second {
		t.Fatalf("archive: max age %s, duplicate window %s; want 30s and 30s", cfg.MaxAge, cfg.Duplicates)
	}
}

// The server reserves a bounded stream's MaxBytes in its JetStream
// storage; a bound it cannot reserve stops Ensure with an error that names
// the stream and the bound, not only the server's "insufficient storage".
func TestEnsureNamesABoundTheServerCannotReserve(t *testing.T) {
	env := natstest.RunJetStream(t)
	// 4 EiB: more than any disk (the server's default storage is 75% of
	// the free space of its store's file system).
	const bound = 1 << 62
	err := streams.Ensure(context.Background(), env.JS, streams.Topology{OrdersMaxBytes: bound})
	if err == nil || !strings.Contains(err.Error(), "ensure stream "+streams.OrdersStream+": the server cannot reserve its bound of 4611686018427387904 bytes") {
		t.Fatalf("Ensure with a 4 EiB bound on the orders: %v", err)
	}
}

// A history stream created by an earlier version (atomic batches allowed,
// no per-subject limit) is brought to the current configuration by Ensure,
// its histories intact.
func TestEnsureUpgradesTheHistoryStream(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := env.JS.DeleteStream(ctx, streams.HistoryStream); err != nil {
		t.Fatal(err)
	}
	old := streams.Topology{}.StreamConfigs()[0]
	old.MaxMsgsPerSubject, old.Discard, old.DiscardNewPerSubject, old.AllowAtomicPublish = 0, jetstream.DiscardOld, false, true
	if _, err := env.JS.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	h := streams.NewHistory(env.NC, env.JS)
	last, _, err := h.Append(ctx, "up", 0, []*nats.Msg{marker(t, "up", 1), marker(t, "up", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, env.JS, streams.Topology{}); err != nil {
		t.Fatalf("Ensure over the earlier configuration: %v", err)
	}
	s, err := env.JS.Stream(ctx, streams.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.MaxMsgsPerSubject != 1 || !cfg.DiscardNewPerSubject || cfg.AllowAtomicPublish {
		t.Fatalf("configuration not upgraded: %+v", cfg)
	}
	if evs, err := h.Read(ctx, "up", 0); err != nil || len(evs) != 2 || evs[1].Seq != last {
		t.Fatalf("history after the upgrade: %d events (%v)", len(evs), err)
	}
	dup := marker(t, "up", 2)
	dup.Header.Set(jetstream.MsgIDHeader, "up:2-again")
	if _, err := env.JS.PublishMsg(ctx, dup); err == nil {
		t.Fatal("a second message on a history subject was stored after the upgrade")
	}
}

// Two deciders append on the same last sequence: exactly one wins, the
// other is fenced and can tell it lost.
func TestAppendFenceOneWriterWins(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	h := streams.NewHistory(env.NC, env.JS)
	first, _, err := h.Append(ctx, "w1", 0, []*nats.Msg{marker(t, "w1", 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, _, errs[i] = h.Append(ctx, "w1", first, []*nats.Msg{marker(t, "w1", 100+i)})
		}(i)
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, streams.ErrFenced):
			t.Fatalf("unexpected error %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers won, want exactly 1", won)
	}
	evs, err := h.Read(ctx, "w1", 0)
	if err != nil || len(evs) != 2 {
		t.Fatalf("history has %d events (%v), want 2", len(evs), err)
	}
	// The losers can tell they lost; the winner that lost its ack can tell it won.
	winner := evs[1].MsgID
	n, _, err := h.Landed(ctx, "w1", first, []string{winner})
	if err != nil || n != 1 {
		t.Fatalf("winner not recognised: %d %v", n, err)
	}
	if n, _, _ = h.Landed(ctx, "w1", first, []string{"w1:999"}); n != 0 {
		t.Fatal("a loser was told it landed")
	}
	// Another workflow is not fenced by w1's tree.
	if _, _, err := h.Append(ctx, "w2", 0, []*nats.Msg{marker(t, "w2", 1)}); err != nil {
		t.Fatalf("independent workflow fenced: %v", err)
	}
}

// The messages of an append land in order, each fenced on the one before:
// a stale append writes nothing, and one refused part way leaves exactly
// the prefix before the refusal, which Landed counts.
func TestAppendWritesAPrefixInOrder(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	h := streams.NewHistory(env.NC, env.JS)
	last, _, err := h.Append(ctx, "b1", 0, []*nats.Msg{marker(t, "b1", 1), marker(t, "b1", 2), marker(t, "b1", 3)})
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := h.Read(ctx, "b1", 0)
	if len(evs) != 3 || evs[2].Seq != last || evs[0].Seq != last-2 {
		t.Fatalf("append stored as %d events ending %d (last %d)", len(evs), evs[len(evs)-1].Seq, last)
	}
	for i, ev := range evs {
		if want := fmt.Sprintf("b1:%d", i+1); ev.MsgID != want {
			t.Fatalf("event %d is %s, want %s", i, ev.MsgID, want)
		}
	}
	if _, _, err = h.Append(ctx, "b1", 1, []*nats.Msg{marker(t, "b1", 4), marker(t, "b1", 5)}); !errors.Is(err, streams.ErrFenced) {
		t.Fatalf("stale append: %v, want ErrFenced", err)
	}
	if evs, _ := h.Read(ctx, "b1", 0); len(evs) != 3 {
		t.Fatalf("a stale append left %d events", len(evs)-3)
	}

	// The second message is refused (its subject is taken): the first stays.
	dup := marker(t, "b1", 2)
	dup.Header.Set(jetstream.MsgIDHeader, "b1:2-again")
	msgs := []*nats.Msg{marker(t, "b1", 4), dup, marker(t, "b1", 5)}
	_, acked, err := h.Append(ctx, "b1", last, msgs)
	if !errors.Is(err, streams.ErrSubjectTaken) || acked != 1 {
		t.Fatalf("append onto a taken subject: %d acknowledged, %v; want 1 and ErrSubjectTaken", acked, err)
	}
	n, tail, err := h.Landed(ctx, "b1", last, []string{"b1:4", "b1:2-again", "b1:5"})
	if err != nil || n != 1 || len(tail) != 1 || tail[0].MsgID != "b1:4" {
		t.Fatalf("landed %d of the append, tail %d events (%v); want the first alone", n, len(tail), err)
	}
}

func TestReadPagesLongHistories(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	h := streams.NewHistory(env.NC, env.JS)
	var last uint64
	for i := 1; i <= 1100; i++ { // past the 1024 subjects one multi_last serves
		var err error
		if last, _, err = h.Append(ctx, "long", last, []*nats.Msg{marker(t, "long", i)}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 { // interleave another workflow
			if _, _, err := h.Append(ctx, fmt.Sprintf("other%d", i), 0, []*nats.Msg{marker(t, "x", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	evs, err := h.Read(ctx, "long", 0)
	if err != nil || len(evs) != 1100 {
		t.Fatalf("read %d events: %v", len(evs), err)
	}
	for i, ev := range evs {
		if m, ok := ev.Value.(*schema.Marker); !ok || m.ID != i+1 {
			t.Fatalf("event %d is %+v", i, ev.Value)
		}
	}
	tail, err := h.Read(ctx, "long", evs[1089].Seq)
	if err != nil || len(tail) != 10 {
		t.Fatalf("tail read %d: %v", len(tail), err)
	}
	none, err := h.Read(ctx, "missing", 0)
	if err != nil || len(none) != 0 {
		t.Fatalf("missing workflow: %d %v", len(none), err)
	}
}

func TestPublishFirstOnce(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	for i, want := range []bool{true, false, false} {
		m, _ := streams.NewMsg(streams.StartSubject("s1"), &schema.WorkflowStarted{WorkflowID: "s1", Type: "t"})
		if i == 1 {
			m.Header.Set(jetstream.MsgIDHeader, "same") // a retry within the dedupe window
		}
		if i == 2 {
			m.Header.Set(jetstream.MsgIDHeader, "other") // a second start, later
		}
		got, err := streams.PublishFirst(ctx, env.JS, m)
		if err != nil || got != want {
			t.Fatalf("publish %d: wrote=%v err=%v, want wrote=%v", i, got, err, want)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{"o-1001": true, "A_b-9": true, "": false, "a.b": false, "a*": false, "a>": false, "a b": false} {
		if (streams.ValidID(id) == nil) != ok {
			t.Errorf("ValidID(%q) ok=%v", id, !ok)
		}
	}
}

// ReadAfter, walking the stream from a known sequence, returns what Read
// returns after it: the workflow's events only, in order, across batches,
// none for a workflow with nothing new.
func TestReadAfterReadsWhatReadReads(t *testing.T) {
	env := natstest.RunJetStream(t)
	ctx := context.Background()
	h := streams.NewHistory(env.NC, env.JS)
	var last uint64
	var seqs []uint64
	for i := 1; i <= 600; i++ {
		var err error
		if last, _, err = h.Append(ctx, "w", last, []*nats.Msg{marker(t, "w", i)}); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, last)
		if i%3 == 0 { // interleave other workflows
			if _, _, err := h.Append(ctx, fmt.Sprintf("o%d", i), 0, []*nats.Msg{marker(t, "o", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, after := range []uint64{seqs[0], seqs[10], seqs[300], seqs[598], seqs[599]} {
		want, err := h.Read(ctx, "w", after)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.ReadAfter(ctx, "w", after)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("after #%d: ReadAfter %d events, Read %d", after, len(got), len(want))
		}
		for i := range got {
			if got[i].Seq != want[i].Seq || got[i].Subject != want[i].Subject {
				t.Fatalf("after #%d: event %d is #%d %s, Read's #%d %s", after, i, got[i].Seq, got[i].Subject, want[i].Seq, want[i].Subject)
			}
		}
	}
	if none, err := h.ReadAfter(ctx, "missing", 1); err != nil || len(none) != 0 {
		t.Fatalf("missing workflow: %d %v", len(none), err)
	}
}
