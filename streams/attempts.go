package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/schema"
)

// LastAttempt returns the note of the last failed attempt of the command
// with idempotencyKey, run by service, from AttemptsBucket: one direct get
// by subject. It returns nil when there is none (no attempt failed, or the
// bucket does not exist).
func (h *History) LastAttempt(ctx context.Context, service, idempotencyKey string) (*schema.FailedAttempt, error) {
	m, err := directLast(ctx, h.nc, "KV_"+AttemptsBucket, "$KV."+AttemptsBucket+"."+AttemptKey(service, idempotencyKey))
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, nil // no bucket (a deployment older than it)
	}
	if err != nil || m == nil {
		return nil, err
	}
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return nil, nil
	}
	var a schema.FailedAttempt
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return nil, fmt.Errorf("attempt of %s: %w", AttemptKey(service, idempotencyKey), err)
	}
	return &a, nil
}
