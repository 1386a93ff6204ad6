package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/streams"
)

// Helper roles: the test binary re-executed as a process of its own, for
// what the jetflow binary cannot do.
const (
	// roleClockOrchestrator is an orchestrator whose clock runs
	// $JETFLOW_CHAOS_CLOCK_SHIFT ahead, so the reference workflow's 72 h
	// pickup deadlines fire as soon as they are set. The jetflow binary has
	// no clock to move; this is the same orchestrator package with the
	// ManualClock the in-process tests use.
	roleClockOrchestrator = "clock-orchestrator"
	// roleFamilyOrchestrator is an orchestrator that runs the parent and
	// child test workflows of children_test.go, which the jetflow binary
	// does not register.
	roleFamilyOrchestrator = "family-orchestrator"
)

// runRole runs the helper role and returns the process's exit status.
func runRole(role string) int {
	switch role {
	case roleClockOrchestrator:
		if err := runClockOrchestrator(); err != nil {
			fmt.Fprintln(os.Stderr, role+": "+err.Error())
			return 1
		}
		return 0
	case roleSamplesOrchestrator:
		if err := runSamplesOrchestrator(); err != nil {
			fmt.Fprintln(os.Stderr, role+": "+err.Error())
			return 1
		}
		return 0
	case roleFamilyOrchestrator:
		if err := runFamilyOrchestrator(); err != nil {
			fmt.Fprintln(os.Stderr, role+": "+err.Error())
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown %s %q\n", roleEnv, role)
	return 2
}

func runClockOrchestrator() error {
	if err := failpoint.Enable(os.Getenv("JETFLOW_FAILPOINTS")); err != nil {
		return err
	}
	shift, err := time.ParseDuration(os.Getenv("JETFLOW_CHAOS_CLOCK_SHIFT"))
	if err != nil {
		return fmt.Errorf("JETFLOW_CHAOS_CLOCK_SHIFT: %w", err)
	}
	replicas, _ := strconv.Atoi(os.Getenv("JETFLOW_CHAOS_REPLICAS"))
	ctx, nc, js, done, err := chaosConnect("chaos clock orchestrator")
	if err != nil {
		return err
	}
	defer done()
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = streams.Ensure(ectx, js, streams.Topology{Replicas: replicas})
	cancel()
	if err != nil {
		return err
	}
	clock := &orchestrator.ManualClock{}
	clock.Advance(shift)
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{})
	o, err := orchestrator.New(orchestrator.Config{
		NC: nc, JS: js, Registry: reg, Intake: fulfillment.Intake(), LateSignals: fulfillment.LateSignals(), SignalRules: fulfillment.SignalRules(),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		AckWait: ackWait, Clock: clock, TimerSweep: time.Second,
	})
	if err != nil {
		return err
	}
	return o.Run(ctx)
}

// clockOrchestrator starts the clock-shifted orchestrator helper.
func (h *harness) clockOrchestrator(name string, shift time.Duration, fp func(n int) string) *role {
	base := []string{
		roleEnv + "=" + roleClockOrchestrator,
		"JETFLOW_CHAOS_CLOCK_SHIFT=" + shift.String(),
		"JETFLOW_CHAOS_NATS=" + h.url(),
		"JETFLOW_CHAOS_REPLICAS=" + strconv.Itoa(h.replicas),
	}
	return h.selfOrchestrator(name, base, fp)
}

// selfOrchestrator starts this test binary as an orchestrator helper
// process with the environment base, plus the JETFLOW_FAILPOINTS fp
// gives its n-th start.
func (h *harness) selfOrchestrator(name string, base []string, fp func(n int) string) *role {
	exe, err := os.Executable()
	if err != nil {
		h.t.Fatal(err)
	}
	r := h.newRole("orchestrator", name, exe, nil, true)
	fpEnv := failpoints(fp)
	r.env = func(n int) []string {
		out := append([]string(nil), base...)
		if fpEnv != nil {
			out = append(out, fpEnv(n)...)
		}
		return out
	}
	r.start()
	return r
}

// chaosConnect connects an orchestrator helper process to the suite's
// server (JETFLOW_CHAOS_NATS) under name, with a context that ends on
// SIGINT or SIGTERM; done closes both.
func chaosConnect(name string) (context.Context, *nats.Conn, jetstream.JetStream, func(), error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	nc, err := streams.Connect(os.Getenv("JETFLOW_CHAOS_NATS"), name)
	if err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		stop()
		return nil, nil, nil, nil, err
	}
	return ctx, nc, js, func() { nc.Close(); stop() }, nil
}
