package test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/streams"
)

// tally counts what its "add" updates add; "total" queries it.
func tally(ctx workflow.Context, _ struct{}) (int, error) {
	total := 0
	if err := workflow.SetUpdateHandler(ctx, "add", func(_ workflow.Context, n int) (int, error) {
		total += n
		return total, nil
	}, nil); err != nil {
		return 0, err
	}
	if err := workflow.SetQueryHandler(ctx, "total", func(struct{}) (int, error) { return total, nil }); err != nil {
		return 0, err
	}
	workflow.ReceiveSignal(ctx, "done")
	return total, nil
}

// TestAuthQueriesAndUpdates: under deploy/nats-server.conf the client role
// queries and updates a workflow and the orchestrator role answers; the
// operator role queries but cannot update (it changes nothing).
func TestAuthQueriesAndUpdates(t *testing.T) {
	s := newAuthStack(t)
	reference := s.workflows
	s.workflows = func(r *workflow.Registry) {
		reference(r)
		workflow.Register(r, "tally", tally)
	}
	s.orchestrator()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := orchestrator.Start(ctx, s.env.JS, "tally", "t-1", struct{}{}, "test"); err != nil {
		t.Fatal(err)
	}
	client, _, _ := s.env.ConnectAs(t, natsauth.Client)
	out, err := orchestrator.Update(ctx, client, "t-1", "add", []byte("4"))
	if err != nil || string(out) != "4" {
		t.Fatalf("client update: %s, %v; want 4", out, err)
	}
	operator, _, v := s.env.ConnectAs(t, natsauth.Operator)
	natstest.Eventually(t, 20*time.Second, func() bool {
		out, err = orchestrator.Query(ctx, operator, "t-1", "total", nil)
		return err == nil
	}, "operator query: %v", err)
	if string(out) != "4" {
		t.Fatalf("operator query: %s; want 4", out)
	}
	short, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	if _, err := orchestrator.Update(short, operator, "t-1", "add", []byte("1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("operator update: %v; want it refused (no answer)", err)
	}
	if !v.Has(streams.UpdateRequestSubject("t-1")) {
		t.Fatalf("operator update not refused by the server: violations %v", v.All())
	}
}
