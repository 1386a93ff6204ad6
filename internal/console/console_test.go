package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/console"
	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

func TestCheckListen(t *testing.T) {
	for _, tc := range []struct {
		addr, auth string
		wantErr    string
	}{
		{addr: "127.0.0.1:8233"},
		{addr: "[::1]:8233"},
		{addr: "localhost:8233"},
		{addr: "0.0.0.0:8233", wantErr: "0.0.0.0:8233 is not a loopback address"},
		{addr: ":8233", wantErr: "--ui-auth"},
		{addr: "10.1.2.3:8233", wantErr: "--ui-auth token:SECRET"},
		{addr: "0.0.0.0:8233", auth: "token:s3cret"},
		{addr: "no-port", wantErr: `--listen "no-port"`},
	} {
		t.Run(tc.addr+" "+tc.auth, func(t *testing.T) {
			err := console.CheckListen(tc.addr, tc.auth)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("CheckListen(%q, %q) = %v, want error containing %q", tc.addr, tc.auth, err, tc.wantErr)
			}
		})
	}
}

func TestParseAuthNamesTheBadValue(t *testing.T) {
	for _, tc := range []struct{ in, wantErr string }{
		{"token:", "token is empty"},
		{"basic:admin", "basic:admin: want basic:USER:PASSWORD"},
		{"bearer:x", `"bearer:…": want token:SECRET or basic:USER:PASSWORD`},
	} {
		if _, err := console.ParseAuth(tc.in); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseAuth(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
		}
	}
	a, err := console.ParseAuth("basic:ops:pa:ss")
	if err != nil || a.User != "ops" || a.Password != "pa:ss" {
		t.Errorf("ParseAuth(basic:ops:pa:ss) = %+v, %v", a, err)
	}
}

// site is the console on a real server, with one running workflow.
type site struct {
	js  jetstream.JetStream
	url string
	id  string
}

func newSite(t *testing.T, cfg console.Config) *site {
	t.Helper()
	env := natstest.RunJetStream(t)
	id := "wf-1"
	if _, err := orchestrator.Start(context.Background(), env.JS, "order.fulfillment", id, map[string]string{"order_id": id}, "test"); err != nil {
		t.Fatal(err)
	}
	cfg.Backend = console.NewNATSBackend(env.NC, env.JS)
	h, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &site{js: env.JS, url: srv.URL, id: id}
}

// client keeps cookies and does not follow redirects.
func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func csrfOf(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "jetflow_csrf" {
			return ck.Value
		}
	}
	t.Fatal("no CSRF cookie after a page load")
	return ""
}

// signals counts the messages on the workflow's signal subject.
func signals(t *testing.T, s *site) uint64 {
	t.Helper()
	st, err := s.js.Stream(context.Background(), streams.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(streams.SignalSubject("carrier.picked_up", s.id)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestActionNeedsCSRFReasonAndConfirmation: a signal is sent only by a
// form of the console's own page (CSRF token), with a reason, after the
// confirmation step.
func TestActionNeedsCSRFReasonAndConfirmation(t *testing.T) {
	s := newSite(t, console.Config{})
	c := client(t)
	if code, body := get(t, c, s.url+"/workflows/"+s.id); code != 200 || !strings.Contains(body, `id="signal-form"`) {
		t.Fatalf("workflow page: %d, signal form shown: %v", code, strings.Contains(body, `id="signal-form"`))
	}
	token := csrfOf(t, c, s.url)
	act := s.url + "/workflows/" + s.id + "/signal"
	form := url.Values{"name": {"carrier.picked_up"}, "reason": {"collected"}, "confirm": {"yes"}}

	if code, body := post(t, c, act, form); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
		t.Errorf("post without token: %d, want 403 naming CSRF", code)
	}
	wrong := "0"
	if token[0] == '0' {
		wrong = "1"
	}
	form.Set("csrf", wrong+token[1:])
	if code, _ := post(t, c, act, form); code != http.StatusForbidden {
		t.Errorf("post with a wrong token: %d, want 403", code)
	}
	form.Set("csrf", token)
	req, _ := http.NewRequest(http.MethodPost, act, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("post from another origin: %v %v, want 403", resp.StatusCode, err)
	}
	form.Del("reason")
	if code, body := post(t, c, act, form); code != http.StatusBadRequest || !strings.Contains(body, "reason is required") {
		t.Errorf("post without reason: %d, want 400 asking for a reason", code)
	}
	form.Set("reason", "collected")
	form.Del("confirm")
	if code, body := post(t, c, act, form); code != 200 || !strings.Contains(body, `id="confirm"`) {
		t.Errorf("first post: %d, want the confirmation page", code)
	}
	if n := signals(t, s); n != 0 {
		t.Fatalf("%d signals sent before the confirmation, want 0", n)
	}
	form.Set("confirm", "yes")
	if code, _ := post(t, c, act, form); code != http.StatusSeeOther {
		t.Errorf("confirmed post: %d, want 303 back to the workflow", code)
	}
	if n := signals(t, s); n != 1 {
		t.Errorf("%d signals after the confirmation, want 1", n)
	}
}

// TestReadOnlyShowsNoActionsAndRefusesThem: --ui-read-only hides every
// action and refuses the POSTs.
func TestReadOnlyShowsNoActionsAndRefusesThem(t *testing.T) {
	s := newSite(t, console.Config{ReadOnly: true})
	c := client(t)
	_, body := get(t, c, s.url+"/workflows/"+s.id)
	if strings.Contains(body, "<form method=\"post\"") {
		t.Error("read-only workflow page shows an action form")
	}
	form := url.Values{"name": {"carrier.picked_up"}, "reason": {"r"}, "confirm": {"yes"}, "csrf": {csrfOf(t, c, s.url)}}
	if code, body := post(t, c, s.url+"/workflows/"+s.id+"/signal", form); code != http.StatusForbidden || !strings.Contains(body, "read-only") {
		t.Errorf("read-only post: %d, want 403 saying read-only", code)
	}
	if n := signals(t, s); n != 0 {
		t.Errorf("%d signals sent by a read-only console", n)
	}
}

// TestAuthGuardsEveryPage: with --ui-auth, pages and assets need the
// token or the basic credentials.
func TestAuthGuardsEveryPage(t *testing.T) {
	t.Run("token", func(t *testing.T) {
		s := newSite(t, console.Config{Auth: "token:s3cret"})
		c := client(t)
		for _, p := range []string{"/workflows", "/workflows/" + s.id + "/json", "/static/console.css", "/dead-letters"} {
			if code, _ := get(t, c, s.url+p); code != http.StatusUnauthorized {
				t.Errorf("GET %s without token: %d, want 401", p, code)
			}
		}
		if code, _ := get(t, c, s.url+"/workflows?token=wrong"); code != http.StatusUnauthorized {
			t.Errorf("wrong token: %d, want 401", code)
		}
		// The token once in the address sets a cookie and leaves the address.
		resp, err := c.Get(s.url + "/workflows?status=running&token=s3cret")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || strings.Contains(loc, "s3cret") {
			t.Errorf("token login: %d to %q, want 303 to an address without the token", resp.StatusCode, loc)
		}
		if code, body := get(t, c, s.url+"/workflows?status=running"); code != 200 || !strings.Contains(body, s.id) {
			t.Errorf("after login: %d, want the list with %s", code, s.id)
		}
		req, _ := http.NewRequest(http.MethodGet, s.url+"/workflows/"+s.id+"/json", nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
			t.Errorf("bearer token: %v %v, want 200", resp.StatusCode, err)
		}
	})
	t.Run("basic", func(t *testing.T) {
		s := newSite(t, console.Config{Auth: "basic:ops:pw"})
		c := client(t)
		resp, err := c.Get(s.url + "/workflows")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("no credentials: %d %q, want 401 with a Basic challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		req, _ := http.NewRequest(http.MethodGet, s.url+"/workflows", nil)
		req.SetBasicAuth("ops", "pw")
		if resp, err := c.Do(req); err != nil || resp.StatusCode != 200 {
			t.Errorf("basic credentials: %v %v, want 200", resp.StatusCode, err)
		}
	})
}

// TestPagesNeedNoCDN: every page refers only to its own assets, which the
// binary embeds, and forbids the browser anything else (scripts of other
// origins, being framed).
func TestPagesNeedNoCDN(t *testing.T) {
	s := newSite(t, console.Config{})
	c := client(t)
	resp, err := c.Get(s.url + "/workflows")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q, want own sources only and no framing", csp)
	}
	if xfo := resp.Header.Get("X-Frame-Options"); xfo != "DENY" {
		t.Errorf("X-Frame-Options %q, want DENY", xfo)
	}
	for _, p := range []string{"/workflows", "/workflows/" + s.id, "/dead-letters", "/start", "/static/console.css", "/static/console.js"} {
		code, body := get(t, c, s.url+p)
		if code != 200 {
			t.Errorf("GET %s: %d", p, code)
		}
		for _, ext := range []string{"http://", "https://", "//cdn"} {
			if i := strings.Index(body, ext); i >= 0 {
				t.Errorf("GET %s refers to %q", p, body[i:min(len(body), i+60)])
			}
		}
	}
}

// TestStartAsksConfirmationThenStarts: the start form starts a workflow
// only after its confirmation step, with the input as given, and a second
// start of the same ID starts nothing.
func TestStartAsksConfirmationThenStarts(t *testing.T) {
	s := newSite(t, console.Config{})
	c := client(t)
	if code, _ := get(t, c, s.url+"/start"); code != 200 {
		t.Fatalf("start page: %d", code)
	}
	form := url.Values{"csrf": {csrfOf(t, c, s.url)}, "type": {"order.fulfillment"}, "id": {"wf-2"}, "input": {`{"order_id":"wf-2"}`}, "reason": {"replay a lost order"}}
	if code, body := post(t, c, s.url+"/start", form); code != 200 || !strings.Contains(body, `id="confirm"`) {
		t.Fatalf("first post: %d, want the confirmation page", code)
	}
	if code, _ := get(t, c, s.url+"/workflows/wf-2"); code != http.StatusNotFound {
		t.Fatalf("workflow page before the confirmation: %d, want 404", code)
	}
	form.Set("confirm", "yes")
	resp, err := c.PostForm(s.url+"/start", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/workflows/wf-2?") {
		t.Fatalf("confirmed start: %d to %q, want 303 to the workflow", resp.StatusCode, loc)
	}
	code, body := get(t, c, s.url+"/workflows/wf-2/json")
	if code != 200 || !strings.Contains(body, `"order_id": "wf-2"`) || !strings.Contains(body, `console`) {
		t.Errorf("started workflow JSON: %d\n%s", code, body)
	}
	resp, err = c.PostForm(s.url+"/start", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := url.QueryUnescape(resp.Header.Get("Location")); !strings.Contains(loc, "existed already") {
		t.Errorf("second start: redirected to %q, want a message that it existed", loc)
	}
	form.Set("input", "{not json")
	if code, body := post(t, c, s.url+"/start", form); code != http.StatusBadRequest || !strings.Contains(body, "not valid JSON") {
		t.Errorf("bad input: %d, want 400 naming the bad JSON", code)
	}
}

// TestLongTimelineShowsBothEnds: a history of more than 1,000 events shows
// its first 100 and its last 900, says how many are left out, and links to
// the JSON view, which has them all.
func TestLongTimelineShowsBothEnds(t *testing.T) {
	s := newSite(t, console.Config{})
	for n := 1; n <= 1200; n++ {
		m, err := streams.NewMsg(streams.MarkerSubject(s.id, n), &schema.Marker{ID: n, Name: fmt.Sprintf("m%d", n)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
		if n%500 == 0 {
			<-s.js.PublishAsyncComplete()
		}
	}
	<-s.js.PublishAsyncComplete()
	c := client(t)
	code, body := get(t, c, s.url+"/workflows/"+s.id)
	if code != 200 {
		t.Fatalf("workflow page: %d", code)
	}
	if n := strings.Count(body, `<li class="ev `); n != 1000 {
		t.Errorf("%d events shown, want 1000", n)
	}
	for _, want := range []string{"1201 events", "201 events not shown", `data-step="m99"`, `data-step="m1200"`, `href="/workflows/` + s.id + `/json"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, `data-step="m100"`) {
		t.Error("page shows event m100, which is among the ones left out")
	}
	if _, js := get(t, c, s.url+"/workflows/"+s.id+"/json"); !strings.Contains(js, `"m100"`) {
		t.Error("JSON view lacks event m100")
	}
}

// TestVerbsAreTheEnginesAndShowOnTheTimeline: a verb that does not apply
// to the workflow's status is refused with 409 and the engine's reason,
// and records nothing; one that applies is recorded in the history, and
// the timeline shows who asked and why.
func TestVerbsAreTheEnginesAndShowOnTheTimeline(t *testing.T) {
	s := newSite(t, console.Config{})
	c := client(t)
	get(t, c, s.url+"/workflows/"+s.id)
	form := url.Values{"reason": {"customer called"}, "confirm": {"yes"}, "csrf": {csrfOf(t, c, s.url)}}

	code, body := post(t, c, s.url+"/workflows/"+s.id+"/resume", form)
	if code != http.StatusConflict || !strings.Contains(body, "resume applies to blocked workflows") {
		t.Errorf("resume of a running workflow: %d, want 409 with the engine's reason; page:\n%s", code, body)
	}
	resp, err := c.PostForm(s.url+"/workflows/"+s.id+"/cancel", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	msg, _ := url.QueryUnescape(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(msg, "Cancel of "+s.id+" recorded (history sequence ") {
		t.Fatalf("cancel: %d to %q, want 303 with the history sequence", resp.StatusCode, msg)
	}
	d, err := orchestrator.Describe(context.Background(), streams.NewHistory(s.js.Conn(), s.js), s.id)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range d.History {
		if strings.HasPrefix(e.Type, "operator.") {
			ops = append(ops, e.Step+" by "+e.Operator+": "+e.Reason)
		}
	}
	if len(ops) != 1 || ops[0] != "cancel by console: customer called" {
		t.Fatalf("operator events in the history %v, want the one cancel by console", ops)
	}
	_, page := get(t, c, s.url+"/workflows/"+s.id)
	for _, want := range []string{`class="ev operator"`, "operator cancel", "by console", "customer called"} {
		if !strings.Contains(page, want) {
			t.Errorf("workflow page lacks %q", want)
		}
	}
	// A second cancel is refused: one is recorded already.
	if code, body := post(t, c, s.url+"/workflows/"+s.id+"/cancel", form); code != http.StatusConflict || !strings.Contains(body, "has a cancel requested at history seq") {
		t.Errorf("second cancel: %d, want 409 naming the first", code)
	}
}

// TestWaitingStepShowsItsLastFailedAttempt: the workflow's page shows the
// step it waits on with the attempt that failed last, its error and when
// the next attempt is due, as the participant noted them.
func TestWaitingStepShowsItsLastFailedAttempt(t *testing.T) {
	s := newSite(t, console.Config{})
	ctx := context.Background()
	cmd := &schema.Command{WorkflowID: s.id, ID: 1, Service: "payment", Action: "charge", IdempotencyKey: s.id + "-1"}
	m, err := streams.NewMsg(streams.CommandSubject(s.id, 1, "payment", "charge"), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	kv, err := s.js.KeyValue(ctx, streams.AttemptsBucket)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	note, err := json.Marshal(schema.FailedAttempt{WorkflowID: s.id, CommandID: 1, Attempt: 2, Kind: "gateway_error",
		Error: "gateway down", At: at, NextRetry: at.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, streams.AttemptKey("payment", cmd.IdempotencyKey), note); err != nil {
		t.Fatal(err)
	}
	_, page := get(t, client(t), s.url+"/workflows/"+s.id)
	for _, want := range []string{`data-step="payment.charge"`, "step #1 payment.charge", "attempt 2 failed",
		"gateway_error: gateway down", "next retry", `class="countdown next-retry" data-due="` + at.Add(time.Hour).Format(time.RFC3339Nano) + `"`} {
		if !strings.Contains(page, want) {
			t.Errorf("workflow page lacks %q", want)
		}
	}
}
