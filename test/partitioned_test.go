package test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// The tests of this file run where the whole test binary runs against a
// partitioned history (the layout is process-wide):
// JETFLOW_TEST_HISTORY_PARTITIONS=4 go test ./test/, which `make test`
// does for them and a selection of the other end-to-end tests.

func needPartitions(t *testing.T) int {
	t.Helper()
	if natstest.HistoryPartitions < 2 {
		t.Skipf("runs against a partitioned history: %s=4", natstest.PartitionsEnv)
	}
	return natstest.HistoryPartitions
}

// TestPartitionedHistory runs the order mix over a history partitioned in
// K streams and checks what the layout promises: each workflow's events
// are in its own partition's stream only, under the subjects of the single
// stream; listing walks every partition in start order, page after page;
// a live listener hears the ends as published; and a history keeps the
// layout it was made with.
func TestPartitionedHistory(t *testing.T) {
	k := needPartitions(t)
	s := newStack(t)
	ctx := context.Background()

	// A live listener of the ends, as `jetflow dev` and the bench listen.
	heard := make(chan string, 1024)
	sub, err := s.env.NC.Subscribe(streams.LiveFilter(streams.DoneFilter), func(m *nats.Msg) {
		if id, _, ok := streams.ParseSubject(streams.StoredSubject(m.Subject)); ok {
			heard <- id
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	s.participants()
	s.affinity = true
	s.orchestrator()
	s.orchestrator()
	orders, want, ids := s.mix("p-", 120)
	st := s.waitSettled(ids, 3*time.Minute)
	for _, id := range ids {
		if st[id] != want[id] {
			t.Errorf("%s: status %s, want %s (simulate %v)", id, st[id], want[id], orders[id].Simulate)
			s.logHistory(id)
		}
	}
	s.checkInvariants(orders, st)

	// Each history in its partition, and only there.
	used := map[string]int{}
	for _, id := range ids {
		home := streams.HistoryStreamOf(id)
		used[home]++
		for _, name := range streams.HistoryStreams() {
			stream, err := s.env.JS.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := stream.Info(ctx, jetstream.WithSubjectFilter(streams.Tree(id)))
			if err != nil {
				t.Fatal(err)
			}
			n := len(info.State.Subjects)
			switch {
			case name == home && n < 3:
				t.Errorf("%s: %d subjects in its partition %s", id, n, name)
			case name != home && n > 0:
				t.Errorf("%s: %d subjects in %s, not its partition %s", id, n, name, home)
			}
		}
	}
	if len(used) != k {
		t.Errorf("120 workflows used %d of the %d partitions: %v", len(used), k, used)
	}
	if _, err := s.env.JS.Stream(ctx, streams.HistoryStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the single history stream exists beside the partitions: %v", err)
	}

	// Counted and listed over every partition.
	h := streams.NewHistory(s.env.NC, s.env.JS)
	if n, err := h.Count(ctx, streams.StartFilter); err != nil || n != uint64(len(ids)) {
		t.Errorf("Count(starts) = %d, %v; want %d", n, err, len(ids))
	}
	seen := map[string]bool{}
	var last time.Time
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 40 {
			t.Fatal("listing does not end")
		}
		page, err := orchestrator.ListPage(ctx, s.env.JS, orchestrator.ListOptions{Limit: 7, Cursor: cursor})
		if err != nil {
			t.Fatalf("list page %d: %v", pages, err)
		}
		for _, w := range page.Workflows {
			if seen[w.ID] {
				t.Errorf("%s listed twice", w.ID)
			}
			seen[w.ID] = true
			if w.StartedAt.Before(last) {
				t.Errorf("%s started %s, listed after one started %s", w.ID, w.StartedAt, last)
			}
			last = w.StartedAt
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if len(seen) != len(ids) {
		t.Errorf("listed %d workflows of %d", len(seen), len(ids))
	}
	done, err := orchestrator.ListPage(ctx, s.env.JS, orchestrator.ListOptions{Status: schema.StatusCompleted, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, id := range ids {
		if want[id] == schema.StatusCompleted {
			completed++
		}
	}
	if len(done.Workflows) != completed {
		t.Errorf("the index lists %d completed workflows, want %d", len(done.Workflows), completed)
	}

	// Heard live.
	natstest.Eventually(t, 10*time.Second, func() bool { return len(heard) >= len(ids) }, "heard %d ends of %d", len(heard), len(ids))

	// The layout stays.
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := streams.Ensure(ectx, s.env.JS, streams.Topology{HistoryPartitions: 1}); !errors.Is(err, streams.ErrLayoutMismatch) {
		t.Errorf("Ensure of a single stream over %d partitions: %v, want ErrLayoutMismatch", k, err)
	}
	if err := streams.Ensure(ectx, s.env.JS, streams.Topology{HistoryPartitions: k + 1}); !errors.Is(err, streams.ErrLayoutMismatch) {
		t.Errorf("Ensure of %d partitions over %d: %v, want ErrLayoutMismatch", k+1, k, err)
	}
	if err := streams.Ensure(ectx, s.env.JS, streams.Topology{}); err != nil {
		t.Errorf("Ensure of the layout the server has: %v", err)
	}
	if got, err := streams.Discover(ectx, s.env.JS); err != nil || got != k {
		t.Errorf("Discover = %d, %v; want %d", got, err, k)
	}
	t.Logf("%d workflows over %d partitions: %v", len(ids), k, used)
}

// TestPartitionedHistoryIsRefusedOverASingleStream makes a single history
// stream as an earlier version did and asks for partitions: the server's
// layout wins, with an error that says so.
func TestPartitionedHistoryIsRefusedOverASingleStream(t *testing.T) {
	k := needPartitions(t)
	srv, err := streams.StartServer(streams.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	single := streams.Topology{}.StreamConfigs()[0]
	if _, err := js.CreateStream(ctx, single); err != nil {
		t.Fatal(err)
	}
	// Put the process back as the other tests of this binary need it.
	defer streams.SetHistoryPartitions(k)
	err = streams.Ensure(ctx, js, streams.Topology{HistoryPartitions: k})
	if !errors.Is(err, streams.ErrLayoutMismatch) {
		t.Fatalf("Ensure of %d partitions over the single stream: %v, want ErrLayoutMismatch", k, err)
	}
	if _, err := js.Stream(ctx, streams.HistoryPartitionStream(0)); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a partition stream was made beside the single one: %v", err)
	}
}
