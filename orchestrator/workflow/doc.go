// Package workflow is the SDK for writing durable workflows as plain Go
// functions. A workflow function takes a Context and one input and returns
// one output and an error:
//
//	func Fulfill(ctx workflow.Context, o Order) (Receipt, error)
//
// Inside it, Execute sends a command to a participant and waits for its
// result. Every command, result and side effect is recorded in the
// workflow's history; after a crash the orchestrator replays the history
// through the same function, recorded steps return their recorded results
// without being sent again, and only the next step is sent.
//
// Go runs workflow coroutines, one at a time in a fixed order; they meet
// through futures (NewFuture), channels (NewChannel, GetSignalChannel) and
// Selectors, whose readiness follows the history, so every replay takes
// the same path.
//
// A workflow that returns an error ends failed (NewApplicationError gives
// the error a kind its caller can branch on), compensated when the error
// came from Saga.Compensate, manual with a ManualError.
//
// SetQueryHandler lets anyone read the workflow's state (`jetflow query`):
// an orchestrator replays the history and calls the handler, writing
// nothing. SetUpdateHandler lets a caller change it and get an answer
// (`jetflow update`): a validator runs on the replayed state, an accepted
// update is recorded in the history and its handler runs at that point,
// like a signal, its return recorded as the caller's answer.
//
// Workflow code must be deterministic: given the same history it must issue
// the same commands in the same order. Use Now, SideEffect and GetVersion
// instead of time.Now, math/rand or flags; do the I/O in participants. A
// replay that diverges from the history parks the workflow as blocked.
//
// A workflow can be cancelled (orchestrator.Cancel, `jetflow cancel`): the
// request is delivered in history order, the Context is cancelled, and
// Execute, Get, Sleep, WaitSignal and Select return ErrCanceled. Undo what
// was done on NewDisconnectedContext (Saga.Compensate does) and return the
// cancellation to end cancelled. WithCancel cancels a group of steps and
// timers from the code.
package workflow
