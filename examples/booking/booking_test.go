package booking_test

import (
	"context"
	"errors"
	"testing"

	"example.com/jetflow-examples/booking"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
)

// env runs the booking workflow on an embedded server with the travel
// handlers, the ones in fail replaced by a handler that fails for good.
func env(t *testing.T, fail ...workflow.Activity) (*workflowtest.Env, map[string]int) {
	e := workflowtest.New(t)
	booking.Register(e.Registry())
	calls := map[string]int{}
	failing := map[string]bool{}
	for _, a := range fail {
		failing[a.Action] = true
	}
	for action, h := range booking.Handlers() {
		act := workflow.Activity{Service: "travel", Action: action}
		e.Stub(act, func(ctx context.Context, cmd *participants.Command) (any, error) {
			calls[cmd.Action]++
			if failing[cmd.Action] {
				return nil, participants.NonRetryable("sold_out", errors.New("no rooms left"))
			}
			return h(ctx, cmd)
		})
	}
	e.Run()
	return e, calls
}

func TestTripIsBooked(t *testing.T) {
	e, _ := env(t)
	e.Start(booking.Type, "trip-1", booking.Trip{ID: "trip-1", Traveller: "ada", AmountCents: 42000})
	if d := e.Wait("trip-1"); d.Status != schema.StatusCompleted {
		t.Fatalf("trip-1 ended %s (%s), want completed", d.Status, d.Error)
	}
	var it booking.Itinerary
	if err := e.Output("trip-1", &it); err != nil {
		t.Fatal(err)
	}
	if it != (booking.Itinerary{Flight: "FL-trip-1", Hotel: "HT-trip-1", Charge: "CH-trip-1"}) {
		t.Fatalf("itinerary %+v", it)
	}
}

// A hotel that is sold out undoes the flight, and nothing is charged.
func TestSoldOutHotelCancelsTheFlight(t *testing.T) {
	e, calls := env(t, booking.ReserveHotel)
	e.Start(booking.Type, "trip-2", booking.Trip{ID: "trip-2", Traveller: "grace", AmountCents: 42000})
	d := e.Wait("trip-2")
	if d.Status != schema.StatusCompensated {
		t.Fatalf("trip-2 ended %s (%s), want compensated", d.Status, d.Error)
	}
	var steps []string
	for _, h := range d.History {
		if h.Type == string(schema.KindCommand) {
			steps = append(steps, h.Step)
		}
	}
	want := []string{"travel.reserve_flight", "travel.reserve_hotel", "travel.cancel_flight"}
	if len(steps) != len(want) {
		t.Fatalf("commands %v, want %v", steps, want)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Fatalf("commands %v, want %v", steps, want)
		}
	}
	if calls["charge"] != 0 || calls["cancel_hotel"] != 0 {
		t.Fatalf("calls %v: nothing charged, no hotel to cancel", calls)
	}
}
