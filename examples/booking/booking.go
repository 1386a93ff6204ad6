// Package booking is a trip booking saga written against jetflow's public
// API: the workflow reserves a flight and a hotel and charges the card; a
// step that fails for good undoes the ones before it, in reverse order.
package booking

import (
	"context"
	"fmt"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
)

// Type is the workflow type Book is registered under.
const Type = "trip.booking"

// The steps, all served by the "travel" participant.
var (
	ReserveFlight = workflow.Activity{Service: "travel", Action: "reserve_flight"}
	CancelFlight  = workflow.Activity{Service: "travel", Action: "cancel_flight"}
	ReserveHotel  = workflow.Activity{Service: "travel", Action: "reserve_hotel"}
	CancelHotel   = workflow.Activity{Service: "travel", Action: "cancel_hotel"}
	Charge        = workflow.Activity{Service: "travel", Action: "charge"}
)

// Trip is the workflow's input.
type Trip struct {
	ID          string `msgpack:"id" json:"id"`
	Traveller   string `msgpack:"traveller" json:"traveller"`
	AmountCents int64  `msgpack:"amount_cents" json:"amount_cents"`
}

// Itinerary is the workflow's result.
type Itinerary struct {
	Flight string `msgpack:"flight" json:"flight"`
	Hotel  string `msgpack:"hotel" json:"hotel"`
	Charge string `msgpack:"charge" json:"charge"`
}

// Book runs the booking saga.
func Book(ctx workflow.Context, trip Trip) (Itinerary, error) {
	var it Itinerary
	saga := workflow.NewSaga(ctx)
	var err error
	if it.Flight, err = workflow.Execute[string](ctx, ReserveFlight, trip); err != nil {
		return it, saga.Compensate(err)
	}
	saga.AddCompensation(CancelFlight, it.Flight)
	if it.Hotel, err = workflow.Execute[string](ctx, ReserveHotel, trip); err != nil {
		return it, saga.Compensate(err)
	}
	saga.AddCompensation(CancelHotel, it.Hotel)
	if it.Charge, err = workflow.Execute[string](ctx, Charge, trip); err != nil {
		return it, saga.Compensate(err)
	}
	return it, nil
}

// Register adds Book to a registry.
func Register(r *workflow.Registry) { workflow.Register(r, Type, Book) }

// Handlers are the travel participant's handlers. A real one calls the
// airline, the hotel and the card processor, passing cmd.IdempotencyKey so
// a redelivered command does not book twice.
func Handlers() map[string]participants.HandlerFunc {
	ref := func(prefix string) participants.HandlerFunc {
		return func(_ context.Context, cmd *participants.Command) (any, error) {
			var trip Trip
			if err := cmd.Decode(&trip); err != nil {
				return nil, participants.NonRetryable("bad_input", err)
			}
			return fmt.Sprintf("%s-%s", prefix, trip.ID), nil
		}
	}
	undo := func(_ context.Context, cmd *participants.Command) (any, error) { return nil, nil }
	return map[string]participants.HandlerFunc{
		ReserveFlight.Action: ref("FL"),
		CancelFlight.Action:  undo,
		ReserveHotel.Action:  ref("HT"),
		CancelHotel.Action:   undo,
		Charge.Action:        ref("CH"),
	}
}
