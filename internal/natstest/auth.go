package natstest

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/streams"
)

// RunAuth starts an embedded JetStream server that enforces the jetflow
// role permissions (the configuration `jetflow dev --auth` runs), with an
// nkey seed per role in Env.KeyDir. Env.NC and Env.JS are connected as
// admin, for the test's own inspection; parts of the system under test
// connect with ConnectAs. The topology is ensured by the orchestrator role.
func RunAuth(t testing.TB) *Env {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "auth")
	// The permissions name the streams of the history's layout.
	streams.SetHistoryPartitions(HistoryPartitions)
	conf, err := natsauth.WriteServerConfig(keys, natsauth.Roles(nil))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := streams.StartServer(streams.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(dir, "js"), ConfigFile: conf})
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	env := &Env{Server: srv, Dir: dir, KeyDir: keys}
	env.NC, env.JS, _ = env.ConnectAs(t, natsauth.Admin)
	_, ojs, _ := env.ConnectAs(t, natsauth.Orchestrator)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, ojs, Topology()); err != nil {
		t.Fatalf("ensure topology as orchestrator: %v", err)
	}
	return env
}

// Violations collects the permission violations the server reports to a
// connection.
type Violations struct {
	mu   sync.Mutex
	errs []string
}

// Has reports whether a violation naming subject was reported.
func (v *Violations) Has(subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.errs {
		if strings.Contains(e, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// All returns every violation reported so far.
func (v *Violations) All() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.errs...)
}

// ConnectAs opens a TCP connection to the server of RunAuth as role, with
// its nkey and inbox prefix, closed at the end of the test.
func (e *Env) ConnectAs(t testing.TB, role string) (*nats.Conn, jetstream.JetStream, *Violations) {
	t.Helper()
	nkey, err := nats.NkeyOptionFromSeed(natsauth.SeedFile(e.KeyDir, role))
	if err != nil {
		t.Fatalf("credentials of %s: %v", role, err)
	}
	v := &Violations{}
	nc, err := nats.Connect(e.Server.ClientURL(), nkey, nats.Name("test "+role),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(role)),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			v.mu.Lock()
			v.errs = append(v.errs, err.Error())
			v.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, v
}
