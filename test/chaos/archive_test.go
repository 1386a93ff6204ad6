package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// TestKillDuringArchival kills the archiving orchestrator (exit 137, as
// kill -9) between an archive record's write and the purge of its
// history, then right after the purge and before the index and the
// consumer are told, and restarts it: every finished order ends in
// exactly one place, archived whole with its one run and nothing left in
// the history, the index or the idempotency bucket; no order is lost,
// none started again.
func TestKillDuringArchival(t *testing.T) {
	seed := seedFor(t, 11)
	h := newHarness(t, seed, serverOptions{})
	orders := mix("arch-", 40, false)
	// o1 keeps finished workflows (no archiver); the archiver below,
	// another orchestrator process, archives them 1 s after their end.
	o1 := h.newRole("orchestrator", "o1", bin.jetflow, h.engineArgs("orchestrator", "--retention", "0"), true)
	o1.start()
	h.participants()
	orders = h.publishAll(orders)
	h.settleAndCheck(orders, settleBound)

	type kept struct {
		status   schema.Status
		events   int
		startSeq uint64
	}
	before := map[string]kept{}
	for _, e := range orders {
		if !e.Acked {
			continue
		}
		evs := h.history(e.Order.OrderID)
		d, err := orchestrator.Describe(context.Background(), streams.NewHistory(h.nc, h.js), e.Order.OrderID)
		if err != nil || len(evs) == 0 {
			t.Fatalf("%s before archival: %v", e.Order.OrderID, err)
		}
		before[e.Order.OrderID] = kept{d.Status, len(evs), evs[0].Seq}
	}

	k1, k2 := 1+h.rng.Intn(15), 1+h.rng.Intn(15)
	h.logf("archiver exits at hit %d of archive.before-purge, then at hit %d of archive.after-purge", k1, k2)
	arch := h.newRole("orchestrator", "archiver", bin.jetflow, h.engineArgs("orchestrator", "--retention", "1s"), true)
	arch.env = failpoints(firstStarts(fmt.Sprintf("archive.before-purge=exit@%d", k1), fmt.Sprintf("archive.after-purge=exit@%d", k2)))
	arch.start()
	h.eventually(2*time.Minute, "the archiver did not die at both points", func() bool { return failpointExits(arch) >= 2 })
	h.fault("orchestrator exit between archive write and purge", "archiver")
	h.fault("orchestrator exit after purge", "archiver")

	ctx := context.Background()
	hist := streams.NewHistory(h.nc, h.js)
	subjects := func(stream, filter string) int {
		s, err := h.js.Stream(ctx, stream)
		if err != nil {
			return -1
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			return -1
		}
		return len(info.State.Subjects)
	}
	h.eventually(2*time.Minute, "finished orders not all archived", func() bool {
		for id := range before {
			if rec, err := hist.Archived(ctx, id); err != nil || rec == nil || subjects(streams.HistoryStream, streams.Tree(id)) != 0 {
				return false
			}
		}
		return true
	})
	for id, b := range before {
		rec, err := hist.Archived(ctx, id)
		if err != nil || rec == nil {
			t.Fatalf("%s: archive record: %v", id, err)
		}
		evs, err := hist.ArchivedEvents(ctx, rec)
		if err != nil {
			t.Fatalf("%s: archived history: %v", id, err)
		}
		switch {
		case rec.StartSeq != b.startSeq:
			t.Errorf("%s: archived run starts at #%d, the order's at #%d (a second run)", id, rec.StartSeq, b.startSeq)
		case len(evs) != b.events:
			t.Errorf("%s: archived %d events, the history held %d", id, len(evs), b.events)
		case rec.Status != b.status:
			t.Errorf("%s: archived %s, ended %s", id, rec.Status, b.status)
		}
		if n := subjects("KV_"+streams.IdempotencyBucket, "$KV."+streams.IdempotencyBucket+".*."+id+".>"); n != 0 {
			t.Errorf("%s: %d idempotency keys left", id, n)
		}
	}
	h.eventually(time.Minute, "the index still lists archived ends", func() bool {
		return subjects(streams.IndexStream, streams.IndexDoneFilter("")) == 0
	})
	if c := h.crashes(); len(c) > 0 {
		t.Errorf("processes crashed: %v", c)
	}
}
