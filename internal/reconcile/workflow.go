package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// WorkflowType is the registered name of the reconciliation workflow: its
// input is Params, its output the Report with what each fix did.
const WorkflowType = "payment.reconcile"

// ServiceName is the participant service that scans (Service).
const ServiceName = "reconcile"

// ReportQuery is the query that returns a reconciliation's Report as it
// stands, also once it ended (jetflow query ID report).
const ReportQuery = "report"

// ScanActivity is the scan step: Params in, Report out.
var ScanActivity = workflow.Activity{Service: ServiceName, Action: "scan"}

// Params is the input of a reconciliation.
type Params struct {
	Options
	// Fix refunds the fixable findings; without it the run only reports.
	Fix bool `msgpack:"fix,omitempty" json:"fix,omitempty"`
}

// Config tunes the workflow.
type Config struct {
	// Scan are the options of the scan step. Default: 5 minutes per
	// attempt, 5 attempts.
	Scan workflow.StepOptions
	// Refund are the options of each refund. Default: those of a
	// compensation (fulfillment.DefaultCompensation has the same: 8
	// attempts over about 35s); a refund that still fails puts the run in
	// the manual queue.
	Refund workflow.StepOptions
}

var defaultScan = workflow.StepOptions{
	StartToClose: 5 * time.Minute,
	Retry: workflow.RetryPolicy{
		InitialInterval: time.Second, BackoffCoefficient: 2, MaxInterval: 30 * time.Second, MaxAttempts: 5,
	},
}

var defaultRefund = workflow.StepOptions{
	StartToClose: 10 * time.Second,
	Retry: workflow.RetryPolicy{
		InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaxInterval: 10 * time.Second, MaxAttempts: 8,
	},
}

// fixBatch is how many refunds a run has in flight at once.
const fixBatch = 32

// Register adds the reconciliation workflow to reg.
func Register(reg *workflow.Registry, cfg Config) {
	cfg.Scan = defaultScan.Merge(cfg.Scan)
	cfg.Refund = defaultRefund.Merge(cfg.Refund)
	workflow.Register(reg, WorkflowType, cfg.run)
}

// run scans, then refunds each fixable finding through the payment
// participant. A refund that fails for good is marked and the run ends
// in the manual queue once the others are done, naming the orders; the
// next run tries them again (the refund is keyed on the charge, so
// whichever attempt reaches the gateway first refunds it, once).
func (c Config) run(ctx workflow.Context, p Params) (Report, error) {
	var rep Report
	if err := workflow.SetQueryHandler(ctx, ReportQuery, func(struct{}) (Report, error) { return rep, nil }); err != nil {
		return rep, err
	}
	rep, err := workflow.Execute[Report](ctx, ScanActivity.WithOptions(c.Scan), p)
	if err != nil {
		return rep, err
	}
	if !p.Fix {
		return rep, nil
	}
	var failed []string
	for start := 0; start < len(rep.Findings); start += fixBatch {
		end := min(start+fixBatch, len(rep.Findings))
		futures := map[int]workflow.Future[payment.RefundResult]{}
		for i := start; i < end; i++ {
			if f := rep.Findings[i]; f.Fixable {
				futures[i] = workflow.ExecuteAsync[payment.RefundResult](ctx, payment.Refund.WithOptions(c.Refund), payment.RefundRequest{
					OrderID: f.OrderID, ChargeID: f.ChargeID, AmountCents: f.AmountCents, Currency: f.Currency,
				})
			}
		}
		for i := start; i < end; i++ {
			fut, ok := futures[i]
			if !ok {
				continue
			}
			res, err := fut.Get(ctx)
			if err != nil {
				rep.Findings[i].Action = "manual: refund failed: " + err.Error()
				failed = append(failed, rep.Findings[i].OrderID)
				continue
			}
			rep.Findings[i].Action = "refunded " + res.RefundID
		}
	}
	if len(failed) > 0 {
		return rep, &workflow.ManualError{Reason: fmt.Sprintf("%d refund(s) failed: orders %s", len(failed), clipList(failed, 10))}
	}
	return rep, nil
}

func clipList(ids []string, n int) string {
	if len(ids) <= n {
		return strings.Join(ids, ", ")
	}
	return strings.Join(ids[:n], ", ") + fmt.Sprintf(" and %d more", len(ids)-n)
}

// Service is the participant service of the scan step, on js (which must
// read the payment ledger and the history stream). The scan is as of the
// time the step runs.
func Service(js jetstream.JetStream) participants.Service {
	return participants.Service{
		Name: ServiceName,
		Handlers: map[string]participants.Handler{
			ScanActivity.Action: participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
				var p Params
				if err := cmd.Decode(&p); err != nil {
					return nil, participants.NonRetryable("bad_request", err)
				}
				if err := p.Validate(); err != nil {
					return nil, participants.NonRetryable("bad_request", err)
				}
				rep, err := Scan(ctx, js, p.Options, time.Now())
				if err != nil {
					return nil, err
				}
				rep.Truncate(MaxReported)
				return rep, nil
			}),
		},
	}
}

// StartFix starts a reconciliation that fixes what it finds, now, as the
// workflow id (derived from kind and the time to the second, so a
// repeated command in the same second starts one). It returns the ID.
func StartFix(ctx context.Context, js jetstream.JetStream, p Params, kind string, now time.Time) (string, error) {
	id := streams.DerivedID("reconcile", kind, now.UTC().Format("20060102T150405Z"))
	if _, err := orchestrator.StartDerived(ctx, js, WorkflowType, id, p, "reconcile:"+kind); err != nil {
		return "", fmt.Errorf("reconcile: start %s: %w", id, err)
	}
	return id, nil
}

// Await waits until reconciliation id ended and returns its report and
// end: its status and, unless it completed, why. The report comes from
// the recorded output, or from the report query when the run did not
// complete (an orchestrator answers it).
func Await(ctx context.Context, js jetstream.JetStream, id string) (Report, *schema.WorkflowFinished, error) {
	h := streams.NewHistory(js.Conn(), js)
	for {
		fin, err := finished(ctx, h, id)
		if err != nil {
			return Report{}, nil, err
		}
		if fin != nil {
			var rep Report
			if fin.Status == schema.StatusCompleted {
				err = schema.DecodeRaw(fin.Output, &rep)
			} else {
				var raw json.RawMessage
				if raw, err = orchestrator.Query(ctx, js.Conn(), id, ReportQuery, nil); err == nil {
					err = json.Unmarshal(raw, &rep)
				}
			}
			if err != nil {
				return Report{}, fin, fmt.Errorf("reconcile: report of %s: %w", id, err)
			}
			return rep, fin, nil
		}
		select {
		case <-ctx.Done():
			return Report{}, nil, fmt.Errorf("reconcile: %s did not end (is an orchestrator running with the reconcile service?): %w", id, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// finished returns the end of workflow id's latest run, nil while it runs.
func finished(ctx context.Context, h *streams.History, id string) (*schema.WorkflowFinished, error) {
	evs, err := h.Read(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	var fin *schema.WorkflowFinished
	var retried bool
	for _, ev := range evs {
		switch v := ev.Value.(type) {
		case *schema.WorkflowFinished:
			fin, retried = v, false
		case *schema.OperatorRequest:
			if v.Verb == schema.VerbRetry {
				retried = true
			}
		}
	}
	if retried {
		return nil, nil
	}
	return fin, nil
}
