package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/internal/natstest"
)

// The README's commands, run as a reader runs them, so the README cannot
// drift from the binary.

// readmeMarker, on the line before a ```sh block of README.md, marks the
// block as runnable: TestREADME runs it against `jetflow dev`.
const readmeMarker = "<!-- test -->"

// readmeBlock is one runnable shell block of the README.
type readmeBlock struct {
	line int // of the opening fence
	text string
}

func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks []readmeBlock
		marked bool
		cur    *readmeBlock
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.HasPrefix(line, "```"):
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case strings.TrimSpace(line) == readmeMarker:
			marked = true
		case marked && strings.TrimSpace(line) == "":
		case marked && line == "```sh":
			cur, marked = &readmeBlock{line: n}, false
		case marked:
			t.Fatalf("README.md:%d: %s is followed by %q, not a ```sh block", n, readmeMarker, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// readmePrelude runs before each block. Without the nats CLI, `nats pub`
// is done by the test binary (natsPubShim) and every other nats command is
// skipped; `nats stream view` is always skipped: it pages, and refuses to
// run without a terminal.
const readmePrelude = `set -euo pipefail
if command -v nats >/dev/null; then
	nats() {
		case "$1 ${2:-}" in
		"stream view") echo "(skipped: nats $*: it pages on a terminal)" ;;
		*) command nats "$@" ;;
		esac
	}
else
	nats() {
		case "$1" in
		pub) JETFLOW_README_NATS_PUB=1 "$JETFLOW_TEST_BINARY" "$@" ;;
		*) echo "(skipped, the nats CLI is not installed: nats $*)" ;;
		esac
	}
fi
`

// readmeWrapper is bin/jetflow as the README calls it. The README's
// commands follow each other without the pause a reader takes, so a
// command that reads what the one before it caused (show, ledger, signal)
// is polled until it succeeds, for at most 30 s; a usage error (status 2)
// fails at once. Any other command is the binary.
const readmeWrapper = `#!/bin/sh
case "$1" in
show|ledger|signal)
	out=$(mktemp) err=$(mktemp)
	trap 'rm -f "$out" "$err"' EXIT
	i=0
	while :; do
		"$JETFLOW_BINARY" "$@" >"$out" 2>"$err" && break
		rc=$? i=$((i + 1))
		if [ $rc -eq 2 ] || [ $i -ge 150 ]; then cat "$out"; cat "$err" >&2; exit $rc; fi
		sleep 0.2
	done
	cat "$out"; cat "$err" >&2 ;;
*) exec "$JETFLOW_BINARY" "$@" ;;
esac
`

// natsPubShim is `nats pub SUBJECT BODY` for the README test on a machine
// without the nats CLI: the test binary runs it when
// JETFLOW_README_NATS_PUB is set.
func natsPubShim(args []string) error {
	if len(args) != 3 || args[0] != "pub" {
		return fmt.Errorf("nats shim: want pub SUBJECT BODY, got %q", args)
	}
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := nc.Publish(args[1], []byte(args[2])); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	fmt.Printf("Published %d bytes to %q\n", len(args[2]), args[1])
	return nil
}

func init() {
	if os.Getenv("JETFLOW_README_NATS_PUB") != "" {
		if err := natsPubShim(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// TestREADME runs every shell block of README.md marked runnable against
// a `jetflow dev` on a free port with NATS_URL set, in a directory where
// bin/jetflow is the binary under test; a command that fails fails the
// test. nats CLI commands run when the CLI is installed (go install
// github.com/nats-io/natscli/nats@v0.5.1).
func TestREADME(t *testing.T) {
	blocks := readmeBlocks(t, "../../README.md")
	if len(blocks) < 5 {
		t.Fatalf("README.md has %d blocks marked %s, want at least 5: a marker was lost", len(blocks), readmeMarker)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "jetflow"), []byte(readmeWrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	url := "nats://" + addr
	env := append(os.Environ(),
		"NATS_URL="+url, "NATS_CONTEXT=", "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, ".config"),
		"JETFLOW_BINARY="+binary, "JETFLOW_TEST_BINARY="+os.Args[0],
	)
	dev := exec.Command(binary, "dev", "--listen", addr, "--data", filepath.Join(dir, ".jetflow"), "--demo", "10", "--log-level", "warn")
	devErr := &syncBuffer{}
	dev.Stderr = devErr
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Process.Kill(); _ = dev.Wait() })
	natstest.Eventually(t, 60*time.Second, func() bool {
		return strings.Contains(devErr.String(), "demo orders published")
	}, "jetflow dev did not start: %s", devErr.String())
	if _, err := exec.LookPath("nats"); err != nil {
		t.Log("the nats CLI is not installed: nats pub is done by the test, other nats commands are skipped")
	}

	for _, b := range blocks {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-c", readmePrelude+b.text)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("README.md:%d: the block fails: %v\n--- block\n%s--- output\n%s", b.line, err, b.text, out)
		}
	}
}

// TestVersionsPinned: the README names go.mod's Go version, and the
// Dockerfile and docker-compose.yml use that Go and the nats-server the
// code is built and tested with.
func TestVersionsPinned(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	gomod := read("go.mod")
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(gomod)
	server := regexp.MustCompile(`(?m)^\s*github.com/nats-io/nats-server/v2 v(\S+)$`).FindStringSubmatch(gomod)
	if goVersion == nil || server == nil {
		t.Fatalf("go.mod names no go version or nats-server")
	}
	if want := "Go " + goVersion[1]; !strings.Contains(read("README.md"), want) {
		t.Errorf("README.md does not say %q (go.mod's)", want)
	}
	if want := "FROM golang:" + goVersion[1] + " "; !strings.Contains(read("Dockerfile"), want) {
		t.Errorf("Dockerfile does not build with %q (go.mod's Go)", want)
	}
	images := regexp.MustCompile(`(?m)^\s*image:\s*(\S+)`).FindAllStringSubmatch(read("docker-compose.yml"), -1)
	if len(images) == 0 {
		t.Fatal("docker-compose.yml runs no image")
	}
	for _, m := range images {
		if name, tag, _ := strings.Cut(m[1], ":"); name == "nats" && tag != server[1] {
			t.Errorf("docker-compose.yml runs %s; go.mod's nats-server is v%s", m[1], server[1])
		}
	}
	if !strings.Contains(read("README.md"), "docker-compose.yml") {
		t.Error("README.md does not mention docker-compose.yml")
	}
}

// TestMakeHelp: `make help` lists the targets with the variables' values,
// not their names.
func TestMakeHelp(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	out, err := exec.Command("make", "--no-print-directory", "-s", "-C", filepath.Join("..", ".."), "help").CombinedOutput()
	if err != nil {
		t.Fatalf("make help: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "$(") || !strings.Contains(string(out), "and 50 demo orders") {
		t.Errorf("make help:\n%s", out)
	}
}
