package workflow

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jetflow-io/jetflow/schema"
)

// ContinueAsNewError is returned by a workflow function to end its run and
// go on in a new one: same workflow ID, same type, the given input, and a
// history that starts empty. Return it as is (or wrapped); the run ends
// continued-as-new (schema.StatusContinuedAsNew) and stays inspectable.
//
// A workflow that loops for ever (a mutex, a subscription, a poller)
// continues as new every so many iterations, so that neither its history
// nor the cost of replaying it grows without bound.
//
// Signals recorded for the run that its code has not received when it
// returns are dropped with the run, as Temporal drops them: drain them
// first (a Selector with AddReceive and AddDefault, or ReceiveAsync on
// the signal's channel) and pass what matters in the next run's input.
// Updates the run accepted and did not complete are answered with an
// error, as when any workflow ends.
type ContinueAsNewError struct {
	// Input is the next run's input, msgpack-encoded.
	Input schema.Raw
	// Run is the number of the run that ends (1 for the first).
	Run int
}

func (e *ContinueAsNewError) Error() string {
	return "continue as new: run " + strconv.Itoa(e.Run) + " ends, run " + strconv.Itoa(e.Run+1) + " starts"
}

// ContinueAsNew returns the error that ends the run and starts the next
// one with input; the workflow function returns it:
//
//	if n%1000 == 0 {
//		return nil, workflow.ContinueAsNew(ctx, state)
//	}
//
// An input that cannot be encoded is returned as an error, which the
// workflow then fails with.
func ContinueAsNew(ctx Context, input any) error {
	raw, err := schema.EncodeRaw(input)
	if err != nil {
		return fmt.Errorf("continue as new: encode input: %w", err)
	}
	return &ContinueAsNewError{Input: raw, Run: RunNumber(ctx)}
}

// NewContinueAsNewError is ContinueAsNew under the name Temporal's Go SDK
// gives it. The next run has the same workflow type: jetflow does not
// continue into another type.
func NewContinueAsNewError(ctx Context, input any) error { return ContinueAsNew(ctx, input) }

// RunNumber returns the run of the workflow the code is running: 1 for the
// first, and one more after each ContinueAsNew.
func RunNumber(ctx Context) int { return runOf(ctx.co().r.id) }

// runOf is the run number in a history ID: <workflow id>=<run> for a run
// after the first (streams.RunID).
func runOf(hid string) int {
	_, n, found := strings.Cut(hid, "=")
	if !found {
		return 1
	}
	run, err := strconv.Atoi(n)
	if err != nil || run < 2 {
		return 1
	}
	return run
}

// continuedAsNew is the end of a run whose function returned err, when err
// carries a ContinueAsNewError; nil otherwise.
func continuedAsNew(r *replayer, err error) *schema.WorkflowFinished {
	var can *ContinueAsNewError
	if !errors.As(err, &can) {
		return nil
	}
	return &schema.WorkflowFinished{Status: schema.StatusContinuedAsNew, NextRun: runOf(r.id) + 1, NextInput: can.Input}
}
