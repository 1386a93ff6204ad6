package participants_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startServerAt starts a server on addr and dir with the jetflow topology,
// and returns it with an admin connection.
func startServerAt(t *testing.T, addr, dir string) (*streams.Server, jetstream.JetStream) {
	t.Helper()
	srv, err := streams.StartServer(streams.ServerConfig{Listen: addr, StoreDir: dir})
	if err != nil {
		t.Fatalf("start nats-server on %s: %v", addr, err)
	}
	t.Cleanup(srv.Stop)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, streams.Topology{}); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	return srv, js
}

// TestRunRidesOutServerAbsence starts a participant while its server is
// not there yet: Run waits for it instead of returning an error, and
// serves commands once the server is up. The server is then stopped and
// started again on the same data: the participant reconnects and serves
// the next command.
func TestRunRidesOutServerAbsence(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	nc, err := nats.Connect("nats://"+addr, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect with retry: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	svc := participants.Service{Name: "echo", Handlers: map[string]participants.Handler{
		"say": participants.HandlerFunc(func(_ context.Context, c *participants.Command) (any, error) {
			var s string
			return "echo " + s, c.Decode(&s)
		}),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- participants.Run(ctx, participants.Config{NC: nc, JS: js, AckWait: 2 * time.Second}, svc)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(within):
			t.Errorf("Run did not return after cancel")
		}
	})

	// Run must still be waiting: the server is not there, and a Run that
	// gave up would have returned by the time the server is up.
	srv, ajs := startServerAt(t, addr, dir)
	select {
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("Run returned %v while its server was away; want it to wait", err)
	default:
	}
	send := func(js jetstream.JetStream, id string) {
		t.Helper()
		c := command(t, id, "echo", "say", "hi")
		m, err := streams.NewMsg(streams.CommandSubject(c.WorkflowID, c.ID, c.Service, c.Action), &c)
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(context.Background(), within)
		defer pcancel()
		if _, err := js.PublishMsg(pctx, m); err != nil {
			t.Fatalf("publish command of %s: %v", id, err)
		}
	}
	answered := func(js jetstream.JetStream, id string) func() bool {
		return func() bool {
			gctx, gcancel := context.WithTimeout(context.Background(), time.Second)
			defer gcancel()
			m, err := js.Stream(gctx, streams.HistoryStream)
			if err != nil {
				return false
			}
			raw, err := m.GetLastMsgForSubject(gctx, streams.ResultSubject(id, 1, "echo", "say"))
			if err != nil {
				return false
			}
			v, err := schema.Decode(raw.Header.Get(schema.HeaderKind), raw.Header.Get(schema.HeaderSchema), raw.Data)
			res, ok := v.(*schema.Result)
			return err == nil && ok && res.Error == nil
		}
	}
	send(ajs, "before-outage")
	natstest.Eventually(t, 30*time.Second, answered(ajs, "before-outage"), "the participant started before its server never answered a command")

	for i := range 2 {
		srv.Stop()
		srv, ajs = startServerAt(t, addr, dir)
		id := "after-outage-" + strconv.Itoa(i)
		send(ajs, id)
		natstest.Eventually(t, 30*time.Second, answered(ajs, id), "the participant did not answer %s after the server restarted", id)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("Run returned %v during an outage; want it to ride it out", err)
	default:
	}
}
