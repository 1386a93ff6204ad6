package console

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the console's HTTP handler.
type Config struct {
	// Backend is what the pages read and do. Required.
	Backend Backend
	// ReadOnly hides the actions and refuses them.
	ReadOnly bool
	// Auth is "" (no authentication: for a loopback address only),
	// "token:SECRET" (a bearer token, or ?token=SECRET once in the
	// browser) or "basic:USER:PASSWORD" (HTTP basic authentication).
	Auth string
	// Logger receives one line per failed request; no-op when nil.
	Logger *slog.Logger
}

// Auth is a parsed Config.Auth.
type Auth struct {
	// Kind is "", "token" or "basic".
	Kind, Token, User, Password string
}

// ParseAuth parses --ui-auth: "token:SECRET" or "basic:USER:PASSWORD".
func ParseAuth(s string) (Auth, error) {
	if s == "" {
		return Auth{}, nil
	}
	kind, rest, _ := strings.Cut(s, ":")
	switch kind {
	case "token":
		if rest == "" {
			return Auth{}, errors.New("--ui-auth token:: the token is empty")
		}
		return Auth{Kind: kind, Token: rest}, nil
	case "basic":
		user, pass, ok := strings.Cut(rest, ":")
		if !ok || user == "" || pass == "" {
			return Auth{}, fmt.Errorf("--ui-auth basic:%s: want basic:USER:PASSWORD", user)
		}
		return Auth{Kind: kind, User: user, Password: pass}, nil
	}
	return Auth{}, fmt.Errorf("--ui-auth %q: want token:SECRET or basic:USER:PASSWORD", kind+":…")
}

// CheckListen refuses to serve the console on an address other than
// loopback without authentication, and an auth it cannot parse.
func CheckListen(addr, auth string) error {
	if _, err := ParseAuth(auth); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if auth != "" || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("--listen %s is not a loopback address: anyone who reaches it could act on every workflow; give --ui-auth token:SECRET or --ui-auth basic:USER:PASSWORD", addr)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// server serves the pages.
type server struct {
	cfg  Config
	auth Auth
	tpl  map[string]*template.Template
	log  *slog.Logger
}

// New returns the console's HTTP handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Backend == nil {
		return nil, errors.New("console: Config.Backend is required")
	}
	auth, err := ParseAuth(cfg.Auth)
	if err != nil {
		return nil, err
	}
	s := &server{cfg: cfg, auth: auth, tpl: map[string]*template.Template{}, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, page := range []string{"list", "workflow", "confirm", "deadletters", "deadletter", "start", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", page, err)
		}
		s.tpl[page] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, http.FileServerFS(static))))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/workflows", http.StatusFound)
	})
	mux.HandleFunc("GET /workflows", s.list)
	mux.HandleFunc("GET /workflows/{id}", s.workflow)
	mux.HandleFunc("GET /workflows/{id}/json", s.workflowJSON)
	mux.HandleFunc("POST /workflows/{id}/{verb}", s.act)
	mux.HandleFunc("GET /start", s.startForm)
	mux.HandleFunc("POST /start", s.start)
	mux.HandleFunc("GET /dead-letters", s.deadLetters)
	mux.HandleFunc("GET /dead-letters/{seq}", s.deadLetter)
	return s.guard(mux), nil
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(d.Seconds())))
		h.ServeHTTP(w, r)
	})
}

// maxForm bounds a posted form: above any max payload a signal or a start
// could have.
const maxForm = 8 << 20

const (
	csrfCookie  = "jetflow_csrf"
	tokenCookie = "jetflow_token"
)

// guard authenticates, sets the security headers and the CSRF cookie, and
// refuses a POST whose CSRF token or origin does not match.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		if !s.authenticate(w, r) {
			return
		}
		if _, err := r.Cookie(csrfCookie); err != nil && r.Method == http.MethodGet {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: hex.EncodeToString(b), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			r.AddCookie(&http.Cookie{Name: csrfCookie, Value: hex.EncodeToString(b)})
		}
		if r.Method == http.MethodPost {
			// An input or payload larger than this could not be sent anyway.
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := s.checkCSRF(r); err != nil {
				s.fail(w, r, http.StatusForbidden, err)
				return
			}
			if s.cfg.ReadOnly {
				s.fail(w, r, http.StatusForbidden, errors.New("this console is read-only (--ui-read-only): actions are disabled"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate checks the request's credentials; a bad one gets 401.
func (s *server) authenticate(w http.ResponseWriter, r *http.Request) bool {
	switch s.auth.Kind {
	case "token":
		if t := r.URL.Query().Get("token"); t != "" && r.Method == http.MethodGet && same(t, s.auth.Token) {
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: t, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			q := r.URL.Query()
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return false
		}
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && same(bearer, s.auth.Token) {
			return true
		}
		if c, err := r.Cookie(tokenCookie); err == nil && same(c.Value, s.auth.Token) {
			return true
		}
		http.Error(w, "401 unauthorized: open the console once with ?token=SECRET, or send Authorization: Bearer SECRET", http.StatusUnauthorized)
		return false
	case "basic":
		u, p, ok := r.BasicAuth()
		if ok && same(u, s.auth.User) && same(p, s.auth.Password) {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="jetflow console", charset="UTF-8"`)
		http.Error(w, "401 unauthorized", http.StatusUnauthorized)
		return false
	}
	return true
}

func same(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// checkCSRF wants the form's csrf field to equal the CSRF cookie, and the
// Origin header, when the browser sends one, to be this host.
func (s *server) checkCSRF(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("request from origin %q refused: the console accepts forms from its own pages only", o)
		}
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" || !same(c.Value, r.PostFormValue("csrf")) {
		return errors.New("the form's CSRF token is missing or stale: reload the page and submit again")
	}
	return nil
}

// identity names who acts, for the history: the basic-auth user, else the
// console.
func (s *server) identity(r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok && s.auth.Kind == "basic" {
		return "console:" + u
	}
	return "console"
}

// base is what every page shows.
type base struct {
	Title    string
	Nav      string
	CSRF     string
	ReadOnly bool
	// Refresh asks the script to refresh #live every so many seconds.
	Refresh int
	Msg     string
	Err     string
}

func (s *server) base(r *http.Request, title, nav string) base {
	b := base{Title: title, Nav: nav, ReadOnly: s.cfg.ReadOnly, Msg: clip(r.URL.Query().Get("msg"), 500)}
	if c, err := r.Cookie(csrfCookie); err == nil {
		b.CSRF = c.Value
	}
	return b
}

func (s *server) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf strings.Builder
	if err := s.tpl[page].Execute(&buf, data); err != nil {
		s.log.Error("render", "page", page, "err", err)
		http.Error(w, "render "+page+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

// fail renders an error page.
func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if status >= 500 {
		s.log.Warn("console request failed", "path", r.URL.Path, "err", err)
	}
	b := s.base(r, http.StatusText(status), "")
	b.Err = err.Error()
	s.render(w, r, status, "error", struct {
		base
		Status int
	}{b, status})
}

// failFor picks the status of a backend error.
func (s *server) failFor(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, streams.ErrNotFound):
		s.fail(w, r, http.StatusNotFound, err)
	case errors.Is(err, ErrNotAvailable):
		s.fail(w, r, http.StatusNotImplemented, err)
	case errors.Is(err, ErrNotApplicable):
		s.fail(w, r, http.StatusConflict, err)
	default:
		s.fail(w, r, http.StatusBadGateway, err)
	}
}

// statuses are the statuses in the order the pages show them.
var statuses = []schema.Status{schema.StatusRunning, schema.StatusBlocked, schema.StatusManual, schema.StatusCompleted,
	schema.StatusCompensated, schema.StatusFailed, schema.StatusCancelled, schema.StatusTerminated, schema.StatusResolved}

// listData is the workflow list page.
type listData struct {
	base
	Counts []countLink
	Total  int
	// Filter echoes the query.
	Status, Type, Prefix, Since, Until string
	Statuses                           []schema.Status
	Rows                               []Summary
	Next, First                        string
	Filtered                           bool
	// ByStatusTime: the rows are in the order they reached the status
	// filtered on, not in start order.
	ByStatusTime bool
}

type countLink struct {
	Status  schema.Status
	N       int
	Href    string
	Current bool
}

// timeLayouts are the time-range inputs accepted: the browser's
// datetime-local, and RFC 3339.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339}

func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.ParseInLocation(l, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q: want a time such as 2026-01-02T15:04 (UTC) or RFC 3339", name, v)
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := listData{
		base:   s.base(r, "Workflows", "workflows"),
		Status: q.Get("status"), Type: strings.TrimSpace(q.Get("type")), Prefix: strings.TrimSpace(q.Get("prefix")),
		Since: q.Get("since"), Until: q.Get("until"), Statuses: statuses,
	}
	d.Refresh = 5
	opts := ListOptions{Status: schema.Status(d.Status), Type: d.Type, Prefix: d.Prefix, Cursor: q.Get("cursor")}
	var errs []error
	if d.Status != "" && !opts.Status.Valid() {
		errs = append(errs, fmt.Errorf("status %q: want one of %s", d.Status, statusNames()))
	}
	var err error
	if opts.Since, err = parseTime("since", d.Since); err != nil {
		errs = append(errs, err)
	}
	if opts.Until, err = parseTime("until", d.Until); err != nil {
		errs = append(errs, err)
	}
	if n := q.Get("limit"); n != "" {
		if opts.Limit, err = strconv.Atoi(n); err != nil || opts.Limit <= 0 {
			errs = append(errs, fmt.Errorf("limit %q: want a positive number", n))
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	counts, err := s.cfg.Backend.Counts(r.Context())
	if err != nil {
		s.failFor(w, r, err)
		return
	}
	shown := slices.Clone(statuses)
	for _, st := range sortedKeys(counts) {
		// Statuses of a newer engine show too.
		if !slices.Contains(shown, st) {
			shown = append(shown, st)
		}
	}
	d.Statuses = shown
	for _, st := range shown {
		d.Total += counts[st]
		v := url.Values{"status": {string(st)}}
		d.Counts = append(d.Counts, countLink{Status: st, N: counts[st], Href: "/workflows?" + v.Encode(), Current: d.Status == string(st)})
	}
	page, err := s.cfg.Backend.List(r.Context(), opts)
	if err != nil {
		s.failFor(w, r, err)
		return
	}
	d.Rows = page.Workflows
	d.ByStatusTime = d.Status != "" && d.Status != string(schema.StatusRunning)
	d.Filtered = d.Status != "" || d.Type != "" || d.Prefix != "" || d.Since != "" || d.Until != ""
	keep := url.Values{}
	for _, k := range []string{"status", "type", "prefix", "since", "until", "limit"} {
		if v := q.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	if q.Get("cursor") != "" {
		d.First = "/workflows?" + keep.Encode()
	}
	if page.Next != "" {
		keep.Set("cursor", page.Next)
		d.Next = "/workflows?" + keep.Encode()
	}
	s.render(w, r, http.StatusOK, "list", d)
}

func (s *server) workflow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := streams.ValidHistoryID(id); err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	run := 0
	if v := r.URL.Query().Get("run"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.fail(w, r, http.StatusBadRequest, fmt.Errorf("run %q: want a run number from 1", v))
			return
		}
		run = n
	}
	desc, err := s.cfg.Backend.DescribeRun(r.Context(), id, run)
	if err != nil {
		s.failFor(w, r, err)
		return
	}
	b := s.base(r, "Workflow "+id, "workflows")
	if !desc.Status.Terminal() {
		b.Refresh = 3
	}
	s.render(w, r, http.StatusOK, "workflow", newWorkflowView(b, desc, s.cfg.ReadOnly))
}

func (s *server) workflowJSON(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	desc, err := s.cfg.Backend.Describe(r.Context(), id)
	if err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, streams.ErrNotFound) {
			status = http.StatusNotFound
		} else if streams.ValidID(id) != nil {
			status = http.StatusBadRequest
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(desc)
}

// confirmData is the confirmation step of an action.
type confirmData struct {
	base
	Action, Target, Reason string
	// Fields are posted again with confirm=yes.
	Fields  []field
	PostTo  string
	BackTo  string
	Summary []field
}

type field struct{ Name, Value string }

// act runs an operator verb or sends a signal, after a confirmation step.
func (s *server) act(w http.ResponseWriter, r *http.Request) {
	id, verb := r.PathValue("id"), r.PathValue("verb")
	if err := streams.ValidID(id); err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	if verb != "signal" && !isVerb(verb) {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("action %q: want signal, %s", verb, joinVerbs()))
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	name := strings.TrimSpace(r.PostFormValue("name"))
	payload := strings.TrimSpace(r.PostFormValue("payload"))
	back := "/workflows/" + url.PathEscape(id)
	if reason == "" {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("%s %s: a reason is required, it is recorded with the action", verb, id))
		return
	}
	if verb == "signal" && name == "" {
		s.fail(w, r, http.StatusBadRequest, errors.New("signal: a signal name is required"))
		return
	}
	if payload != "" && !json.Valid([]byte(payload)) {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("payload %q: not valid JSON", clip(payload, 80)))
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		d := confirmData{
			base:   s.base(r, "Confirm "+verb, "workflows"),
			Action: verb, Target: id, Reason: reason, PostTo: back + "/" + verb, BackTo: back,
			Fields: []field{{"reason", reason}, {"name", name}, {"payload", payload}},
		}
		if verb == "signal" {
			d.Summary = []field{{"Signal", name}, {"Payload", orNone(payload)}}
		}
		s.render(w, r, http.StatusOK, "confirm", d)
		return
	}
	req := Request{Reason: reason, Identity: s.identity(r)}
	var msg string
	if verb == "signal" {
		v, err := s.cfg.Backend.Signal(r.Context(), id, name, []byte(payload), req)
		if err != nil {
			s.failFor(w, r, err)
			return
		}
		switch {
		case v.Recorded:
			msg = fmt.Sprintf("Signal %s recorded in the history of %s (sequence %d).", name, id, v.HistorySeq)
		case v.Reason != "":
			s.fail(w, r, http.StatusConflict, fmt.Errorf("signal %s to %s refused: %s", name, id, v.Reason))
			return
		default:
			msg = fmt.Sprintf("Signal %s sent to %s (signal stream sequence %d); no orchestrator has recorded or refused it yet.", name, id, v.StreamSeq)
		}
	} else {
		seq, err := s.cfg.Backend.Act(r.Context(), Verb(verb), id, req)
		if err != nil {
			s.failFor(w, r, err)
			return
		}
		msg = fmt.Sprintf("%s of %s recorded (history sequence %d).", strings.ToUpper(verb[:1])+verb[1:], id, seq)
	}
	http.Redirect(w, r, back+"?"+url.Values{"msg": {msg}}.Encode(), http.StatusSeeOther)
}

func isVerb(v string) bool {
	for _, x := range Verbs {
		if string(x) == v {
			return true
		}
	}
	return false
}

func joinVerbs() string {
	var s []string
	for _, v := range Verbs {
		s = append(s, string(v))
	}
	return strings.Join(s, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// startData is the start form.
type startData struct {
	base
	Type, ID, Input, Reason string
}

func (s *server) startForm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.render(w, r, http.StatusOK, "start", startData{base: s.base(r, "Start a workflow", "start"), Type: q.Get("type"), ID: q.Get("id")})
}

func (s *server) start(w http.ResponseWriter, r *http.Request) {
	typ := strings.TrimSpace(r.PostFormValue("type"))
	id := strings.TrimSpace(r.PostFormValue("id"))
	input := strings.TrimSpace(r.PostFormValue("input"))
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	var errs []error
	if !validType(typ) {
		errs = append(errs, fmt.Errorf("type %q: want dot-separated names of letters, digits, - and _", clip(typ, 80)))
	}
	if err := streams.ValidUserID(id); err != nil {
		errs = append(errs, err)
	}
	if input != "" && !json.Valid([]byte(input)) {
		errs = append(errs, fmt.Errorf("input %q: not valid JSON", clip(input, 80)))
	}
	if reason == "" {
		errs = append(errs, errors.New("reason: required, it is recorded with the start"))
	}
	if err := errors.Join(errs...); err != nil {
		d := startData{base: s.base(r, "Start a workflow", "start"), Type: typ, ID: id, Input: input, Reason: reason}
		d.Err = err.Error()
		s.render(w, r, http.StatusBadRequest, "start", d)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		s.render(w, r, http.StatusOK, "confirm", confirmData{
			base:   s.base(r, "Confirm start", "start"),
			Action: "start", Target: id, Reason: reason, PostTo: "/start", BackTo: "/start",
			Fields:  []field{{"type", typ}, {"id", id}, {"input", input}, {"reason", reason}},
			Summary: []field{{"Type", typ}, {"Input", orNone(input)}},
		})
		return
	}
	ok, err := s.cfg.Backend.Start(r.Context(), typ, id, []byte(input), Request{Reason: reason, Identity: s.identity(r)})
	if err != nil {
		s.failFor(w, r, err)
		return
	}
	msg := fmt.Sprintf("Workflow %s started.", id)
	if !ok {
		msg = fmt.Sprintf("Workflow %s existed already: nothing was started.", id)
	}
	http.Redirect(w, r, "/workflows/"+url.PathEscape(id)+"?"+url.Values{"msg": {msg}}.Encode(), http.StatusSeeOther)
}

// deadLettersData is the dead-letter list.
type deadLettersData struct {
	base
	Letters     []DeadLetter
	Next, First string
}

func (s *server) deadLetters(w http.ResponseWriter, r *http.Request) {
	cursor := r.URL.Query().Get("cursor")
	p, err := s.cfg.Backend.DeadLetters(r.Context(), DeadLetterOptions{Cursor: cursor})
	if err != nil {
		s.failFor(w, r, err)
		return
	}
	d := deadLettersData{base: s.base(r, "Dead letters", "dead-letters"), Letters: p.Letters}
	d.Refresh = 10
	if p.Next != "" {
		d.Next = "/dead-letters?" + url.Values{"cursor": {p.Next}}.Encode()
	}
	if cursor != "" {
		d.First = "/dead-letters"
	}
	s.render(w, r, http.StatusOK, "deadletters", d)
}

func (s *server) deadLetter(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("dead letter %q: want a stream sequence number", r.PathValue("seq")))
		return
	}
	dl, err := s.cfg.Backend.DeadLetter(r.Context(), seq)
	if err != nil {
		s.failFor(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "deadletter", struct {
		base
		DL          *DeadLetter
		HeaderNames []string
	}{s.base(r, fmt.Sprintf("Dead letter %d", seq), "dead-letters"), dl, sortedKeys(dl.Headers)})
}
