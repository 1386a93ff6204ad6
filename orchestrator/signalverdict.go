package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// SignalVerdict is what became of a signal: recorded in its workflow's
// history, or refused with the reason of its dead letter.
type SignalVerdict struct {
	// Recorded is true when the signal is in the workflow's history,
	// recorded while the workflow ran.
	Recorded bool
	// HistorySeq is the stream sequence of the history event that records
	// it (wf.<id>.signal.<StreamSeq>), when Recorded.
	HistorySeq uint64
	// Reason is the reason of its dead letter (dlq.signal.<StreamSeq>),
	// when it was refused.
	Reason string
	// StreamSeq is the signal's sequence in the signals stream.
	StreamSeq uint64
}

// ErrNoVerdict means no orchestrator recorded or refused the signal before
// the context ended. The signal stays in the signals stream and is routed
// when an orchestrator runs.
var ErrNoVerdict = errors.New("jetflow: no verdict on the signal yet")

// SendSignal publishes signal name to workflow id, as `nats pub
// signal.<name>.<id> '<json>'` does, and returns its sequence in the
// signals stream once JetStream has stored it. payload is JSON, or nil for
// none.
func SendSignal(ctx context.Context, js jetstream.JetStream, id, name string, payload []byte) (uint64, error) {
	if err := streams.ValidID(id); err != nil {
		return 0, err
	}
	if err := validSignalName(name); err != nil {
		return 0, err
	}
	if payload != nil && !json.Valid(payload) {
		return 0, fmt.Errorf("signal %s payload is not valid JSON: %s", name, streams.Clip(string(payload), 200))
	}
	subject := streams.SignalSubject(name, id)
	ack, err := js.Publish(ctx, subject, payload)
	if reason, full := streams.StreamFull(err); full {
		return 0, fmt.Errorf("publish %s: %s is full (%s): the signal was not stored; send it again once there is room (workflows archived, or a flood purged): %w", subject, streams.SignalsStream, reason, err)
	}
	if err != nil {
		return 0, fmt.Errorf("publish %s: %w", subject, err)
	}
	return ack.Sequence, nil
}

// validSignalName checks that name can be the <name> of
// signal.<name>.<id>: dot-separated tokens without wildcards or spaces.
func validSignalName(name string) error {
	if name == "" {
		return errors.New("signal name is empty")
	}
	for _, tok := range strings.Split(name, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return fmt.Errorf("signal name %q: want dot-separated tokens without spaces, '*' or '>'", name)
		}
	}
	return nil
}

// SignalAndWait sends signal name to workflow id (see SendSignal) and waits
// for its verdict (see WaitSignalVerdict) until ctx ends.
func SignalAndWait(ctx context.Context, js jetstream.JetStream, id, name string, payload []byte) (SignalVerdict, error) {
	seq, err := SendSignal(ctx, js, id, name, payload)
	if err != nil {
		return SignalVerdict{}, err
	}
	return WaitSignalVerdict(ctx, js, id, seq)
}

// WaitSignalVerdict waits until the signal to workflow id stored at seq in
// the signals stream is recorded or refused, and returns which. The
// orchestrator records it on wf.<id>.signal.<seq> or dead-letters it on
// dlq.signal.<seq>, so each check is a direct get by subject: two reads,
// whatever the streams hold. A signal recorded after its workflow ended
// (and so never received) is refused too: its verdict is its dead letter.
// When ctx ends first, it returns ErrNoVerdict with the sequence.
//
// Only subject-addressed direct gets are used, so a role allowed
// $JS.API.DIRECT.GET.JETFLOW_HISTORY.wf.*.signal.*, .wf.*.done.* and
// $JS.API.DIRECT.GET.JETFLOW_DLQ.dlq.signal.* can wait for its verdicts.
// They are read in the workflow's history stream: in a process that has
// not called streams.Ensure or streams.Discover, learn a partitioned
// history's layout first (streams.DiscoverByNames for a role that may
// not read a stream's information, as `jetflow signal` does).
func WaitSignalVerdict(ctx context.Context, js jetstream.JetStream, id string, seq uint64) (SignalVerdict, error) {
	v := SignalVerdict{StreamSeq: seq}
	nc := js.Conn()
	noVerdict := func() error {
		return fmt.Errorf("signal #%d to %s: %w (%v): is an orchestrator running?", seq, id, ErrNoVerdict, context.Cause(ctx))
	}
	pause := 5 * time.Millisecond
	// hid is the run the signal is looked for in: the first, then the
	// next while the one looked at ended continued-as-new (the router
	// records a signal in the current run).
	hid := id
	for {
		dl, err := streams.LastBySubject(ctx, nc, streams.DeadLetterStream, streams.SignalDeadLetterSubject(seq))
		if err != nil {
			if ctx.Err() != nil {
				return v, noVerdict()
			}
			return v, err
		}
		if dl != nil {
			v.Reason = dl.Header.Get(schema.HeaderReason)
			return v, nil
		}
		ev, err := streams.LastBySubject(ctx, nc, streams.HistoryStreamOf(hid), streams.SignalEventSubject(hid, seq))
		if err != nil {
			if ctx.Err() != nil {
				return v, noVerdict()
			}
			return v, err
		}
		if ev != nil {
			hseq, err := strconv.ParseUint(ev.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil {
				return v, fmt.Errorf("signal #%d: bad sequence header %q", seq, ev.Header.Get(jetstream.SequenceHeader))
			}
			done, err := streams.LastBySubject(ctx, nc, streams.HistoryStreamOf(hid), streams.DoneFilterOf(hid))
			if err != nil {
				if ctx.Err() != nil {
					return v, noVerdict()
				}
				return v, err
			}
			var dseq uint64
			if done != nil {
				dseq, _ = strconv.ParseUint(done.Header.Get(jetstream.SequenceHeader), 10, 64)
			}
			if done == nil || dseq > hseq {
				v.Recorded, v.HistorySeq = true, hseq
				return v, nil
			}
			// Recorded after the end: routed late and dead-lettered next,
			// or, after a continue-as-new, routed to the next run.
		}
		if next, err := nextRun(ctx, nc, hid); err != nil {
			if ctx.Err() != nil {
				return v, noVerdict()
			}
			return v, err
		} else if next != "" {
			hid = next
			continue
		}
		select {
		case <-ctx.Done():
			return v, noVerdict()
		case <-time.After(pause):
		}
		pause = min(pause*2, 200*time.Millisecond)
	}
}
