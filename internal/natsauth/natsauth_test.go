package natsauth_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/jetflow-io/jetflow/internal/natsauth"
)

// TestDeployConfigUpToDate: deploy/nats-server.conf is what the Go source
// of truth generates, so the permissions in production cannot drift from
// the ones the tests enforce. Regenerate with `jetflow auth config --out deploy`.
func TestDeployConfigUpToDate(t *testing.T) {
	got, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := natsauth.DeployConfig(natsauth.Roles(nil)); string(got) != want {
		t.Fatal("deploy/nats-server.conf differs from internal/natsauth: run `go run ./cmd/jetflow auth config --out deploy`")
	}
}

// TestDeployServerConfigLoads: deploy/nats-server.conf, with the nkeys.conf
// that `jetflow auth keys` writes, is a configuration nats-server accepts,
// and gives every role its permissions.
func TestDeployServerConfigLoads(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"nats-server.conf"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roles := natsauth.Roles(nil)
	keys, err := natsauth.EnsureKeys(filepath.Join(dir, "keys"), roles)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nkeys.conf"), []byte(natsauth.KeysConfig(keys, roles)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Nkeys) != len(roles) {
		t.Fatalf("%d nkey users, want %d", len(opts.Nkeys), len(roles))
	}
	byKey := map[string]*server.NkeyUser{}
	for _, u := range opts.Nkeys {
		byKey[u.Nkey] = u
	}
	for _, r := range roles {
		u := byKey[keys[r.Name]]
		if u == nil || u.Permissions == nil || u.Account == nil || u.Account.Name != natsauth.Account {
			t.Fatalf("%s: no user with its key in account %s", r.Name, natsauth.Account)
		}
		if !slices.Equal(u.Permissions.Publish.Allow, r.Publish.Allow) || !slices.Equal(u.Permissions.Subscribe.Allow, r.Subscribe.Allow) {
			t.Errorf("%s: permissions differ from the source of truth", r.Name)
		}
	}
	for _, f := range []string{"orchestrator.nk", "client.nk"} {
		st, err := os.Stat(filepath.Join(dir, "keys", f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

// TestRolesNeverWriteWhatTheyDoNotOwn checks the table itself: only the
// orchestrator writes history events other than results, starts and
// operator requests; the operator writes starts and operator requests
// only; a participant writes results of its own service only; the
// reconcile role writes starts and the results of its two services only.
func TestRolesNeverWriteWhatTheyDoNotOwn(t *testing.T) {
	for _, r := range natsauth.Roles(nil) {
		for _, s := range r.Publish.Allow {
			switch {
			case r.Name == natsauth.Admin:
			case strings.HasPrefix(s, "wf.") && strings.HasPrefix(r.Name, "participant-"):
				svc := strings.TrimPrefix(r.Name, "participant-")
				if s != "wf.*.res.*."+svc+".*" {
					t.Errorf("%s may publish %s", r.Name, s)
				}
			case strings.HasPrefix(s, "wf.") && r.Name == natsauth.Operator:
				if s != "wf.*.start" && s != "wf.*.op.>" {
					t.Errorf("%s may publish %s", r.Name, s)
				}
			case strings.HasPrefix(s, "wf.") && r.Name == natsauth.Reconcile:
				ok := s == "wf.*.start"
				for _, svc := range natsauth.ReconcileServices {
					ok = ok || s == "wf.*.res.*."+svc+".*"
				}
				if !ok {
					t.Errorf("%s may publish %s", r.Name, s)
				}
			case strings.HasPrefix(s, "wf.") && r.Name != natsauth.Orchestrator:
				t.Errorf("%s may publish %s", r.Name, s)
			case strings.HasPrefix(s, "signal.payment.settled") && r.Name != natsauth.PaymentGateway:
				t.Errorf("%s may send payment.settled (%s)", r.Name, s)
			}
		}
		for _, s := range r.Subscribe.Allow {
			if strings.HasPrefix(s, "_INBOX") && s != natsauth.InboxPrefix(r.Name)+".>" {
				t.Errorf("%s may subscribe to %s", r.Name, s)
			}
		}
	}
}
