package workflowtest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
)

// The Temporal samples the SDK's concurrency, retry and heartbeat features
// are for, ported as a user would, each asserting the sample's documented
// behaviour on a real embedded server.

var processChunk = workflow.Activity{Service: "chunks", Action: "process"}

// SplitMerge (Temporal's splitmerge-selector): process chunks in parallel
// and merge each result as it arrives, once.
func SplitMerge(ctx workflow.Context, chunks int) ([]int, error) {
	sel := workflow.NewSelector(ctx)
	total, merged := 0, 0
	var errs []error
	for i := 1; i <= chunks; i++ {
		f := workflow.ExecuteAsync[int](ctx, processChunk, i)
		sel.AddFuture(f, func() {
			v, err := f.Get(ctx)
			errs = append(errs, err)
			total += v
			merged++
		})
	}
	for i := 0; i < chunks; i++ {
		sel.Select(ctx)
	}
	return []int{total, merged}, errors.Join(errs...)
}

func TestSampleSplitMergeSelector(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "splitmerge", SplitMerge)
	env.Stub(processChunk, func(ctx context.Context, cmd *participants.Command) (any, error) {
		var n int
		_ = cmd.Decode(&n)
		return n * 10, nil
	})
	env.Run()
	env.Start("splitmerge", "sm-1", 5)
	env.Wait("sm-1")
	var out []int
	if err := env.Output("sm-1", &out); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out) != "[150 5]" {
		t.Fatalf("total and merges %v, want [150 5]: each chunk merged exactly once", out)
	}
}

var copyFiles = workflow.Activity{Service: "batch", Action: "copy"}

// RetryActivity (Temporal's retryactivity): a long task heartbeats its
// progress; when an attempt fails, the next resumes from the last
// heartbeat instead of starting over.
func RetryActivity(ctx workflow.Context, files int) (string, error) {
	act := copyFiles.WithOptions(workflow.StepOptions{
		HeartbeatTimeout: 10 * time.Second,
		Retry:            workflow.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxAttempts: workflow.Unlimited},
		ScheduleToClose:  time.Minute,
	})
	return workflow.Execute[string](ctx, act, files)
}

func TestSampleRetryActivityResumesFromHeartbeat(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "retryactivity", RetryActivity)
	var mu sync.Mutex
	copied := map[int]int{} // file -> times copied
	env.Stub(copyFiles, func(ctx context.Context, cmd *participants.Command) (any, error) {
		var files, from int
		_ = cmd.Decode(&files)
		_ = cmd.HeartbeatDetails(&from) // zero on the first attempt
		for i := from; i < files; i++ {
			if i == 2*cmd.Attempt+1 && cmd.Attempt < 3 {
				return nil, participants.Retryable("disk_busy", fmt.Errorf("file %d", i))
			}
			mu.Lock()
			copied[i]++
			mu.Unlock()
			if err := cmd.Heartbeat(ctx, i+1); err != nil {
				return nil, err
			}
		}
		return fmt.Sprintf("%d files in %d attempts, resumed at %d", files, cmd.Attempt, from), nil
	})
	env.Run()
	env.Start("retryactivity", "ra-1", 10)
	env.Wait("ra-1")
	var out string
	if err := env.Output("ra-1", &out); err != nil {
		t.Fatal(err)
	}
	if out != "10 files in 3 attempts, resumed at 5" {
		t.Fatalf("output %q", out)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < 10; i++ {
		if copied[i] != 1 {
			t.Fatalf("copies per file %v: want each file copied once", copied)
		}
	}
}

// Collect gathers "item" signals through a signal channel until a "done"
// signal, while a coroutine counts them on a workflow channel.
func Collect(ctx workflow.Context, _ int) ([]string, error) {
	items := workflow.GetSignalChannel[string](ctx, "item")
	done := workflow.GetSignalChannel[struct{}](ctx, "done")
	counted := workflow.NewBufferedChannel[string](ctx, 10)
	total, setTotal := workflow.NewFuture[int](ctx)
	workflow.Go(ctx, func(ctx workflow.Context) {
		n := 0
		for {
			if _, more := counted.Receive(ctx); !more {
				setTotal.SetValue(n)
				return
			}
			n++
		}
	})
	var got []string
	finished := false
	sel := workflow.NewSelector(ctx).
		AddReceive(items, func() {
			v, _, _ := items.ReceiveAsync()
			got = append(got, v)
			counted.Send(ctx, v)
		}).
		AddReceive(done, func() {
			_, _, _ = done.ReceiveAsync()
			finished = true
		})
	for !finished {
		sel.Select(ctx)
	}
	counted.Close()
	n, err := total.Get(ctx)
	return append(got, fmt.Sprint(n)), err
}

func TestSampleSignalChannels(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "collect", Collect)
	env.Run()
	env.Start("collect", "c-1", 0)
	env.WaitFor("c-1", func(d *orchestrator.Description) bool { return len(d.History) > 0 })
	for _, v := range []string{"a", "b", "c"} {
		env.Signal("c-1", "item", v)
	}
	// Every item is recorded before "done" is sent.
	env.WaitFor("c-1", func(d *orchestrator.Description) bool {
		n := 0
		for _, e := range d.History {
			if e.Type == "signal" {
				n++
			}
		}
		return n == 3
	})
	env.Signal("c-1", "done", nil)
	env.Wait("c-1")
	var out []string
	if err := env.Output("c-1", &out); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out) != "[a b c 3]" {
		t.Fatalf("output %v, want the items in order and their count", out)
	}
}
