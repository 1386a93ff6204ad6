package orchestrator

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// StartDerived is Start for an ID in the engine's own namespace
// (streams.DerivedID): the built-in workflows, such as a schedule's runs,
// start their successors and targets with it. Starting is idempotent as
// with Start: a second start of the same ID reports started=false, so a
// derivation from a time slot or a key starts its workflow once however
// often it is retried. An ID outside the reserved namespace is refused.
func StartDerived(ctx context.Context, js jetstream.JetStream, wfType, id string, input any, source string) (started bool, err error) {
	if !strings.HasPrefix(id, streams.ReservedIDPrefix) {
		return false, fmt.Errorf("workflow id %q: a derived id starts with %q", id, streams.ReservedIDPrefix)
	}
	return start(ctx, js, wfType, id, input, source)
}
