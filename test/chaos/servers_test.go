package chaos

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// TestNATSServerKilled kills the nats-server with SIGKILL three times under
// load and restarts it on the same data directory. With --sync-always every
// write is on disk before it is acknowledged, so nothing acknowledged is
// lost: every order whose order.created publish was acknowledged reaches
// its end, and the engine processes, which only reconnect, carry on.
func TestNATSServerKilled(t *testing.T) {
	h := newHarness(t, seedFor(t, 23), serverOptions{syncAlways: true})
	orders := mix("srv-", 150, false)
	h.orchestrator("o1", nil)
	h.orchestrator("o2", nil)
	h.participants()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := h.drive(ctx, orders, 40*time.Millisecond)
	srv := h.servers[0]
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(600+h.rng.Intn(1200)) * time.Millisecond)
		srv.kill()
		h.fault("kill -9 nats-server", srv.name)
		time.Sleep(time.Duration(200+h.rng.Intn(1000)) * time.Millisecond)
		srv.start()
	}
	orders = l.wait(orders)
	h.settleAndCheck(orders, settleBound)
	// The engine processes ride out the outages by reconnecting (and wait
	// for the server when one starts while it is down): none may give up
	// and need its supervisor.
	if c := h.crashes(); len(c) > 0 {
		t.Errorf("engine processes that exited during the outages and were restarted: %v", c)
	}
}

// TestClusterLeaderKilled runs a 3-node cluster with R3 streams. Under load
// it kills the leader of the history stream with SIGKILL and restarts it,
// then restarts all three nodes one by one (SIGKILL, start, wait until
// every stream has all its replicas current). Orders keep completing, and
// none is lost or doubled.
func TestClusterLeaderKilled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, seedFor(t, 29), serverOptions{nodes: 3})
	h.eventually(60*time.Second, "the cluster is not healthy", h.clusterHealthy)
	orders := mix("cl-", 200, false)
	h.orchestrator("o1", nil)
	h.orchestrator("o2", nil)
	h.participants()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := h.drive(ctx, orders, 50*time.Millisecond)
	time.Sleep(time.Duration(500+h.rng.Intn(1000)) * time.Millisecond)

	var leader string
	h.eventually(30*time.Second, "the history stream has no leader", func() bool {
		var err error
		leader, err = h.streamLeader(streams.HistoryStream)
		return err == nil
	})
	node := h.serverRole(leader)
	node.kill()
	h.fault("kill -9 stream leader", node.name)
	h.eventually(30*time.Second, "no new history leader", func() bool {
		l, err := h.streamLeader(streams.HistoryStream)
		return err == nil && l != leader
	})
	time.Sleep(time.Duration(h.rng.Intn(1000)) * time.Millisecond)
	node.start()
	h.eventually(90*time.Second, "the cluster did not heal after the leader came back", h.clusterHealthy)
	for _, s := range h.servers {
		s.kill()
		h.fault("rolling restart: kill -9 and restart node", s.name)
		time.Sleep(time.Duration(200+h.rng.Intn(500)) * time.Millisecond)
		s.start()
		h.eventually(90*time.Second, "the cluster did not heal after "+s.name+" restarted", h.clusterHealthy)
	}
	orders = l.wait(orders)
	h.settleAndCheck(orders, settleBound)
	if c := h.crashes(); len(c) > 0 {
		t.Logf("engine processes that exited during the node restarts and were restarted: %v", c)
	}
}

// TestStoreFull runs out of storage under load: a scratch stream first
// takes all but a few MiB of the server's 48 MiB JetStream storage limit,
// then, while orders are in flight, the rest, so every write fails with
// "insufficient resources" — history appends, results, claims, new
// orders. The failures are loud (logged, retried with backoff, producers
// get errors). When the scratch stream is deleted and the space returns,
// every acknowledged order completes and no history lost anything.
func TestStoreFull(t *testing.T) {
	const limit = 48 << 20
	h := newHarness(t, seedFor(t, 31), serverOptions{maxStore: limit})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ballast = "CHAOS_BALLAST"
	if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{Name: ballast, Subjects: []string{"chaos.ballast"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 900<<10)
	// fill publishes blocks until the store holds more than upTo bytes or
	// refuses a write; it reports whether the store refused.
	fill := func(upTo int64) bool {
		for i := 0; i < 200; i++ {
			info, err := h.js.AccountInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if int64(info.Store) > upTo {
				return false
			}
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = h.js.Publish(pctx, "chaos.ballast", block)
			pcancel()
			var apiErr *jetstream.APIError
			switch {
			case err == nil:
			case errors.As(err, &apiErr) && apiErr.ErrorCode == 10047, err != nil && strings.Contains(err.Error(), "insufficient resources"):
				return true
			default:
				t.Fatalf("filling the store: %v", err)
			}
		}
		t.Fatal("the store does not fill up")
		return false
	}
	fill(limit - 6<<20)

	orders := mix("full-", 100, false)
	o := h.orchestrator("o1", nil)
	h.participants()
	l := h.drive(ctx, orders, 10*time.Millisecond)
	time.Sleep(time.Duration(300+h.rng.Intn(400)) * time.Millisecond)
	// The orchestrator is frozen while the store fills, so that results wait
	// for it: when it thaws, its decisions are written into a full store.
	o.signal(syscall.SIGSTOP)
	if !fill(1 << 62) {
		t.Fatal("the store did not refuse a write")
	}
	h.fault("store full (insufficient resources)", "nats-n1")
	o.signal(syscall.SIGCONT)
	// Whichever engine process tried to write while the store was full says
	// so; the orchestrator always does.
	h.eventually(30*time.Second, "no engine process reported its failed writes", func() bool {
		for _, name := range []string{"o1", "payment", "inventory", "shipping", "notification"} {
			if h.logContains(name, "insufficient resources") {
				return true
			}
		}
		return false
	})
	if err := h.js.DeleteStream(ctx, ballast); err != nil {
		t.Fatal(err)
	}
	h.logf("space returned")
	orders = l.wait(orders)
	h.settleAndCheck(orders, settleBound)
	if c := h.crashes(); len(c) > 0 {
		t.Errorf("processes crashed: %v", c)
	}
}
