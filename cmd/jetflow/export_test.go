package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/streams"
)

// TestExportKeepsArchivedHistories: a `jetflow dev` archiving the demo's
// orders a second after they end; export writes each archived workflow
// once, in the order list --archived gives, as show --output json prints
// it from the archive; replay accepts the file; --limit stops with the
// cursor that --cursor goes on from, and the two halves are the whole.
func TestExportKeepsArchivedHistories(t *testing.T) {
	addr := freeAddr(t)
	url := "nats://" + addr
	dev := exec.Command(binary, "dev", "--listen", addr, "--data", t.TempDir(), "--demo", "10", "--retention", "1s", "--log-level", "warn")
	devErr := &syncBuffer{}
	dev.Stderr = devErr
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Process.Kill(); _ = dev.Wait() })

	type page struct {
		Workflows []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"workflows"`
	}
	var listed page
	natstest.Eventually(t, 2*time.Minute, func() bool {
		out, _, code := runStatus(t, nil, "list", "--archived", "--limit", "1000", "--output", "json", "--nats", url)
		return code == 0 && json.Unmarshal([]byte(out), &listed) == nil && len(listed.Workflows) >= 5
	}, "jetflow dev archived fewer than 5 demo orders; its log:\n%s", devErr)
	until := time.Now().UTC().Format(time.RFC3339Nano)
	out, stderr, code := runStatus(t, nil, "list", "--archived", "--until", until, "--limit", "1000", "--output", "json", "--nats", url)
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil {
		t.Fatalf("list --archived --until: exit %d\n%s%s", code, out, stderr)
	}

	all, stderr, code := runStatus(t, nil, "export", "--until", until, "--nats", url)
	if code != 0 {
		t.Fatalf("export: exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	if len(lines) != len(listed.Workflows) {
		t.Fatalf("export wrote %d lines for %d archived workflows:\n%s", len(lines), len(listed.Workflows), stderr)
	}
	for i, line := range lines {
		var d struct {
			ID       string            `json:"id"`
			Status   string            `json:"status"`
			Archived bool              `json:"archived"`
			History  []json.RawMessage `json:"history"`
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("line %d is not one JSON object: %v\n%s", i+1, err, line)
		}
		if w := listed.Workflows[i]; d.ID != w.ID || d.Status != w.Status || !d.Archived || len(d.History) < 4 {
			t.Fatalf("line %d: %s %s archived %v, %d events; list --archived has %s %s", i+1, d.ID, d.Status, d.Archived, len(d.History), w.ID, w.Status)
		}
	}
	if !strings.Contains(stderr, "export: the last archived workflow of the span was written") {
		t.Fatalf("export's stderr:\n%s", stderr)
	}

	// What was exported replays against this build.
	file := filepath.Join(t.TempDir(), "archive.jsonl")
	if err := os.WriteFile(file, []byte(all), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _, code := runStatus(t, nil, "replay", "--history", file); code != 0 || strings.TrimSpace(out) != fmt.Sprintf("ok   %s (%d histories)", file, len(lines)) {
		t.Fatalf("replay of the export: exit %d\n%s", code, out)
	}

	// --limit stops with a cursor; --cursor goes on from it.
	first, stderr, code := runStatus(t, nil, "export", "--until", until, "--limit", "2", "--nats", url)
	m := regexp.MustCompile(`go on with --cursor (\d+)`).FindStringSubmatch(stderr)
	if code != 0 || strings.Count(first, "\n") != 2 || m == nil {
		t.Fatalf("export --limit 2: exit %d, %d lines\n%s", code, strings.Count(first, "\n"), stderr)
	}
	rest, stderr, code := runStatus(t, nil, "export", "--until", until, "--cursor", m[1], "--nats", url)
	if code != 0 || first+rest != all {
		t.Fatalf("export --cursor %s: exit %d; the two halves are not the whole export\n%s", m[1], code, stderr)
	}
}

// TestExportStoppedSaysWhereToGoOn: an export cut short (interrupted, a
// read that failed) names the cursor after the last workflow it wrote,
// writes nothing of a workflow it did not finish, and counts workflows
// and runs apart; a bad record names the cursor that skips it.
func TestExportStoppedSaysWhereToGoOn(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	chain := []*orchestrator.Description{{ID: "loop-7", Run: 1, ArchivedAt: at}, {ID: "loop-7", Run: 2, ArchivedAt: at}}
	lone := []*orchestrator.Description{{ID: "lone-1", ArchivedAt: at}}
	ctx, cancel := context.WithCancel(context.Background())
	var out, progress strings.Builder
	err := export(ctx, &out, &progress, orchestrator.ArchivedQuery{Cursor: 40}, func(emit func([]*orchestrator.Description) error) (uint64, error) {
		if err := emit(chain); err != nil {
			return 40, err
		}
		if err := emit(lone); err != nil {
			return 41, err
		}
		cancel() // Ctrl-C while the next workflow is read
		return 42, emit(lone)
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "go on with --cursor 42") {
		t.Fatalf("interrupted export: %v, want the cursor after lone-1", err)
	}
	if got := strings.Count(out.String(), "\n"); got != 3 || !strings.Contains(progress.String(), "export: 2 workflows (3 runs)") {
		t.Fatalf("interrupted export wrote %d lines; progress:\n%s", got, progress.String())
	}

	out.Reset()
	err = export(context.Background(), &out, &progress, orchestrator.ArchivedQuery{}, func(emit func([]*orchestrator.Description) error) (uint64, error) {
		return 0, &streams.BadRecordError{Seq: 57, Err: errors.New("part 2 of 3 is missing")}
	})
	if err == nil || !strings.Contains(err.Error(), "archive record 57: part 2 of 3 is missing; the same command tries it again, --cursor 57 skips it") || out.Len() != 0 {
		t.Fatalf("bad record: %v, wrote %q", err, out.String())
	}
}
