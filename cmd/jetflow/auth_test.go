package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/streams"
)

// run runs the binary with env added to a clean environment and returns
// stdout, stderr and whether it succeeded.
func run(t *testing.T, env []string, args ...string) (string, string, bool) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err == nil
}

// TestConnectionFlags: against a server that enforces the role
// permissions, the commands connect with --nkey, $NATS_NKEY or a nats CLI
// --context, get what their role allows and nothing else, and never print
// a password.
func TestConnectionFlags(t *testing.T) {
	env := natstest.RunAuth(t)
	url := env.Server.ClientURL()
	operator := natsauth.SeedFile(env.KeyDir, natsauth.Operator)
	client := natsauth.SeedFile(env.KeyDir, natsauth.Client)
	carrier := natsauth.SeedFile(env.KeyDir, natsauth.Carrier)

	t.Run("no credentials are refused, without the password", func(t *testing.T) {
		withPass := strings.Replace(url, "nats://", "nats://admin:hunter2-secret@", 1)
		_, stderr, ok := run(t, nil, "list", "--nats", withPass)
		if ok {
			t.Fatal("connected without credentials")
		}
		if strings.Contains(stderr, "hunter2-secret") {
			t.Errorf("the password is printed: %s", stderr)
		}
		if !strings.Contains(stderr, "***@") {
			t.Errorf("the error does not name the (redacted) URL: %s", stderr)
		}
	})
	t.Run("--nkey", func(t *testing.T) {
		out, stderr, ok := run(t, nil, "list", "--nats", url, "--nkey", operator, "--output", "json")
		if !ok || !json.Valid([]byte(out)) {
			t.Fatalf("list as operator: %s %s", out, stderr)
		}
		if _, _, ok := run(t, nil, "list", "--nats", url, "--nkey", client); ok {
			t.Error("the client role may list workflows")
		}
	})
	t.Run("NATS_URL and NATS_NKEY", func(t *testing.T) {
		if out, stderr, ok := run(t, []string{"NATS_URL=" + url, "NATS_NKEY=" + operator}, "list"); !ok {
			t.Fatalf("list: %s %s", out, stderr)
		}
	})
	t.Run("--context and NATS_CONTEXT", func(t *testing.T) {
		cfg := t.TempDir()
		dir := filepath.Join(cfg, "nats", "context")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		ctx, _ := json.Marshal(map[string]string{"url": url, "nkey": operator, "description": "jetflow operator"})
		if err := os.WriteFile(filepath.Join(dir, "jf-op.json"), ctx, 0o600); err != nil {
			t.Fatal(err)
		}
		xdg := "XDG_CONFIG_HOME=" + cfg
		if out, stderr, ok := run(t, []string{xdg}, "list", "--context", "jf-op"); !ok {
			t.Fatalf("list --context: %s %s", out, stderr)
		}
		if out, stderr, ok := run(t, []string{xdg, "NATS_CONTEXT=jf-op"}, "ledger", "payment"); !ok {
			t.Fatalf("ledger with NATS_CONTEXT: %s %s", out, stderr)
		}
		// A flag wins over the context.
		if _, _, ok := run(t, []string{xdg}, "list", "--context", "jf-op", "--nkey", client); ok {
			t.Error("--nkey did not override the context's nkey")
		}
		if _, stderr, ok := run(t, []string{xdg}, "list", "--context", "nope"); ok || !strings.Contains(stderr, `--context "nope"`) {
			t.Errorf("unknown context: %s", stderr)
		}
	})
	t.Run("signal with its owner's key only", func(t *testing.T) {
		if out, stderr, ok := run(t, nil, "signal", "o-1", "carrier.picked_up", "{}", "--no-wait", "--nats", url, "--nkey", carrier); !ok {
			t.Fatalf("carrier signal: %s %s", out, stderr)
		}
		_, stderr, ok := run(t, nil, "signal", "o-1", "payment.settled", "{}", "--no-wait", "--nats", url, "--nkey", carrier)
		if ok {
			t.Error("the carrier sent payment.settled")
		}
		if !strings.Contains(stderr, `the server refused it: Permissions Violation for Publish to "signal.payment.settled.o-1"`) {
			t.Errorf("the error does not say what the server refused:\n%s", stderr)
		}
	})
}

// TestCredsFlag: --creds (and $NATS_CREDS) connect with a user JWT on a
// server in operator mode.
func TestCredsFlag(t *testing.T) {
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	ac := jwt.NewAccountClaims(accPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	sys, _ := nkeys.CreateAccount()
	sysPub, _ := sys.PublicKey()
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	uc.IssuerAccount = accPub
	userJWT, err := uc.Encode(acc)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	credsFile := filepath.Join(dir, "user.creds")
	conf := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	text := "operator: " + opJWT + "\nsystem_account: " + sysPub + "\nresolver: MEMORY\nresolver_preload: {\n  " +
		accPub + ": " + accJWT + "\n  " + sysPub + ": " + sysJWT + "\n}\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := streams.StartServer(streams.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(dir, "js"), ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	url := srv.ClientURL()
	if out, stderr, ok := run(t, nil, "signal", "o-1", "carrier.picked_up", "--nats", url); ok {
		t.Fatalf("connected without credentials: %s", out+stderr)
	}
	nc, err := streams.Connect(url, "test", nats.UserCredentials(credsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := streams.Ensure(natstest.Context(t), js, streams.Topology{}); err != nil {
		t.Fatal(err)
	}
	if out, stderr, ok := run(t, nil, "list", "--nats", url, "--creds", credsFile); !ok {
		t.Fatalf("list --creds: %s %s", out, stderr)
	}
	if out, stderr, ok := run(t, []string{"NATS_URL=" + url, "NATS_CREDS=" + credsFile}, "list"); !ok {
		t.Fatalf("list with NATS_CREDS: %s %s", out, stderr)
	}
}

// start runs the binary in the background until the end of the test.
func start(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	out := &syncBuffer{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	return out
}

// status polls `jetflow show ID` as operator until the order has status.
func waitStatus(t *testing.T, url, operator, id, status string) {
	t.Helper()
	var last string
	natstest.Eventually(t, 90*time.Second, func() bool {
		out, _, ok := run(t, nil, "show", id, "--nats", url, "--nkey", operator, "--output", "json")
		var show struct{ Status string }
		if ok && json.Unmarshal([]byte(out), &show) == nil {
			last = show.Status
		}
		return last == status
	}, "%s: status %q, want %s", id, last, status)
}

// TestSplitDeploymentUnderAuth runs deploy/README.md: each part a process
// of its own with its own role's nkey against a server that enforces the
// permissions; an order published by the client completes, and one whose
// charge the gateway settles later (its callback scheduled with the
// gateway's key) completes too.
func TestSplitDeploymentUnderAuth(t *testing.T) {
	env := natstest.RunAuth(t)
	url := env.Server.ClientURL()
	key := func(role string) string { return natsauth.SeedFile(env.KeyDir, role) }
	start(t, "orchestrator", "--nats", url, "--nkey", key(natsauth.Orchestrator), "--log-level", "warn")
	for _, svc := range natsauth.Services {
		args := []string{"participant", svc, "--nats", url, "--nkey", key(natsauth.Participant(svc)), "--log-level", "warn", "--pickup-delay", "200ms"}
		if cb := natsauth.CallbackRole(svc); cb != "" {
			args = append(args, "--callback-nkey", key(cb))
		}
		start(t, args...)
	}
	_, client, _ := env.ConnectAs(t, natsauth.Client)
	for _, o := range []string{
		`{"order_id":"o-split-1","customer_id":"c-7","amount_cents":12999,"currency":"EUR","items":[{"sku":"sku-1","qty":2}]}`,
		`{"order_id":"o-split-2","customer_id":"c-7","amount_cents":500,"currency":"EUR","items":[{"sku":"sku-2","qty":1}],"simulate":{"payment":"pending_then_settle:300ms"}}`,
	} {
		if _, err := client.Publish(natstest.Context(t), streams.OrderCreated, []byte(o)); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(t, url, key(natsauth.Operator), "o-split-1", "completed")
	waitStatus(t, url, key(natsauth.Operator), "o-split-2", "completed")

	// `jetflow signal` waits for the verdict, with the carrier's own key:
	// refused for a finished order (with the reason, exit 1), recorded for
	// an order waiting for its pickup (with the history sequence).
	carrier := key(natsauth.Carrier)
	out, stderr, ok := run(t, nil, "signal", "o-split-1", "carrier.picked_up", `{"shipment_id":"x","carrier":"y"}`, "--nats", url, "--nkey", carrier)
	if ok || !strings.Contains(stderr, "refused") || !strings.Contains(stderr, "finished workflow o-split-1") {
		t.Fatalf("signal to a finished order: ok=%v\n%s\n%s", ok, out, stderr)
	}
	if _, err := client.Publish(natstest.Context(t), streams.OrderCreated, []byte(`{"order_id":"o-split-3","customer_id":"c-7","amount_cents":700,"currency":"EUR","items":[{"sku":"sku-1","qty":1}],"simulate":{"pickup":"never"}}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, url, key(natsauth.Operator), "o-split-3", func(show string) bool { return strings.Contains(show, "timer     #") })
	out, stderr, ok = run(t, nil, "signal", "o-split-3", "carrier.picked_up", `{"shipment_id":"x","carrier":"y"}`, "--nats", url, "--nkey", carrier, "--output", "json")
	var v struct {
		Verdict    string `json:"verdict"`
		StreamSeq  uint64 `json:"stream_seq"`
		HistorySeq uint64 `json:"history_seq"`
	}
	if !ok || json.Unmarshal([]byte(out), &v) != nil || v.Verdict != "recorded" || v.HistorySeq == 0 || v.StreamSeq == 0 {
		t.Fatalf("signal to an order waiting for it: ok=%v\n%s\n%s", ok, out, stderr)
	}
	waitStatus(t, url, key(natsauth.Operator), "o-split-3", "completed")
	if strings.Contains(stderr, "iolation") {
		t.Errorf("permission violation waiting for the verdict:\n%s", stderr)
	}
}

// waitFor polls `jetflow show ID` (text) as operator until cond holds.
func waitFor(t *testing.T, url, operator, id string, cond func(show string) bool) {
	t.Helper()
	var last string
	natstest.Eventually(t, 90*time.Second, func() bool {
		out, _, ok := run(t, nil, "show", id, "--nats", url, "--nkey", operator)
		last = out
		return ok && cond(out)
	}, "%s: show never matched; last:\n%s", id, last)
}

// TestDevAuth: `jetflow dev --auth` creates a seed per role (0600) in the
// data folder, runs the demo with every part on its own role, says where
// the credentials are and never prints one.
func TestDevAuth(t *testing.T) {
	addr := freeAddr(t)
	data := t.TempDir()
	out, stderr, ok := run(t, nil, "dev", "--auth", "--listen", addr, "--data", data, "--demo", "12", "--demo-exit", "--pickup-delay", "200ms", "--log-level", "info")
	if !ok || !strings.Contains(stderr, "all 12 demo orders finished") {
		t.Fatalf("dev --auth: %s\n%s", out, stderr)
	}
	dir := filepath.Join(data, "auth")
	if !strings.Contains(stderr, dir) {
		t.Errorf("the output does not say where the credentials are (%s)", dir)
	}
	for _, role := range natsauth.Roles(nil) {
		path := natsauth.SeedFile(dir, role.Name)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, st.Mode().Perm())
		}
		seed, _ := os.ReadFile(path)
		if strings.Contains(stderr+out, strings.TrimSpace(string(seed))) {
			t.Errorf("the seed of %s is printed", role.Name)
		}
	}
	if strings.Contains(stderr, "Violation") || strings.Contains(stderr, "violation") {
		t.Errorf("permission violations while running the demo:\n%s", stderr)
	}
}

// TestDevPartitionedUnderAuth runs `jetflow dev --auth` with the history
// partitioned over four streams: every part on its own role's nkey, under
// permissions written for that layout, and the operator's `jetflow list`
// and `show` find the workflows in their partitions.
func TestDevPartitionedUnderAuth(t *testing.T) {
	addr := freeAddr(t)
	data := t.TempDir()
	dev := start(t, "dev", "--auth", "--history-partitions", "4", "--listen", addr, "--data", data, "--ui", "", "--demo", "12", "--pickup-delay", "200ms", "--log-level", "warn")
	operator := natsauth.SeedFile(filepath.Join(data, "auth"), natsauth.Operator)
	type row struct {
		ID     string `json:"id"`
		Type   string `json:"type"`
		Status string `json:"status"`
	}
	// A strings.Builder is read when the failure is formatted: the last
	// listing, not the first.
	var last strings.Builder
	var orders []row
	natstest.Eventually(t, 90*time.Second, func() bool {
		out, stderr, ok := run(t, nil, "list", "--nats", "nats://"+addr, "--nkey", operator, "--output", "json")
		last.Reset()
		last.WriteString(out + stderr)
		var page struct {
			Workflows []row `json:"workflows"`
		}
		if !ok || json.Unmarshal([]byte(out), &page) != nil {
			return false
		}
		orders = orders[:0]
		for _, r := range page.Workflows {
			if r.Type != "order.fulfillment" {
				continue // the reconciliation's schedule
			}
			if r.Status == "running" || r.Status == "" {
				return false
			}
			orders = append(orders, r)
		}
		return len(orders) == 12
	}, "the 12 demo orders did not all end; jetflow list:\n%s\ndev:\n%s", &last, dev)
	rows := orders
	out, stderr, ok := run(t, nil, "show", rows[0].ID, "--nats", "nats://"+addr, "--nkey", operator)
	if !ok || !strings.Contains(out, rows[0].ID) {
		t.Errorf("jetflow show %s: %s\n%s", rows[0].ID, out, stderr)
	}
	// The histories are in the four partitions, not in one stream.
	nkey, err := nats.NkeyOptionFromSeed(operator)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+addr, nkey, nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.Operator)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		if _, err := js.Stream(context.Background(), streams.HistoryPartitionStream(p)); err != nil {
			t.Errorf("partition %d: %v", p, err)
		}
	}
	if _, err := js.Stream(context.Background(), streams.HistoryStream); err == nil {
		t.Errorf("%s exists beside the partitions", streams.HistoryStream)
	}
	// The carrier finds the layout from the stream names and reads the
	// verdict of its signal in the workflow's partition: a pickup for an
	// order that ended is refused, with the reason.
	carrier := natsauth.SeedFile(filepath.Join(data, "auth"), natsauth.Carrier)
	out, stderr, ok = run(t, nil, "signal", rows[0].ID, "carrier.picked_up", `{"carrier":"late"}`, "--nats", "nats://"+addr, "--nkey", carrier)
	if ok || strings.Contains(out+stderr, "no verdict") || strings.Contains(out+stderr, "layout is unknown") || !strings.Contains(out+stderr, rows[0].ID) {
		t.Errorf("jetflow signal to the ended %s as the carrier: ok=%v\n%s\n%s", rows[0].ID, ok, out, stderr)
	}
	if s := dev.String(); strings.Contains(s, "iolation") {
		t.Errorf("dev --auth --history-partitions 4:\n%s", s)
	}
}

// TestPartitionsOnDisk: `jetflow dev --auth` restarted on a data directory
// of a partitioned history without --history-partitions writes the
// permissions of that layout, read from the stream directories.
func TestPartitionsOnDisk(t *testing.T) {
	data := t.TempDir()
	if k := partitionsOnDisk(data); k != 0 {
		t.Fatalf("empty directory: %d partitions", k)
	}
	for _, name := range []string{"JETFLOW_HISTORY_0", "JETFLOW_HISTORY_1", "JETFLOW_HISTORY_2", "JETFLOW_INDEX", "JETFLOW_HISTORY_x"} {
		if err := os.MkdirAll(filepath.Join(data, "jetstream", "JETFLOW", "streams", name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if k := partitionsOnDisk(data); k != 3 {
		t.Fatalf("three partition directories: %d partitions", k)
	}
}
