package main

import (
	"context"
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
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.Var(&files, "history", "a history saved with `jetflow show ID --output json` (repeatable; - for stdin)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	files = append(files, pos...)
	if len(files) == 0 {
		return errors.New("usage: jetflow replay --history FILE [--history FILE ...]")
	}
	return replayFiles(os.Stdout, files)
}

// replayFiles replays each file and reports on w; it fails when one does
// not replay.
func replayFiles(w io.Writer, files []string) error {
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	rp := workflow.NewReplayer(reg)
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
