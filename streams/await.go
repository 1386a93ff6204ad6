package streams

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Transient reports whether err is what a call returns while its NATS
// server is away (not reachable, restarting, without a JetStream leader
// yet): the same call may succeed later unchanged. A refusal (permission,
// bad configuration, a stream that does not exist) is not transient.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	for _, t := range []error{
		context.DeadlineExceeded, nats.ErrTimeout, nats.ErrNoResponders,
		nats.ErrDisconnected, nats.ErrConnectionReconnecting, nats.ErrNoServers,
		nats.ErrConnectionDraining, jetstream.ErrNoHeartbeat,
		jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount,
	} {
		if errors.Is(err, t) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 503 and 10008: JetStream unavailable / temporarily unavailable
		// (no meta leader, a stream without a leader yet).
		return apiErr.Code == 503 || apiErr.ErrorCode == 10008
	}
	return false
}

// Await calls fn until it returns nil or an error that is not Transient,
// or ctx ends (then it returns nil when fn never succeeded: a stop during
// start-up is a stop). Between calls it waits with a backoff from 250ms to
// 10s. It logs one line when it starts waiting for the server and one when
// fn succeeds after waiting, not one per try.
func Await(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	return await(ctx, log, what, fn, Transient)
}

// missing reports whether err says a stream or bucket does not exist.
func missing(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

// AwaitTopology is Await that also waits while a stream or bucket fn needs
// does not exist yet: a participant started before any orchestrator
// created the topology waits for it (and says so once) instead of
// failing.
func AwaitTopology(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	return await(ctx, log, what, fn, func(err error) bool { return Transient(err) || missing(err) })
}

func await(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error, transient func(error) bool) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pause := 250 * time.Millisecond
	waiting := false
	for {
		err := fn(ctx)
		switch {
		case err == nil:
			if waiting {
				log.Info("NATS is back: "+what+" done", "what", what)
			}
			return nil
		case ctx.Err() != nil:
			return nil
		case !transient(err):
			return err
		}
		if !waiting {
			waiting = true
			log.Warn("waiting for NATS: "+what+" failed, retrying until it succeeds", "what", what, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
	}
}
