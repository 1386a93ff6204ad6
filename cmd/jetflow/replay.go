package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
)

// historyFiles collects repeated --history flags.
type historyFiles []string

func (h *historyFiles) String() string { return strings.Join(*h, ",") }

func (h *historyFiles) Set(v string) error {
	*h = append(*h, v)
	return nil
}

// runReplay replays saved histories against the workflows this binary
// registers and prints the first divergence of each.
func runReplay(_ context.Context, args []string) error {
	var files historyFiles
	var output string
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.Var(&files, "history", "a history saved with `jetflow show ID --output json`, or the histories `jetflow export` wrote, one a line (repeatable; - for stdin)")
	fs.StringVar(&output, "output", "text", "output format: text or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	files = append(files, pos...)
	if len(files) == 0 {
		return errUsage(fs, "want at least one --history FILE")
	}
	switch output {
	case "text":
		return replayFiles(os.Stdout, files)
	case "json":
		return replayJSON(files)
	}
	return fmt.Errorf("--output %q: want text or json", output)
}

// replayResult is one line of `jetflow replay --output json`.
type replayResult struct {
	File string `json:"file"`
	OK   bool   `json:"ok"`
	// Divergence is the first difference between the code and the history
	// (of the file's first history that does not replay).
	Divergence string `json:"divergence,omitempty"`
	// Histories is how many histories the file held (an export holds one
	// per line).
	Histories int `json:"histories"`
	// Failures are the histories that do not replay, in file order.
	Failures []replayFailure `json:"failures,omitempty"`
}

// replayFailure is one history of a file that does not replay.
type replayFailure struct {
	// Index is the history's place in the file, from 1 (its line in an
	// export).
	Index      int    `json:"index"`
	WorkflowID string `json:"workflow_id,omitempty"`
	Divergence string `json:"divergence"`
}

// replayJSON replays each file and prints the results as JSON; it fails
// when one does not replay.
func replayJSON(files []string) error {
	rp := referenceReplayer()
	out := make([]replayResult, 0, len(files))
	for _, f := range files {
		out = append(out, replayFile(rp, f))
	}
	if err := printJSON(out); err != nil {
		return err
	}
	return replayVerdict(out)
}

// replayVerdict is the error of a replay whose results are rs: how many
// histories do not replay, of how many.
func replayVerdict(rs []replayResult) error {
	failed, total := 0, 0
	for _, r := range rs {
		failed, total = failed+len(r.Failures), total+r.Histories
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d histories do not replay", failed, total)
	}
	return nil
}

// replayFiles replays each file and reports on w; it fails when one does
// not replay.
func replayFiles(w io.Writer, files []string) error {
	rp := referenceReplayer()
	rs := make([]replayResult, 0, len(files))
	for _, f := range files {
		r := replayFile(rp, f)
		rs = append(rs, r)
		switch {
		case r.OK && r.Histories == 1:
			fmt.Fprintf(w, "ok   %s\n", f)
		case r.OK:
			fmt.Fprintf(w, "ok   %s (%d histories)\n", f, r.Histories)
		case r.Histories == 1:
			fmt.Fprintf(w, "FAIL %s: %s\n", f, r.Divergence)
		default:
			for _, x := range r.Failures {
				fmt.Fprintf(w, "FAIL %s #%d %s: %s\n", f, x.Index, x.WorkflowID, x.Divergence)
			}
			fmt.Fprintf(w, "FAIL %s: %d of %d histories do not replay\n", f, len(r.Failures), r.Histories)
		}
	}
	return replayVerdict(rs)
}

// replayFile replays every history of file name ("-": stdin): one saved
// with `jetflow show ID --output json`, or the JSON lines of `jetflow
// export`.
func replayFile(rp *workflow.Replayer, name string) replayResult {
	r := replayResult{File: name, OK: true}
	fail := func(id, why string) {
		if r.OK {
			r.OK, r.Divergence = false, why
		}
		r.Failures = append(r.Failures, replayFailure{Index: r.Histories, WorkflowID: id, Divergence: why})
	}
	var in io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			r.Histories = 1
			fail("", err.Error())
			return r
		}
		defer f.Close()
		in = f
	}
	dec := json.NewDecoder(bufio.NewReaderSize(in, 1<<20))
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) && r.Histories > 0 {
			return r
		}
		r.Histories++
		if err != nil {
			fail("", "read history: "+err.Error())
			return r // the rest of the file cannot be told apart
		}
		id, evs, err := workflow.ReadHistoryJSON(bytes.NewReader(raw))
		if err == nil {
			err = rp.ReplayHistory(id, evs)
		}
		if err != nil {
			fail(id, err.Error())
		}
	}
}

// referenceReplayer replays the workflows this binary registers.
func referenceReplayer() *workflow.Replayer {
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	return workflow.NewReplayer(reg)
}
