// Package natstest runs real nats-servers for tests: an embedded JetStream
// server with its data in t.TempDir(), stopped before the directory goes.
package natstest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// Env is a running server with a connection and the jetflow topology.
type Env struct {
	Server *streams.Server
	NC     *nats.Conn
	JS     jetstream.JetStream
	Dir    string
	// KeyDir holds the nkey seed of every role on a server of RunAuth.
	KeyDir string
}

// PartitionsEnv names the environment variable that makes every server of
// this package hold a partitioned history: JETFLOW_TEST_HISTORY_PARTITIONS=4
// go test ./test/ runs the end-to-end tests against four history streams.
// The layout is process-wide (streams.SetHistoryPartitions), so one test
// binary runs one layout.
const PartitionsEnv = "JETFLOW_TEST_HISTORY_PARTITIONS"

// HistoryPartitions is the history layout RunJetStream and RunAuth make
// (streams.Topology.HistoryPartitions): 0, one stream, unless PartitionsEnv
// says otherwise. A test package may set it in TestMain.
var HistoryPartitions = partitionsFromEnv()

func partitionsFromEnv() int {
	v := os.Getenv(PartitionsEnv)
	if v == "" {
		return 0
	}
	k, err := strconv.Atoi(v)
	if err != nil || k < 1 || k > streams.MaxHistoryPartitions {
		panic(fmt.Sprintf("%s=%q: want 1 to %d", PartitionsEnv, v, streams.MaxHistoryPartitions))
	}
	return k
}

// Topology is the topology the servers of this package are made with.
func Topology() streams.Topology {
	return streams.Topology{HistoryPartitions: HistoryPartitions}
}

// RunJetStream starts an embedded JetStream server listening on a free
// loopback port, connects to it and ensures the jetflow streams.
func RunJetStream(t testing.TB) *Env {
	t.Helper()
	return RunJetStreamIn(t, t.TempDir())
}

// RunJetStreamIn is RunJetStream on an existing data directory: after
// Env.Stop, it starts the server again on the same data, as a restart does.
func RunJetStreamIn(t testing.TB, dir string) *Env {
	t.Helper()
	srv, err := streams.StartServer(streams.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	env := &Env{Server: srv, Dir: dir}
	env.NC, env.JS = Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, env.JS, Topology()); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	return env
}

// Stop closes the connection and stops the server, keeping its data.
func (e *Env) Stop() {
	e.NC.Close()
	e.Server.Stop()
}

// Connect opens another connection to srv, closed at the end of the test.
func Connect(t testing.TB, srv *streams.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Eventually polls cond until it returns true or the deadline passes, then
// fails the test with msg. It polls every 5ms at first, backing off to
// every 200ms, so a slow condition does not load the server it waits on.
func Eventually(t testing.TB, within time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(within)
	pause := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: "+msg, append([]any{within}, args...)...)
		}
		time.Sleep(pause)
		pause = min(pause*2, 200*time.Millisecond)
	}
}

// Context returns a context cancelled at the end of the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// FillSignals bounds the signals stream at bound bytes (its configuration
// with Topology.SignalsMaxBytes) and publishes signals to workflows that
// do not exist, first of size bytes, then of one byte, each until the
// stream refuses one because it is full: no signal fits afterwards. It
// returns the sequences of the signals stored. Only the signals stream is
// updated, and not while an orchestrator is starting: nats-server v2.15.2
// reads a stream's configuration unlocked while it makes a consumer on it
// (the race detector reports it), so FillSignals first waits for the
// signals router's consumer when orchestrators is true.
func FillSignals(t testing.TB, js jetstream.JetStream, bound int64, size int, orchestrators bool) []uint64 {
	t.Helper()
	ctx := context.Background()
	if orchestrators {
		Eventually(t, 30*time.Second, func() bool {
			_, err := js.Consumer(ctx, streams.SignalsStream, streams.SignalsConsumer)
			return err == nil
		}, "no orchestrator made %s on %s", streams.SignalsConsumer, streams.SignalsStream)
	}
	topo := Topology()
	topo.SignalsMaxBytes = bound
	for _, cfg := range topo.StreamConfigs() {
		if cfg.Name != streams.SignalsStream {
			continue
		}
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatalf("bound the signals stream: %v", err)
		}
	}
	var stored []uint64
	for _, n := range []int{size, 1} {
		body := make([]byte, n)
		for {
			ack, err := js.Publish(ctx, streams.SignalSubject("flood", "flood-"+strconv.Itoa(len(stored))), body)
			if _, full := streams.StreamFull(err); full {
				break
			}
			if err != nil {
				t.Fatalf("fill the signals stream: %v", err)
			}
			stored = append(stored, ack.Sequence)
			if int64(len(stored)) > bound {
				t.Fatalf("%d signals stored under a bound of %d bytes: the stream is not bounded", len(stored), bound)
			}
		}
	}
	return stored
}
