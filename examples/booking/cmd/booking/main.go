// Command booking runs the booking workflow and its travel participant
// against a NATS server and books one trip: how a module of your own wires
// jetflow into its binary.
//
//	NATS_URL=nats://127.0.0.1:4222 go run ./booking/cmd/booking [TRIP_ID]
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"example.com/jetflow-examples/booking"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/streams"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "booking:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	url := os.Getenv("NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	id := "trip-" + time.Now().Format("150405")
	if len(os.Args) > 1 {
		id = os.Args[1]
	}
	nc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := streams.Ensure(ctx, js, streams.Topology{}); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	reg := workflow.NewRegistry()
	booking.Register(reg)
	o, err := orchestrator.New(orchestrator.Config{NC: nc, JS: js, Registry: reg, Logger: log})
	if err != nil {
		return err
	}
	handlers := map[string]participants.Handler{}
	for action, h := range booking.Handlers() {
		handlers[action] = h
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- o.Run(ctx) }()
	go func() {
		errs <- participants.Run(ctx, participants.Config{NC: nc, JS: js, Logger: log}, participants.Service{Name: "travel", Handlers: handlers})
	}()

	trip := booking.Trip{ID: id, Traveller: "ada", AmountCents: 42000}
	if _, err := orchestrator.Start(ctx, js, booking.Type, id, trip, "example"); err != nil {
		return err
	}
	fmt.Printf("started %s; waiting for it to end\n", id)
	h := streams.NewHistory(nc, js)
	for {
		d, err := orchestrator.Describe(ctx, h, id)
		if err == nil && d.Status.Terminal() {
			fmt.Printf("%s ended %s\n", id, d.Status)
			return nil
		}
		select {
		case err := <-errs:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
