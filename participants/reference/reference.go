// Package reference wires the four reference participants to their
// simulated external systems, for `jetflow dev`, `jetflow participant` and
// the end-to-end tests.
package reference

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/participants/notification"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/shipping"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/streams"
)

// Names lists the reference participants.
var Names = []string{"payment", "inventory", "shipping", "notification"}

// Option changes how Service wires a participant.
type Option func(*sim.System)

// CallbackAttempts bounds the deliveries in which the simulated system
// sends a due callback's signal before giving it up (sim.System.CallbackAttempts).
func CallbackAttempts(n int) Option {
	return func(s *sim.System) { s.CallbackAttempts(n) }
}

// CallbacksVia sends the simulated system's callbacks (the gateway's
// payment.settled, the carrier's carrier.picked_up) through js, the
// calling party's own connection.
func CallbacksVia(js jetstream.JetStream) Option {
	return func(s *sim.System) { s.CallbacksVia(js) }
}

// Service opens the simulated system of participant name and returns the
// service that serves its commands.
func Service(ctx context.Context, js jetstream.JetStream, topo streams.Topology, name string, f sim.Faults, opts ...Option) (participants.Service, error) {
	build := map[string]func(*sim.System, sim.Faults) participants.Service{
		"payment":      payment.Service,
		"inventory":    inventory.Service,
		"shipping":     shipping.Service,
		"notification": notification.Service,
	}[name]
	if build == nil {
		return participants.Service{}, fmt.Errorf("unknown participant %q (known: payment, inventory, shipping, notification)", name)
	}
	sys, err := sim.Open(ctx, js, name, topo)
	if err != nil {
		return participants.Service{}, err
	}
	for _, o := range opts {
		o(sys)
	}
	return build(sys, f), nil
}
