package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const savedHistories = "../../orchestrator/fulfillment/testdata/histories"

func TestReplayPrintsTheFirstDivergence(t *testing.T) {
	good := filepath.Join(savedHistories, "completed.json")
	body, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// The recorded first step becomes a refund: the code, which charges,
	// no longer matches it.
	bad := filepath.Join(t.TempDir(), "changed.json")
	changed := strings.Replace(string(body), `"action": "charge"`, `"action": "refund"`, 1)
	if err := os.WriteFile(bad, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = replayFiles(&out, []string{good, bad})
	if err == nil || !strings.Contains(err.Error(), "1 of 2 histories do not replay") {
		t.Fatalf("error %v, want one of two failing", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ok   "+good) ||
		!strings.Contains(lines[1], "FAIL "+bad) || !strings.Contains(lines[1], "history has command payment.refund, code issued command payment.charge") {
		t.Fatalf("output:\n%s", out.String())
	}
}

func TestReplayJSON(t *testing.T) {
	good, err := filepath.Abs(filepath.Join(savedHistories, "completed.json"))
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runStatus(t, nil, "replay", "--history", good, "--output", "json")
	var res []replayResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res) != 1 || !res[0].OK || res[0].File != good || res[0].Histories != 1 || len(res[0].Failures) != 0 {
		t.Fatalf("replay --output json: exit %d, %q %s", code, out, stderr)
	}
}

// TestReplayReadsAnExport: a file of histories one a line, as `jetflow
// export` writes them, is replayed history by history; the one that
// diverges is named by its place and workflow, and counted.
func TestReplayReadsAnExport(t *testing.T) {
	var lines []string
	for _, name := range []string{"completed.json", "out-of-stock.json", "completed.json"} {
		body, err := os.ReadFile(filepath.Join(savedHistories, name))
		if err != nil {
			t.Fatal(err)
		}
		var line bytes.Buffer
		if err := json.Compact(&line, body); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line.String())
	}
	lines[2] = strings.Replace(lines[2], `"action":"charge"`, `"action":"refund"`, 1)
	file := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := replayFiles(&out, []string{file})
	if err == nil || err.Error() != "1 of 3 histories do not replay" {
		t.Fatalf("error %v, want one of three failing", err)
	}
	text := out.String()
	if !strings.Contains(text, "FAIL "+file+" #3 ") || !strings.Contains(text, "history has command payment.refund, code issued command payment.charge") ||
		!strings.Contains(text, "FAIL "+file+": 1 of 3 histories do not replay") || strings.Contains(text, "#1 ") || strings.Contains(text, "#2 ") {
		t.Fatalf("output:\n%s", text)
	}
	lines = lines[:2]
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := replayFiles(&out, []string{file}); err != nil || strings.TrimSpace(out.String()) != "ok   "+file+" (2 histories)" {
		t.Fatalf("two good histories: %v\n%s", err, out.String())
	}
}
