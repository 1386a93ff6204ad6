package natsconn

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestFlagsOverContextOverDefaults: a flag or environment variable wins
// over the context's field; the context fills what is unset.
func TestFlagsOverContextOverDefaults(t *testing.T) {
	dir := t.TempDir()
	ctxDir := filepath.Join(dir, "nats", "context")
	if err := os.MkdirAll(ctxDir, 0o700); err != nil {
		t.Fatal(err)
	}
	body := `{"url":"nats://ctx:4222","nkey":"/ctx.nk","ca":"/ctx-ca.pem","inbox_prefix":"_INBOX_CTX","user":"u","password":"p"}`
	if err := os.WriteFile(filepath.Join(ctxDir, "prod.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := env(map[string]string{"XDG_CONFIG_HOME": dir, "NATS_CONTEXT": "prod", "NATS_CA": "/env-ca.pem"})
	var f Flags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f.Register(fs, getenv)
	if err := fs.Parse([]string{"--nkey", "/flag.nk"}); err != nil {
		t.Fatal(err)
	}
	r, err := f.Resolve(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if r.URL != "nats://ctx:4222" || r.NKey != "/flag.nk" || r.TLSCA != "/env-ca.pem" || r.InboxPrefix != "_INBOX_CTX" || r.User != "u" || r.Password != "p" {
		t.Errorf("resolved %+v", r)
	}
}

func TestOptionsRefuseContradictions(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Flags
		want string
	}{
		{"creds and nkey", Flags{Creds: "a", NKey: "b"}, "--creds and --nkey"},
		{"cert without key", Flags{TLSCert: "c.pem"}, `--tls-cert "c.pem" and --tls-key ""`},
		{"wildcard inbox", Flags{InboxPrefix: "_INBOX.*"}, `--inbox-prefix "_INBOX.*"`},
		{"missing nkey file", Flags{NKey: "/nonexistent.nk"}, "--nkey /nonexistent.nk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.f.Options("")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want it to name %s", err, tc.want)
			}
		})
	}
}
