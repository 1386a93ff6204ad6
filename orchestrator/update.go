package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Update lifecycle (docs/ARCHITECTURE.md, "Queries and updates"):
//
//  1. The caller sends {name, arg, update_id} to jetflow.update.<id>.
//  2. One orchestrator reads the history, replays it and runs the update's
//     validator on the replayed state. Rejected: the caller gets the
//     error, nothing is written.
//  3. Accepted: update.accepted is appended on wf.<id>.update.<update id>,
//     fenced on the last sequence read (a lost fence re-reads and
//     re-validates). The subject holds one message, so the update is
//     recorded once however often the caller retries.
//  4. The accepted event wakes a decision like a signal: replay starts the
//     handler at that point of the history; its return is the decision
//     update.completed on wf.<id>.update.<update id>.done.
//  5. The orchestrator that answered step 2 waits for that subject and
//     replies with the result. If it dies, the caller's retry (same update
//     ID) reaches another orchestrator, which finds the update recorded and
//     waits for the same completion: the answer always comes from the
//     history.

// maxUpdateWait caps how long an orchestrator holds an update request
// before answering "pending" (the caller asks again).
const maxUpdateWait = 30 * time.Second

// defaultUpdateWait is the wait of a request that names none, and the
// wait Update asks for; a request unanswered for it plus updateGrace is
// sent again.
var defaultUpdateWait = 10 * time.Second

// updateGrace is how much longer than its wait Update gives a request
// before it takes the orchestrator for gone and asks again.
var updateGrace = 5 * time.Second

// answerUpdate validates and records an update, then waits for its result.
func (o *Orchestrator) answerUpdate(ctx context.Context, m *nats.Msg) handlerReply {
	id, req, arg, err := o.parseRequest(m, streams.UpdatePrefix)
	if err != nil {
		return errorReply(err)
	}
	if id, err = currentRun(ctx, o.hist, id); err != nil {
		return errorReply(err)
	}
	if err := streams.ValidToken(req.UpdateID); err != nil {
		return errorReply(fmt.Errorf("%w: update id: %v", errBadRequest, err))
	}
	done := streams.UpdateDoneSubject(id, req.UpdateID)
	// Subscribed before the history is read: a completion written after
	// the read is seen here.
	sub, err := o.cfg.NC.SubscribeSync(streams.LiveFilter(done))
	if err != nil {
		return errorReply(fmt.Errorf("subscribe %s: %w", done, err))
	}
	defer func() { _ = sub.Unsubscribe() }()
	completed, err := o.acceptUpdate(ctx, id, req.UpdateID, req.Name, arg)
	if errors.Is(err, errContended) {
		return handlerReply{Code: codePending, Error: err.Error()}
	}
	if err != nil {
		return errorReply(err)
	}
	if completed != nil {
		return completionReply(completed)
	}
	failpoint.Hit("orchestrator.update-accepted")
	if ev, err := o.hist.Last(ctx, done); err != nil {
		return errorReply(err)
	} else if ev != nil {
		if c, ok := ev.Value.(*schema.UpdateCompleted); ok {
			return completionReply(c)
		}
	}
	wait := defaultUpdateWait
	if req.WaitMillis > 0 {
		wait = min(time.Duration(req.WaitMillis)*time.Millisecond, maxUpdateWait)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		cm, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			return handlerReply{Code: codePending, Error: "update " + req.UpdateID + " is accepted and still running"}
		}
		v, err := schema.Decode(cm.Header.Get(schema.HeaderKind), cm.Header.Get(schema.HeaderSchema), cm.Data)
		if c, ok := v.(*schema.UpdateCompleted); err == nil && ok && c.UpdateID == req.UpdateID {
			return completionReply(c)
		}
	}
}

// acceptUpdate records update uid unless it is recorded already. It
// returns the update's completion when the history holds it.
func (o *Orchestrator) acceptUpdate(ctx context.Context, id, uid, name string, arg schema.Raw) (*schema.UpdateCompleted, error) {
	// Updates of one workflow taken here are accepted one at a time;
	// those of other orchestrators and the workflow's own decisions still
	// move the history on, and a lost fence validates again after a
	// random pause that grows with the attempts.
	defer o.accepting.lock(id)()
	for attempt := 0; attempt < maxAcceptRetries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(mrand.Int64N(int64(attempt) * int64(5*time.Millisecond)))):
			}
		}
		st, fn, err := o.replayable(ctx, id)
		if err != nil {
			return nil, err
		}
		accepted := false
		for _, ev := range st.events {
			switch v := ev.Value.(type) {
			case *schema.UpdateAccepted:
				accepted = accepted || v.UpdateID == uid
			case *schema.UpdateCompleted:
				if v.UpdateID == uid {
					return v, nil
				}
			}
		}
		if st.status.Terminal() {
			if accepted {
				return nil, fmt.Errorf("%w: %s ended %s before update %q completed", ErrWorkflowFinished, id, st.status, name)
			}
			return nil, fmt.Errorf("%w: %s ended %s; update %q not recorded", ErrWorkflowFinished, id, st.status, name)
		}
		if accepted {
			return nil, nil // a retry of the caller: recorded once
		}
		if err := workflow.ValidateUpdate(fn, id, st.events, name, arg, o.log); err != nil {
			return nil, err
		}
		msg, err := streams.NewMsg(streams.UpdateSubject(id, uid), &schema.UpdateAccepted{UpdateID: uid, Name: name, Arg: arg})
		if err != nil {
			return nil, err
		}
		msg.Header.Set(jetstream.MsgIDHeader, "update:"+id+":"+uid)
		msg.Header.Set(schema.HeaderWorkflowID, id)
		_, _, err = o.hist.Append(ctx, id, st.lastSeq, []*nats.Msg{msg})
		switch {
		case err == nil, errors.Is(err, streams.ErrSubjectTaken):
			return nil, nil
		case errors.Is(err, streams.ErrFenced):
			continue // something landed since the read: validate again
		}
		// A lost ack: it may have landed.
		if ev, lerr := o.hist.LastFromLeader(ctx, streams.UpdateSubject(id, uid)); lerr == nil && ev != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("record update %q: %w", name, err)
	}
	return nil, fmt.Errorf("%w: record update %q: %w %d times in a row", errContended, name, streams.ErrFenced, maxAcceptRetries)
}

// maxAcceptRetries bounds how often one request validates again after
// losing the fence; then the caller is answered "pending" and asks again.
const maxAcceptRetries = 32

// errContended: the history moved on at every attempt to record an update.
var errContended = errors.New("the workflow's history is busy")

// keyedMutex is a mutex per key, dropped when nobody holds or waits for it.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu    sync.Mutex
	users int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.users++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.users--; e.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

func completionReply(c *schema.UpdateCompleted) handlerReply {
	if c.Error != "" {
		return handlerReply{Code: codeFailed, Error: fmt.Sprintf("update %q: %s", c.Name, c.Error)}
	}
	return handlerReply{Result: schema.RawJSON(c.Output)}
}

// Update sends update name with arg (JSON) to workflow id and waits for
// its handler's result, as JSON. The update is first validated on the
// workflow's replayed state: a rejected one (errors.Is workflow.ErrRejected)
// is not recorded. An accepted one is recorded in the history once, its
// handler runs in the workflow, and the result is read from the history:
// Update asks again (the same update) until ctx ends when no orchestrator
// answers or the one that did goes away, so an orchestrator crash between
// acceptance and completion only delays the answer. A handler error is an
// *AnswerError matching ErrHandlerFailed.
func Update(ctx context.Context, nc *nats.Conn, id, name string, arg []byte) (json.RawMessage, error) {
	if err := streams.ValidID(id); err != nil {
		return nil, err
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return UpdateWithID(ctx, nc, id, hex.EncodeToString(b[:]), name, arg)
}

// UpdateWithID is Update with the caller's update ID ([A-Za-z0-9_-], at most
// 128): the same ID sent again, by this process or another, is the same
// update, recorded and applied once.
func UpdateWithID(ctx context.Context, nc *nats.Conn, id, updateID, name string, arg []byte) (json.RawMessage, error) {
	if err := streams.ValidID(id); err != nil {
		return nil, err
	}
	if err := streams.ValidToken(updateID); err != nil {
		return nil, fmt.Errorf("update id: %w", err)
	}
	wait := defaultUpdateWait
	body, err := requestBody(nc, handlerRequest{Name: name, Arg: arg, UpdateID: updateID, WaitMillis: wait.Milliseconds()})
	if err != nil {
		return nil, fmt.Errorf("update %s of %s: %w", name, id, err)
	}
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, wait+updateGrace)
		m, err := nc.RequestWithContext(actx, streams.UpdateRequestSubject(id), body)
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("update %s of %s (update id %s): %w", name, id, updateID, ctx.Err())
		}
		if err == nil {
			out, rerr := parseReply(m.Data)
			var ae *AnswerError
			if !errors.As(rerr, &ae) || ae.Code != codePending {
				return out, rerr
			}
			continue
		}
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("update %s of %s: %w", name, id, err)
		}
		// No orchestrator, or the one asked went away: ask again.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("update %s of %s (update id %s): %w", name, id, updateID, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
