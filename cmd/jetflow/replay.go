package main

import (
	"context"
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
	fs.Var(&files, "history", "a history saved with `jetflow show ID --output json` (repeatable; - for stdin)")
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
	// Divergence is the first difference between the code and the history.
	Divergence string `json:"divergence,omitempty"`
}

// replayJSON replays each file and prints the results as JSON; it fails
// when one does not replay.
func replayJSON(files []string) error {
	rp := referenceReplayer()
	out := make([]replayResult, 0, len(files))
	failed := 0
	for _, f := range files {
		r := replayResult{File: f, OK: true}
		if err := replayFile(rp, f); err != nil {
			r.OK, r.Divergence = false, err.Error()
			failed++
		}
		out = append(out, r)
	}
	if err := printJSON(out); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d histories do not replay", failed, len(files))
	}
	return nil
}

// replayFiles replays each file and reports on w; it fails when one does
// not replay.
func replayFiles(w io.Writer, files []string) error {
	rp := referenceReplayer()
	failed := 0
	for _, f := range files {
		err := replayFile(rp, f)
		if err != nil {
			failed++
			fmt.Fprintf(w, "FAIL %s: %v\n", f, err)
			continue
		}
		fmt.Fprintf(w, "ok   %s\n", f)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d histories do not replay", failed, len(files))
	}
	return nil
}

func replayFile(rp *workflow.Replayer, name string) error {
	if name == "-" {
		return rp.ReplayHistoryJSON(os.Stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return rp.ReplayHistoryJSON(f)
}

// referenceReplayer replays the workflows this binary registers.
func referenceReplayer() *workflow.Replayer {
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	return workflow.NewReplayer(reg)
}
