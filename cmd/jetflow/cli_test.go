package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/streams"
)

// The habits of a CLI: a flag set and a usage line per command, help,
// completion, --output json, the nats CLI's connection conventions, logs a
// person can read.

// runStatus runs the binary with env added and returns stdout, stderr and
// the exit status.
func runStatus(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// flagNames lists the flags a usage text shows, aliases included
// ("  --nats, -s, --server string   NATS server URL ...").
func flagNames(usage string) []string {
	var names []string
	for _, line := range strings.Split(usage, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "-") {
			continue
		}
		column, _, _ := strings.Cut(line, "  ")
		for _, n := range strings.Split(column, ", ") {
			names = append(names, strings.Fields(n)[0])
		}
	}
	return names
}

// TestEachCommandHasItsOwnFlags: `COMMAND -h` shows the usage line with
// the positional arguments and only the flags the command uses.
func TestEachCommandHasItsOwnFlags(t *testing.T) {
	for _, tc := range []struct {
		cmd       string
		usage     string
		has, lack []string
	}{
		{"participant", "Usage: jetflow participant [flags] NAME", []string{"--latency", "--pickup-delay", "--callback-nkey", "--nats", "--log-level"}, []string{"--pickup-timeout", "--payment-timeout", "--max-pending-signals", "--max-order-size", "--output"}},
		{"orchestrator", "Usage: jetflow orchestrator [flags]", []string{"--pickup-timeout", "--max-order-size", "--ack-wait", "--reconcile-nkey"}, []string{"--latency", "--payment-decline-rate", "--pickup-delay", "--callback-nkey", "--demo"}},
		{"dev", "Usage: jetflow dev [flags]", []string{"--pickup-timeout", "--latency", "--demo", "--log-format"}, []string{"--callback-nkey", "--reconcile-nkey", "--output"}},
		{"signal", "Usage: jetflow signal [flags] WORKFLOW_ID NAME [JSON]", []string{"--output", "--nats", "--server", "-s", "--tlscert"}, []string{"--log-level", "--replicas"}},
		{"show", "Usage: jetflow show [flags] WORKFLOW_ID", []string{"--output", "--creds"}, []string{"--log-level", "--status"}},
		{"ledger", "Usage: jetflow ledger [flags] SYSTEM", []string{"--order", "--output"}, []string{"--log-level", "--status"}},
		{"auth", "Usage: jetflow auth [flags] config|keys", []string{"--out", "--services"}, []string{"--nats"}},
		{"decode", "Usage: jetflow decode [flags]", nil, []string{"--nats", "--output"}},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			_, stderr, code := runStatus(t, nil, tc.cmd, "-h")
			if code != 0 || !strings.HasPrefix(stderr, tc.usage+"\n") {
				t.Fatalf("exit %d, usage:\n%s\nwant it to start with %q", code, stderr, tc.usage)
			}
			names := flagNames(stderr)
			for _, f := range tc.has {
				if !contains(names, f) {
					t.Errorf("%s -h does not list %s:\n%s", tc.cmd, f, stderr)
				}
			}
			for _, f := range tc.lack {
				if contains(names, f) {
					t.Errorf("%s -h lists %s, a flag it does not use:\n%s", tc.cmd, f, stderr)
				}
			}
		})
	}
}

// TestHelpCommand: `jetflow help CMD` prints a command's usage on stdout;
// an unknown command is a usage error naming the known ones; wrong
// arguments show the usage line and exit 2.
func TestHelpCommand(t *testing.T) {
	out, _, code := runStatus(t, nil, "help", "signal")
	if code != 0 || !strings.HasPrefix(out, "Usage: jetflow signal [flags] WORKFLOW_ID NAME [JSON]\n") || !strings.Contains(out, "--output") {
		t.Fatalf("help signal: exit %d\n%s", code, out)
	}
	out, _, code = runStatus(t, nil, "help")
	if code != 0 || !strings.Contains(out, "signal WORKFLOW_ID NAME [JSON]") || !strings.Contains(out, "completion bash|zsh") {
		t.Fatalf("help: exit %d\n%s", code, out)
	}
	_, stderr, code := runStatus(t, nil, "help", "sgnal")
	if code != 2 || !strings.Contains(stderr, `"sgnal": no such command`) || !strings.Contains(stderr, "signal") {
		t.Fatalf("help sgnal: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runStatus(t, nil, "signal", "o-1")
	if code != 2 || !strings.Contains(stderr, "Usage: jetflow signal [flags] WORKFLOW_ID NAME [JSON]") {
		t.Fatalf("signal with one argument: exit %d\n%s", code, stderr)
	}
}

// TestBashCompletion: the bash script completes commands, each command's
// own flags and the values of its positional arguments.
func TestBashCompletion(t *testing.T) {
	script, _, code := runStatus(t, nil, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: exit %d", code)
	}
	path := filepath.Join(t.TempDir(), "jetflow.bash")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(line string) []string {
		t.Helper()
		words := strings.Split(line, " ")
		// COMP_WORDS as bash sets them for the line, the cursor on the last word.
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		sh := ". " + path + "; COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) + "; _jetflow; printf '%s\\n' \"${COMPREPLY[@]}\""
		out, err := exec.Command("bash", "-c", sh).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", line, err, out)
		}
		return strings.Fields(string(out))
	}
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"jetflow par", []string{"participant"}},
		{"jetflow comp", []string{"completion"}},
		{"jetflow participant --pick", []string{"--pickup-delay"}},
		{"jetflow orchestrator --pick", []string{"--pickup-timeout"}},
		{"jetflow dev --pick", []string{"--pickup-delay", "--pickup-timeout"}},
		{"jetflow participant pay", []string{"payment"}},
		{"jetflow ledger --order o-1 inv", []string{"inventory"}},
		{"jetflow show --out", []string{"--output"}},
		{"jetflow show --nats ", nil}, // a flag's value: the shell's file names
		{"jetflow completion ", []string{"bash", "zsh"}},
	} {
		if got := complete(tc.line); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%q completes to %q, want %q", tc.line, got, tc.want)
		}
	}
	zsh, _, code := runStatus(t, nil, "completion", "zsh")
	if code != 0 || !strings.HasPrefix(zsh, "#compdef jetflow\n") || !strings.Contains(zsh, "'--pickup-timeout[how long an order waits") {
		t.Fatalf("completion zsh: exit %d\n%.400s", code, zsh)
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		if out, err := exec.Command("zsh", "-n", "-c", zsh).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
}

// TestNatsConnectionConventions: --server and -s are --nats, as in the nats
// CLI; $NATS_URL is the default; the help says the default once; --output
// json prints what signal sent (--no-wait: no orchestrator runs here to
// give a verdict).
func TestNatsConnectionConventions(t *testing.T) {
	env := natstest.RunJetStream(t)
	url := env.Server.ClientURL()
	for _, args := range [][]string{
		{"list", "--output", "json", "--server", url},
		{"list", "--output", "json", "-s", url},
		{"list", "--output", "json", "--nats", url},
	} {
		out, stderr, code := runStatus(t, []string{"NATS_URL=nats://127.0.0.1:1"}, args...)
		var page struct {
			Workflows []json.RawMessage `json:"workflows"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Workflows) != 0 {
			t.Errorf("jetflow %s: exit %d, %q %s", strings.Join(args, " "), code, out, stderr)
		}
	}
	out, stderr, code := runStatus(t, []string{"NATS_URL=" + url}, "signal", "o-9", "carrier.picked_up", `{"carrier":"DHL"}`, "--output", "json", "--no-wait")
	var sent struct {
		WorkflowID string `json:"workflow_id"`
		Signal     string `json:"signal"`
		Subject    string `json:"subject"`
		StreamSeq  uint64 `json:"stream_seq"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sent) != nil || sent.WorkflowID != "o-9" || sent.Subject != "signal.carrier.picked_up.o-9" || sent.StreamSeq == 0 {
		t.Fatalf("signal --output json: exit %d, %q %s", code, out, stderr)
	}

	_, usage, _ := runStatus(t, []string{"NATS_URL=" + url}, "show", "-h")
	found := false
	for _, line := range strings.Split(usage, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--nats,") {
			found = true
			if strings.Count(line, "default") != 1 || strings.Contains(line, url) {
				t.Errorf("the --nats help says its default %d times: %s", strings.Count(line, "default"), line)
			}
		}
	}
	if !found {
		t.Errorf("show -h has no --nats line:\n%s", usage)
	}
}

// TestDevLogs: `jetflow dev` logs JSON lines with --log-format json and
// zerolog's console format with --log-format console; the embedded
// server's banner shows at debug only; progress and the demo's lines are
// plain; a bad format is refused naming it.
func TestDevLogs(t *testing.T) {
	dev := func(format, level string) string {
		t.Helper()
		_, stderr, code := runStatus(t, nil, "dev", "--listen", freeAddr(t), "--data", t.TempDir(), "--demo", "1", "--demo-exit",
			"--pickup-delay", "0s", "--log-format", format, "--log-level", level)
		if code != 0 {
			t.Fatalf("dev --log-format %s: exit %d\n%s", format, code, stderr)
		}
		return stderr
	}
	plain := func(line string) bool {
		return strings.HasPrefix(line, "progress: ") || strings.HasPrefix(line, "jetflow dev: ") || strings.HasPrefix(line, "all 1 demo order")
	}
	logs := dev("json", "info")
	if strings.Contains(logs, "Starting nats-server") || strings.Contains(logs, "JETSTREAM") {
		t.Errorf("the nats-server banner at info:\n%s", logs)
	}
	var sawLog, sawProgress bool
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if plain(line) {
			sawProgress = sawProgress || strings.HasPrefix(line, "progress: ")
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil || v["level"] == nil {
			t.Errorf("--log-format json: not a JSON log line: %q", line)
		}
		sawLog = true
	}
	if !sawLog || !sawProgress {
		t.Errorf("log lines %v, progress lines %v:\n%s", sawLog, sawProgress, logs)
	}
	// The last progress line counts the demo order, not the schedule's
	// run that waits for its slot.
	last := logs[strings.LastIndex(logs, "progress: "):]
	if !strings.HasPrefix(last, "progress: workflows 1 | running 0 | ") {
		t.Errorf("last progress line %q, want the one demo order, none running", strings.SplitN(last, "\n", 2)[0])
	}

	logs = dev("console", "debug")
	if !strings.Contains(logs, "Starting nats-server") {
		t.Errorf("no nats-server banner at debug:\n%.2000s", logs)
	}
	console := regexp.MustCompile(`^\d\d:\d\d:\d\d (DBG|INF|WRN|ERR) `)
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !plain(line) && !console.MatchString(line) {
			t.Errorf("--log-format console: %q", line)
		}
	}

	_, stderr, code := runStatus(t, nil, "dev", "--log-format", "xml", "--nats", "nats://127.0.0.1:1")
	if code == 0 || !strings.Contains(stderr, `--log-format "xml": want auto, console or json`) {
		t.Errorf("--log-format xml: exit %d, %s", code, stderr)
	}
}

// TestProgressCountsStoredDeadLetters: the progress line's dead letters
// are the messages the dead-letter stream holds, so a restart on the same
// data shows them still; a ledger of one effect says "1 effect".
func TestProgressCountsStoredDeadLetters(t *testing.T) {
	data := t.TempDir()
	addr := freeAddr(t)
	url := "nats://" + addr
	start := func() (*exec.Cmd, *syncBuffer) {
		// No reconciliation schedule: its pending run would count as a workflow.
		cmd := exec.Command(binary, "dev", "--listen", addr, "--data", data, "--log-level", "warn", "--pickup-delay", "0s", "--reconcile-schedule", "")
		out := &syncBuffer{}
		cmd.Stderr = out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("jetflow dev's stderr:\n%s", out.String())
			}
		})
		return cmd, out
	}
	dev, out := start()
	var nc *nats.Conn
	natstest.Eventually(t, 60*time.Second, func() bool {
		var err error
		nc, err = nats.Connect(url)
		return err == nil
	}, "jetflow dev did not listen on %s", addr)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	order := `{"order_id":"o-dl-1","customer_id":"c-7","amount_cents":500,"currency":"EUR","items":[{"sku":"sku-1","qty":1}],"simulate":{"pickup":"at_creation"}}`
	for _, body := range []string{"not json", `{"order_id":""}`, order} {
		// Acknowledged: stored once jetflow dev has made its streams.
		natstest.Eventually(t, 30*time.Second, func() bool {
			_, err := js.Publish(context.Background(), streams.OrderCreated, []byte(body))
			return err == nil
		}, "publish %q", body)
	}
	nc.Close()
	natstest.Eventually(t, 60*time.Second, func() bool {
		return strings.Contains(out.String(), "completed 1 |") && strings.Contains(out.String(), "dead letters 2")
	}, "progress does not show the order completed and 2 dead letters")
	ledger := string(jetflow(t, nil, "ledger", "payment", "--order", "o-dl-1", "--nats", url))
	if !strings.Contains(ledger, "(1 effect)") {
		t.Errorf("ledger of one charge:\n%s", ledger)
	}

	if err := dev.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := dev.Wait(); err != nil {
		t.Fatalf("jetflow dev exit: %v\n%s", err, out.String())
	}
	_, out = start()
	natstest.Eventually(t, 60*time.Second, func() bool {
		return strings.Contains(out.String(), "progress: ")
	}, "no progress line after the restart:\n%s", out.String())
	first := strings.SplitN(out.String()[strings.Index(out.String(), "progress: "):], "\n", 2)[0]
	if !strings.Contains(first, "workflows 1 |") || !strings.HasSuffix(first, "dead letters 2") {
		t.Errorf("after a restart: %q, want the workflow and the 2 stored dead letters", first)
	}
}
