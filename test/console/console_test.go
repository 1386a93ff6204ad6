// Package console_test drives the web console in a real headless Chromium
// against a real deployment: an embedded nats-server, the orchestrator with
// the reference workflow and the four reference participants. One browser
// serves every test of the package.
//
// The browser is Debian's chromium (apt-get install chromium); a missing
// browser fails the tests, it never skips them. JETFLOW_CHROMIUM names
// another binary. JETFLOW_SCREENSHOTS=DIR writes the README's screenshots.
package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jetflow-io/jetflow/internal/console"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/payment"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// browser is the package's one headless Chromium, started by the first
// test that needs it and closed by TestMain.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	stopDeployment()
	os.Exit(code)
}

// tab opens a new tab of the shared browser, closed at the end of the test.
func tab(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.NoSandbox, chromedp.WindowSize(1280, 900))
		if p := os.Getenv("JETFLOW_CHROMIUM"); p != "" {
			opts = append(opts, chromedp.ExecPath(p))
		}
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		browser.ctx = bctx
		browser.cancel = func() { bcancel(); acancel() }
		browser.err = chromedp.Do(bctx) // starts the browser
	})
	if browser.err != nil {
		t.Fatalf("start headless Chromium (Debian: apt-get install chromium; or set JETFLOW_CHROMIUM): %v", browser.err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelT)
	return ctx
}

// do runs browser steps and fails the test on error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// run runs one browser action that returns a value.
func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// fast keeps the reference workflow's retries short.
var fast = workflow.StepOptions{
	StartToClose: 2 * time.Second,
	Retry:        workflow.RetryPolicy{InitialInterval: 10 * time.Millisecond, BackoffCoefficient: 2, MaxInterval: 50 * time.Millisecond, MaxAttempts: 3},
}

// demo is a deployment after a mixed demo run, with the console on URL.
type demo struct {
	env *natstest.Env
	URL string
	// ids holds one workflow per outcome: completed, compensated (the
	// shipping was rejected: release and refund), manual, running (waits
	// for carrier.picked_up), blocked (a workflow type no orchestrator has).
	ids map[string]string
	all []string
}

var (
	demoOnce sync.Once
	shared   *demo
)

// runDemo starts the deployment and the console, publishes the mixed demo
// orders and waits until each has the status it must have. It runs once
// per package run; the deployment outlives the test that started it.
func runDemo(t *testing.T) *demo {
	t.Helper()
	demoOnce.Do(func() { shared = startDemo(t) })
	if shared == nil {
		t.Fatal("the demo deployment failed to start (see the first test)")
	}
	return shared
}

func startDemo(t *testing.T) *demo {
	// The deployment lives for the whole package run: its resources are
	// released when the process exits.
	ft := &packageTB{TB: t}
	env := natstest.RunJetStream(ft)
	ctx, cancel := context.WithCancel(context.Background())
	cleanups = append(cleanups, func() { cancel() })
	log := slog.New(slog.DiscardHandler)

	reg := workflow.NewRegistry()
	fulfillment.Register(reg, fulfillment.Config{Steps: fast, Compensation: fast})
	o, err := orchestrator.New(orchestrator.Config{
		NC: env.NC, JS: env.JS, Registry: reg, Intake: fulfillment.Intake(),
		LateSignals: fulfillment.LateSignals(), SignalRules: fulfillment.SignalRules(),
		Logger: log, AckWait: 2 * time.Second, TimerSweep: time.Second,
		MaxDeliver: orchestrator.MaxDeliver{Decisions: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = o.Run(ctx) }()
	// The payment gateway refuses the retry order's refunds until
	// TestConsoleRetryManualOrder clears the fault.
	refundDown.Store(true)
	for _, name := range reference.Names {
		nc, js := natstest.Connect(ft, env.Server)
		svc, err := reference.Service(ctx, js, streams.Topology{}, name, sim.Faults{})
		if err != nil {
			t.Fatal(err)
		}
		if name == "payment" {
			refund := svc.Handlers[payment.Refund.Action]
			svc.Handlers[payment.Refund.Action] = participants.HandlerFunc(func(ctx context.Context, cmd *participants.Command) (any, error) {
				if strings.HasPrefix(cmd.WorkflowID, "retry-") && refundDown.Load() {
					return nil, participants.Retryable("gateway_error", errors.New("gateway down"))
				}
				return refund.Handle(ctx, cmd)
			})
		}
		go func() {
			_ = participants.Run(ctx, participants.Config{NC: nc, JS: js, Logger: log, AckWait: 2 * time.Second}, svc)
		}()
	}

	h, err := console.New(console.Config{Backend: console.NewNATSBackend(env.NC, env.JS)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	cleanups = append(cleanups, srv.Close)
	d := &demo{env: env, URL: srv.URL, ids: map[string]string{}}

	// The mixed demo: the first ten orders of `jetflow dev --demo`, the
	// 63rd (refund always fails: manual), one order the carrier never
	// picks up, a workflow of an unknown type, and an order that is not
	// JSON (a dead letter).
	publish := func(o fulfillment.Order) {
		body, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS.Publish(ctx, streams.OrderCreated, body); err != nil {
			t.Fatal(err)
		}
		d.all = append(d.all, o.OrderID)
	}
	want := map[string]schema.Status{}
	for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 63} {
		o, st := fulfillment.MixedOrder("demo-", i)
		publish(o)
		want[o.OrderID] = st
	}
	// One order of each outcome of the mix, the first one published; a
	// compensated one whose shipping was rejected (release, then refund).
	for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 63} {
		o, st := fulfillment.MixedOrder("demo-", i)
		if st == schema.StatusCompensated && o.Simulate["shipping"] != "fail" {
			continue
		}
		if _, ok := d.ids[string(st)]; !ok {
			d.ids[string(st)] = o.OrderID
		}
	}
	for _, st := range []string{"completed", "compensated", "manual"} {
		if d.ids[st] == "" {
			t.Fatalf("the demo orders hold no %s order with a rejected shipment: %v", st, d.ids)
		}
	}
	waiting, _ := fulfillment.MixedOrder("waiting-", 1)
	waiting.Simulate = map[string]string{"pickup": "never"}
	publish(waiting)
	d.ids["running"] = waiting.OrderID
	// A manual order: shipping rejected, then its refund fails past its
	// attempts (refundDown). Retried from its page once the fault has
	// cleared, it ends compensated (issue 10's retry case).
	retry, _ := fulfillment.MixedOrder("retry-", 1)
	retry.Simulate = map[string]string{"shipping": "fail"}
	publish(retry)
	d.ids["retry"] = retry.OrderID
	want[retry.OrderID] = schema.StatusManual
	if _, err := orchestrator.Start(ctx, env.JS, "teleport.order", "blocked-1", map[string]string{"to": "mars"}, "test"); err != nil {
		t.Fatal(err)
	}
	d.ids["blocked"] = "blocked-1"
	d.all = append(d.all, "blocked-1")
	if _, err := env.JS.Publish(ctx, streams.OrderCreated, []byte("this is not an order")); err != nil {
		t.Fatal(err)
	}

	want[d.ids["running"]] = schema.StatusRunning
	want[d.ids["blocked"]] = schema.StatusBlocked
	var got map[string]schema.Status
	natstest.Eventually(t, 2*time.Minute, func() bool {
		list, err := orchestrator.List(ctx, env.JS, "")
		if err != nil {
			return false
		}
		got = map[string]schema.Status{}
		for _, w := range list {
			got[w.ID] = w.Status
		}
		for id, st := range want {
			if got[id] != st {
				return false
			}
		}
		// The waiting order has reached its wait: the pickup timer runs.
		d, err := orchestrator.Describe(ctx, streams.NewHistory(env.NC, env.JS), waiting.OrderID)
		return err == nil && len(d.Timers) == 1
	}, "demo did not settle: got %v, want %v", lazy(func() any { return got }), want)
	return d
}

// refundDown makes the payment gateway refuse the refunds of the retry-
// orders while it is true.
var refundDown atomic.Bool

// cleanups release the shared deployment, in reverse order, when the
// package's tests are done.
var cleanups []func()

func stopDeployment() {
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}

// packageTB is a testing.TB whose cleanups run at the end of the package
// run, not of the test that started the shared deployment.
type packageTB struct{ testing.TB }

func (packageTB) Cleanup(f func()) { cleanups = append(cleanups, f) }

func (p packageTB) TempDir() string {
	dir, err := os.MkdirTemp("", "jetflow-console-")
	if err != nil {
		p.Fatal(err)
	}
	cleanups = append(cleanups, func() { _ = os.RemoveAll(dir) })
	return dir
}

// lazy formats a value when a failure message is printed.
type lazy func() any

func (l lazy) String() string { return fmt.Sprint(l()) }

// rows returns "id status" of every row of the list on the page.
func rows(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return run(t, ctx, "read rows", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("tr[data-id]")).map(r => r.dataset.id + " " + r.dataset.status)`))
}

// TestConsoleListFindsEveryStatus: after the mixed demo, the list counts
// every status, each status is one click away from the counts, and each
// status's page lists a workflow of that outcome; the filters and paging
// work from the form and the pager links.
func TestConsoleListFindsEveryStatus(t *testing.T) {
	ctx := tab(t) // a missing browser fails before the demo runs
	d := runDemo(t)
	do(t, ctx, "open list", chromedp.Navigate(d.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`tr[data-id]`)))
	for _, st := range []string{"running", "blocked", "manual", "completed", "compensated"} {
		n := run(t, ctx, "count "+st, chromedp.Text(chromedp.CSS(`[data-count="`+st+`"]`)))
		if n == "0" || n == "" {
			t.Errorf("count of %s is %q, want at least 1", st, n)
		}
	}
	if n := run(t, ctx, "count all", chromedp.Text(chromedp.CSS(`[data-count="all"]`))); n != fmt.Sprint(len(d.all)) {
		t.Errorf("count of all is %s, want %d", n, len(d.all))
	}
	for _, st := range []string{"running", "blocked", "manual", "completed", "compensated"} {
		do(t, ctx, "click "+st,
			chromedp.Navigate(d.URL+"/workflows"),
			chromedp.Click(chromedp.CSS(`.counts a.st-`+st)),
			chromedp.WaitVisible(chromedp.CSS(`.counts a.st-`+st+`[aria-current]`)))
		got := rows(t, ctx)
		if !slices.Contains(got, d.ids[st]+" "+st) {
			t.Errorf("%s page lists %v, want %s among them", st, got, d.ids[st])
		}
		for _, r := range got {
			if !strings.HasSuffix(r, " "+st) {
				t.Errorf("%s page lists %s", st, r)
			}
		}
	}
	screenshot(t, ctx, d.URL+"/workflows", "console-list.png")
	phone(t, ctx, d.URL+"/workflows", "console-list-phone.png")

	// The manual queue from the header, one click from any page.
	do(t, ctx, "manual queue", chromedp.Navigate(d.URL+"/dead-letters"),
		chromedp.Click(chromedp.CSS(`header nav a[href="/workflows?status=manual"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-status="manual"]`)))

	// Filter by ID prefix with the form.
	do(t, ctx, "filter by prefix", chromedp.Navigate(d.URL+"/workflows"),
		chromedp.SendKeys(chromedp.CSS(`#f-prefix`), "waiting-"),
		chromedp.Submit(chromedp.CSS(`#f-prefix`)),
		chromedp.WaitVisible(chromedp.CSS(`.filters a[href="/workflows"]`))) // "Clear": on a filtered list only
	if got := rows(t, ctx); len(got) != 1 || got[0] != d.ids["running"]+" running" {
		t.Errorf("prefix waiting- lists %v, want only %s", got, d.ids["running"])
	}

	// Pages of 5, oldest start first, through every workflow.
	do(t, ctx, "first page", chromedp.Navigate(d.URL+"/workflows?limit=5"))
	var seen, started []string
	for page := 0; page < 10; page++ {
		got := rows(t, ctx)
		if len(got) > 5 {
			t.Fatalf("page %d has %d rows, want at most 5", page, len(got))
		}
		for _, r := range got {
			seen = append(seen, strings.Fields(r)[0])
		}
		started = append(started, run(t, ctx, "start times", chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll("tr[data-id] td:nth-child(4) time")).map(e => e.getAttribute("datetime"))`))...)
		more := run(t, ctx, "next link", chromedp.Evaluate[bool](`!!document.querySelector('a[rel="next"]')`))
		if !more {
			break
		}
		next := run(t, ctx, "next href", chromedp.AttributeValue(chromedp.CSS(`a[rel="next"]`), "href"))
		do(t, ctx, "next page", chromedp.Navigate(d.URL+next.Value))
	}
	if len(seen) != len(d.all) {
		t.Errorf("paging saw %d workflows %v, want %d", len(seen), seen, len(d.all))
	}
	for i := 1; i < len(started); i++ {
		a, _ := time.Parse(time.RFC3339Nano, started[i-1])
		b, _ := time.Parse(time.RFC3339Nano, started[i])
		if b.Before(a) {
			t.Errorf("row %d started %s, before row %d (%s): want oldest first", i, started[i], i-1, started[i-1])
		}
	}
}

// TestConsoleCompensatedOrderShowsCompensationsInReverse: the timeline of
// an order whose shipment was rejected marks its compensations, and they
// undo the steps in reverse order: release the stock, then refund.
func TestConsoleCompensatedOrderShowsCompensationsInReverse(t *testing.T) {
	ctx := tab(t) // a missing browser fails before the demo runs
	d := runDemo(t)
	id := d.ids["compensated"]
	do(t, ctx, "open order", chromedp.Navigate(d.URL+"/workflows/"+id), chromedp.WaitVisible(chromedp.CSS(`ol.timeline`)))
	if st := run(t, ctx, "status", chromedp.Text(chromedp.CSS(`#status`))); st != "compensated" {
		t.Fatalf("status %q, want compensated", st)
	}
	steps := func(sel string) []string {
		return run(t, ctx, "steps", chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll(`+"`"+sel+"`"+`)).map(e => e.dataset.step)`))
	}
	forward := steps(`li.ev.command:not(.compensation)`)
	comps := steps(`li.ev.command.compensation`)
	if want := []string{"payment.charge", "inventory.reserve", "shipping.create"}; len(forward) < 3 || !slices.Equal(forward[:3], want) {
		t.Errorf("forward steps %v, want %v first", forward, want)
	}
	if want := []string{"inventory.release", "payment.refund"}; !slices.Equal(comps, want) {
		t.Errorf("compensations %v, want %v (the reverse of the steps that succeeded)", comps, want)
	}
	// Each compensation is marked for people, not only by class.
	if n := run(t, ctx, "marks", chromedp.Evaluate[int](`document.querySelectorAll("li.ev.compensation .badge.comp").length`)); n < 2 {
		t.Errorf("%d compensation marks, want one per compensation event (at least 2)", n)
	}
	// The failed step's result shows its attempts and error; its body opens
	// from the keyboard.
	failed := run(t, ctx, "failed result", chromedp.Text(chromedp.CSS(`li.ev.failed summary`)))
	if !strings.Contains(failed, "shipping.create") || !strings.Contains(failed, "attempt") {
		t.Errorf("failed result reads %q, want the step and its attempts", failed)
	}
	do(t, ctx, "open body by keyboard", chromedp.Focus(chromedp.CSS(`li.ev.failed summary`)),
		chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS(`li.ev.failed details[open] pre`)))
	do(t, ctx, "blur", chromedp.Blur(chromedp.CSS(`li.ev.failed summary`)))
	screenshot(t, ctx, "", "console-compensated.png")
	phone(t, ctx, d.URL+"/workflows/"+id, "")
}

// TestConsoleSignalFromPage: carrier.picked_up sent from a waiting order's
// page, with a reason and a confirmation, lets the order complete.
func TestConsoleSignalFromPage(t *testing.T) {
	ctx := tab(t) // a missing browser fails before the demo runs
	d := runDemo(t)
	id := d.ids["running"]
	do(t, ctx, "open waiting order", chromedp.Navigate(d.URL+"/workflows/"+id), chromedp.WaitVisible(chromedp.CSS(`#signal-form`)))
	if cd := run(t, ctx, "countdown", chromedp.Text(chromedp.CSS(`.countdown`))); !strings.HasPrefix(cd, "in ") {
		t.Errorf("pickup timer countdown reads %q, want \"in …\"", cd)
	}
	do(t, ctx, "send signal",
		chromedp.SendKeys(chromedp.CSS(`#s-name`), "carrier.picked_up"),
		chromedp.SendKeys(chromedp.CSS(`#s-reason`), "carrier called: parcel collected"),
		chromedp.Click(chromedp.CSS(`#signal-form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm`)))
	// Nothing is sent before the confirmation.
	if h := describe(t, d, id); hasSignal(h, "carrier.picked_up") {
		t.Fatal("signal recorded before it was confirmed")
	}
	confirm(t, ctx)
	// The page refreshes itself (no reload here): the script brings the
	// status up to date while the order completes.
	natstest.Eventually(t, time.Minute, func() bool {
		st, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#status`)))
		return err == nil && st == "completed"
	}, "order %s did not show completed after carrier.picked_up", id)
	if h := describe(t, d, id); !hasSignal(h, "carrier.picked_up") {
		t.Error("history holds no carrier.picked_up")
	}
}

func describe(t *testing.T, d *demo, id string) *orchestrator.Description {
	t.Helper()
	desc, err := orchestrator.Describe(context.Background(), streams.NewHistory(d.env.NC, d.env.JS), id)
	if err != nil {
		t.Fatal(err)
	}
	return desc
}

func hasSignal(d *orchestrator.Description, name string) bool {
	for _, e := range d.History {
		if e.Type == string(schema.KindSignal) && e.Step == name {
			return true
		}
	}
	return false
}

// TestConsoleDeadLetterReason: the dead-letter list shows the order that
// was not JSON; its page gives the reason, the original's stream and
// sequence and its body.
func TestConsoleDeadLetterReason(t *testing.T) {
	ctx := tab(t) // a missing browser fails before the demo runs
	d := runDemo(t)
	var seq uint64
	var reason string
	natstest.Eventually(t, time.Minute, func() bool {
		dl, err := console.NewNATSBackend(d.env.NC, d.env.JS).DeadLetters(context.Background(), console.DeadLetterOptions{})
		if err != nil || len(dl.Letters) == 0 {
			return false
		}
		for _, l := range dl.Letters {
			if l.Origin == streams.OrderCreated {
				seq, reason = l.Seq, l.Reason
				return true
			}
		}
		return false
	}, "no dead letter of order.created")
	do(t, ctx, "open dead letters", chromedp.Navigate(d.URL+"/workflows"),
		chromedp.Click(chromedp.CSS(`header a[href="/dead-letters"]`)),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-seq="%d"] a`, seq))),
		chromedp.WaitVisible(chromedp.CSS(`#reason`)))
	if got := run(t, ctx, "reason", chromedp.Text(chromedp.CSS(`#reason`))); got != reason || got == "" {
		t.Errorf("reason on the page %q, want %q", got, reason)
	}
	page := run(t, ctx, "page", chromedp.Text(chromedp.CSS(`main`)))
	for _, want := range []string{streams.OrdersStream + ", sequence", "this is not an order", "order.created"} {
		if !strings.Contains(page, want) {
			t.Errorf("dead-letter page lacks %q:\n%s", want, page)
		}
	}
	// The blocked workflow's poisoned start is a dead letter that links to
	// its workflow.
	do(t, ctx, "dead letter to workflow", chromedp.Navigate(d.URL+"/dead-letters"),
		chromedp.Click(chromedp.CSS(`td a[href="/workflows/`+d.ids["blocked"]+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#status`)))
	if st := run(t, ctx, "status", chromedp.Text(chromedp.CSS(`#status`))); st != "blocked" {
		t.Errorf("linked workflow shows %q, want blocked", st)
	}
}

// TestConsoleRetryManualOrder: retry from a manual order's page, with a
// reason and a confirmation, runs the failed refund again with fresh
// attempts; once the fault has cleared the order ends compensated.
func TestConsoleRetryManualOrder(t *testing.T) {
	ctx := tab(t) // a missing browser fails before the demo runs
	d := runDemo(t)
	id := d.ids["retry"]
	// The manual order's page says why, and offers retry and resolve.
	do(t, ctx, "manual page", chromedp.Navigate(d.URL+"/workflows/"+id), chromedp.WaitVisible(chromedp.CSS(`#retry-form`)))
	if st := run(t, ctx, "status", chromedp.Text(chromedp.CSS(`#status`))); st != "manual" {
		t.Fatalf("order %s is %s, want manual", id, st)
	}
	refundDown.Store(false) // the gateway is fixed
	do(t, ctx, "retry",
		chromedp.Navigate(d.URL+"/workflows/"+id),
		chromedp.SendKeys(chromedp.CSS(`#r-retry`), "refund gateway fixed"),
		chromedp.Click(chromedp.CSS(`#retry-form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm`)))
	confirm(t, ctx)
	natstest.Eventually(t, time.Minute, func() bool {
		st, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#status`)))
		if err == nil && st == "compensated" {
			return true
		}
		_ = chromedp.Do(ctx, chromedp.Reload())
		return false
	}, "manual order %s did not end compensated after retry", id)
	// The retry is on the timeline with who asked and why.
	ops := run(t, ctx, "operator events", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("li.ev.operator summary")).map(e => e.textContent.replace(/\s+/g, " ").trim())`))
	if len(ops) != 1 || !strings.Contains(ops[0], "operator retry") || !strings.Contains(ops[0], "by console") || !strings.Contains(ops[0], "refund gateway fixed") {
		t.Errorf("operator events on the timeline %q, want the one retry by console with its reason", ops)
	}
	effects, err := sim.List(context.Background(), d.env.JS, "payment", id)
	if err != nil {
		t.Fatal(err)
	}
	refunds := 0
	for _, e := range effects {
		if e.Kind == "refund" {
			refunds++
		}
	}
	if refunds != 1 {
		t.Errorf("order %s has %d refunds in the payment ledger, want exactly 1: %+v", id, refunds, effects)
	}
}

// screenshot writes a PNG of the page (url, or the current page when
// empty) to $JETFLOW_SCREENSHOTS/name.
func screenshot(t *testing.T, ctx context.Context, url, name string) {
	t.Helper()
	dir := os.Getenv("JETFLOW_SCREENSHOTS")
	if dir == "" {
		return
	}
	if url != "" {
		do(t, ctx, "open "+url, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`main`)))
	}
	png := run(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// phone opens url on a phone-sized screen (390 CSS pixels wide) and fails
// unless the page fits its width: wide tables scroll inside their box, the
// page itself never sideways. With JETFLOW_SCREENSHOTS, name is written.
func phone(t *testing.T, ctx context.Context, url, name string) {
	t.Helper()
	do(t, ctx, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`main`)))
	defer do(t, ctx, "laptop", chromedp.EmulateReset())
	over := run(t, ctx, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
	if over > 0 {
		t.Errorf("%s is %d pixels wider than a phone's screen", url, over)
	}
	if name != "" {
		screenshot(t, ctx, "", name)
	}
}

// confirm clicks the confirmation of an action and fails the test with the
// console's error when the action was refused.
func confirm(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, "confirm", chromedp.Click(chromedp.CSS(`#confirm`)), chromedp.WaitVisible(chromedp.CSS(`.flash, .error`)))
	if msg := run(t, ctx, "error", chromedp.Evaluate[string](`(document.querySelector(".error") || {}).textContent || ""`)); msg != "" {
		t.Fatalf("the console refused the action: %s", msg)
	}
}
