package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Queries and updates are core NATS request/reply on jetflow.query.<id>
// and jetflow.update.<id> (streams.QuerySubject, UpdateRequestSubject),
// answered by one orchestrator of the queue group streams.QueueGroup. The
// request and the reply are JSON (handlerRequest, handlerReply).

// handlerRequest is the body of a query or update request.
type handlerRequest struct {
	Name string          `json:"name"`
	Arg  json.RawMessage `json:"arg,omitempty"`
	// UpdateID (updates) is chosen by the caller and kept across its
	// retries: the update is recorded once.
	UpdateID string `json:"update_id,omitempty"`
	// WaitMillis (updates) is how long the orchestrator may wait for the
	// handler's result before answering "pending" (then the caller asks
	// again); capped at maxUpdateWait.
	WaitMillis int64 `json:"wait_ms,omitempty"`
}

// handlerReply is the answer: Result, or Error with its Code.
type handlerReply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Code   string          `json:"code,omitempty"`
}

// Error codes of a handlerReply.
const (
	codeBadRequest     = "bad_request"
	codeNotFound       = "not_found"
	codeUnknownHandler = "unknown_handler"
	codeNotReadOnly    = "not_read_only"
	codeRejected       = "rejected"
	codeNotDeciding    = "not_deciding"
	codeFailed         = "failed"
	codeFinished       = "finished"
	codePending        = "pending"
	codeInternal       = "internal"
)

// ErrHandlerFailed: the query handler or update handler returned an error
// (the AnswerError carries its text).
var ErrHandlerFailed = errors.New("handler returned an error")

// ErrWorkflowFinished: an update was sent to a workflow that has finished.
var ErrWorkflowFinished = errors.New("workflow has finished")

// AnswerError is an error answer to a query or an update. It matches, with
// errors.Is, streams.ErrNotFound (no such workflow),
// workflow.ErrUnknownHandler (the message lists the known names),
// workflow.ErrNotReadOnly, workflow.ErrRejected (an update's validator
// refused it), workflow.ErrNotDeciding (the workflow is blocked),
// ErrWorkflowFinished and ErrHandlerFailed.
type AnswerError struct {
	Code    string
	Message string
}

func (e *AnswerError) Error() string { return e.Message }

// Is maps the answer's code to the package sentinels.
func (e *AnswerError) Is(target error) bool {
	switch e.Code {
	case codeNotFound:
		return target == streams.ErrNotFound
	case codeUnknownHandler:
		return target == workflow.ErrUnknownHandler
	case codeNotReadOnly:
		return target == workflow.ErrNotReadOnly
	case codeRejected:
		return target == workflow.ErrRejected
	case codeNotDeciding:
		return target == workflow.ErrNotDeciding
	case codeFailed:
		return target == ErrHandlerFailed
	case codeFinished:
		return target == ErrWorkflowFinished
	}
	return false
}

// errorReply turns an error into its answer.
func errorReply(err error) handlerReply {
	code := codeInternal
	switch {
	case errors.Is(err, streams.ErrNotFound):
		code = codeNotFound
	case errors.Is(err, workflow.ErrUnknownHandler):
		code = codeUnknownHandler
	case errors.Is(err, workflow.ErrNotReadOnly):
		code = codeNotReadOnly
	case errors.Is(err, workflow.ErrRejected):
		code = codeRejected
	case errors.Is(err, workflow.ErrNotDeciding):
		code = codeNotDeciding
	case errors.Is(err, ErrHandlerFailed):
		code = codeFailed
	case errors.Is(err, ErrWorkflowFinished):
		code = codeFinished
	case errors.Is(err, errBadRequest):
		code = codeBadRequest
	}
	return handlerReply{Error: err.Error(), Code: code}
}

var errBadRequest = errors.New("bad request")

// maxHandlerConcurrency bounds the queries and updates one orchestrator
// works on at once; more wait in the subscription.
const maxHandlerConcurrency = 32

// runHandlers answers queries and updates until stop is called.
func (o *Orchestrator) runHandlers(ctx context.Context) (stop func(), err error) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stopped bool
	)
	sem := make(chan struct{}, maxHandlerConcurrency)
	serve := func(fn func(context.Context, *nats.Msg) handlerReply) nats.MsgHandler {
		return func(m *nats.Msg) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			mu.Lock()
			if stopped {
				mu.Unlock()
				<-sem
				return
			}
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer func() { <-sem; wg.Done() }()
				rep := fn(ctx, m)
				if ctx.Err() != nil {
					// This orchestrator is stopping: what failed here is its
					// own end, not an answer. The caller, unanswered, asks
					// again and another orchestrator answers.
					return
				}
				body, _ := json.Marshal(rep)
				if err := m.Respond(body); err != nil {
					o.log.Debug("handler reply", "subject", m.Subject, "err", err)
				}
			}()
		}
	}
	qs, err := o.cfg.NC.QueueSubscribe(streams.QueryPrefix+".*", streams.QueueGroup, serve(o.answerQuery))
	if err != nil {
		return nil, fmt.Errorf("orchestrator: query subscription: %w", err)
	}
	us, err := o.cfg.NC.QueueSubscribe(streams.UpdatePrefix+".*", streams.QueueGroup, serve(o.answerUpdate))
	if err != nil {
		_ = qs.Unsubscribe()
		return nil, fmt.Errorf("orchestrator: update subscription: %w", err)
	}
	return func() {
		_ = qs.Unsubscribe()
		_ = us.Unsubscribe()
		mu.Lock()
		stopped = true
		mu.Unlock()
		wg.Wait()
	}, nil
}

// parseRequest checks a query or update request.
func (o *Orchestrator) parseRequest(m *nats.Msg, prefix string) (id string, req handlerRequest, arg schema.Raw, err error) {
	id = strings.TrimPrefix(m.Subject, prefix+".")
	if err := streams.ValidID(id); err != nil {
		return "", req, nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if len(m.Data) > o.cfg.MaxInputSize {
		return "", req, nil, fmt.Errorf("%w: request of %d bytes: the limit is %d", errBadRequest, len(m.Data), o.cfg.MaxInputSize)
	}
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return "", req, nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if req.Name == "" {
		return "", req, nil, fmt.Errorf("%w: no handler name", errBadRequest)
	}
	arg, err = signalPayload(req.Arg, nil)
	if err != nil {
		return "", req, nil, fmt.Errorf("%w: argument: %v", errBadRequest, err)
	}
	return id, req, arg, nil
}

// replayable reads the whole history of workflow id into a state of its
// own (the decision loops' cache is not touched) and finds its function.
func (o *Orchestrator) replayable(ctx context.Context, id string) (*state, workflow.Func, error) {
	evs, err := o.hist.Read(ctx, id, 0)
	if err != nil {
		return nil, nil, err
	}
	st := &state{id: id}
	st.add(evs)
	if st.start == nil {
		return nil, nil, fmt.Errorf("%w: %s", streams.ErrNotFound, id)
	}
	fn, ok := o.cfg.Registry.Lookup(st.start.Type)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", errUnknownType, st.start.Type)
	}
	return st, fn, nil
}

// answerQuery replays the workflow's history and calls its query handler.
func (o *Orchestrator) answerQuery(ctx context.Context, m *nats.Msg) handlerReply {
	id, req, arg, err := o.parseRequest(m, streams.QueryPrefix)
	if err != nil {
		return errorReply(err)
	}
	if id, err = currentRun(ctx, o.hist, id); err != nil {
		return errorReply(err)
	}
	st, fn, err := o.replayable(ctx, id)
	if err != nil {
		return errorReply(err)
	}
	out, err := workflow.Query(fn, id, st.events, req.Name, arg, o.log)
	failpoint.Hit("orchestrator.query-answered")
	if err != nil {
		if !errors.Is(err, workflow.ErrUnknownHandler) && !errors.Is(err, workflow.ErrNotReadOnly) && !errors.Is(err, workflow.ErrNotDeciding) {
			err = fmt.Errorf("%w: %v", ErrHandlerFailed, err)
		}
		return errorReply(err)
	}
	return handlerReply{Result: schema.RawJSON(out)}
}

// Query asks workflow id's query handler name, with arg (JSON; nil for
// none), and returns its answer as JSON. Any orchestrator answers it by
// replaying the history; nothing is written. It works on a finished
// workflow too. While no orchestrator is subscribed (one is starting or
// restarting) it asks again until ctx ends (30s when ctx has no deadline).
// An error answer is an *AnswerError (see its sentinels).
func Query(ctx context.Context, nc *nats.Conn, id, name string, arg []byte) (json.RawMessage, error) {
	if err := streams.ValidID(id); err != nil {
		return nil, err
	}
	body, err := requestBody(nc, handlerRequest{Name: name, Arg: arg})
	if err != nil {
		return nil, fmt.Errorf("query %s of %s: %w", name, id, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	backoff := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, queryAttempt)
		m, err := nc.RequestWithContext(actx, streams.QuerySubject(id), body)
		cancel()
		if err == nil {
			return parseReply(m.Data)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("query %s of %s: no orchestrator answered: %w", name, id, ctx.Err())
		}
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("query %s of %s: %w", name, id, err)
		}
		// No orchestrator subscribed (yet, or during a restart), or the one
		// asked went away without answering (it was stopping): ask again
		// until ctx ends.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("query %s of %s: no orchestrator answered: %w", name, id, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// queryAttempt bounds one query request: an orchestrator that stops
// while it answers leaves it unanswered, and the caller asks again.
const queryAttempt = 5 * time.Second

// requestBody encodes a request, refusing one the orchestrators would.
func requestBody(nc *nats.Conn, req handlerRequest) ([]byte, error) {
	if req.Name == "" {
		return nil, errors.New("no handler name")
	}
	if len(req.Arg) > 0 && !json.Valid(req.Arg) {
		return nil, fmt.Errorf("argument %q is not JSON", streams.Clip(string(req.Arg), 80))
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if limit := streams.MaxPayload(nc) / 4; len(body) > limit {
		return nil, fmt.Errorf("request of %d bytes: the limit is %d", len(body), limit)
	}
	return body, nil
}

func parseReply(data []byte) (json.RawMessage, error) {
	var rep handlerReply
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	if rep.Code != "" || rep.Error != "" {
		return nil, &AnswerError{Code: rep.Code, Message: rep.Error}
	}
	if len(rep.Result) == 0 {
		return json.RawMessage("null"), nil
	}
	return rep.Result, nil
}
