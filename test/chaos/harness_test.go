package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// The binaries under test, built once per package run by TestMain without
// the race detector (the tests themselves may run with it).
var bin struct {
	jetflow, server string
}

const (
	// ackWait is the --ack-wait of every engine process: how long a killed
	// or frozen process holds its deliveries before JetStream redelivers.
	ackWait = 2 * time.Second
	// restartDelay is how long the supervisor waits before it restarts a
	// process that exited by itself (a fault point's exit, a crash).
	restartDelay = 300 * time.Millisecond
	// settleBound is how long after the last fault every order must have
	// reached completed, compensated or manual. Orders whose compensation
	// fails for good take about 36 s of retries (fulfillment's default
	// compensation policy) on top.
	settleBound = 60 * time.Second
	// manualBound is settleBound for runs with such orders.
	manualBound = 120 * time.Second
	// roleEnv makes the test binary run as a helper process (see roles_test.go).
	roleEnv = "JETFLOW_CHAOS_ROLE"
	// seedEnv overrides the seed of every test.
	seedEnv = "JETFLOW_CHAOS_SEED"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	dir, err := os.MkdirTemp("", "jetflow-chaos-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.jetflow = filepath.Join(dir, "jetflow")
	bin.server = filepath.Join(dir, "nats-server-test")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, b := range []struct{ out, pkg string }{{bin.jetflow, "github.com/jetflow-io/jetflow/cmd/jetflow"}, {bin.server, "github.com/jetflow-io/jetflow/cmd/nats-server-test"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// seedFor returns the seed of a test: $JETFLOW_CHAOS_SEED, else def. It is
// logged with the command that reruns the test with it.
func seedFor(t testing.TB, def int64) int64 {
	seed := def
	if s := os.Getenv(seedEnv); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", seedEnv, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun: %s=%d go test ./test/chaos -run '^%s$')", seed, seedEnv, seed, strings.Split(t.Name(), "/")[0])
	return seed
}

// serverOptions configure the nats-server processes of a harness.
type serverOptions struct {
	// nodes is 1 for a single server, 3 for a cluster (R3 streams).
	nodes      int
	syncAlways bool
	maxPayload int64
	maxStore   int64
}

// harness is one deployment under test: nats-server process(es), engine
// processes, a client connection, and the record of the faults injected.
type harness struct {
	t    testing.TB
	dir  string
	rng  *rand.Rand
	seed int64

	servers  []*role
	urls     []string
	replicas int

	nc *nats.Conn
	js jetstream.JetStream

	mu     sync.Mutex
	roles  []*role
	faults map[string]int
}

func newHarness(t testing.TB, seed int64, so serverOptions) *harness {
	t.Helper()
	if so.nodes == 0 {
		so.nodes = 1
	}
	h := &harness{t: t, dir: t.TempDir(), rng: rand.New(rand.NewSource(seed)), seed: seed, faults: map[string]int{}, replicas: 1}
	if os.Getenv("JETFLOW_CHAOS_KEEP") != "" {
		// Keep the logs and data for a post-mortem.
		dir, err := os.MkdirTemp("", "jetflow-chaos-"+strings.ReplaceAll(t.Name(), "/", "-")+"-")
		if err != nil {
			t.Fatal(err)
		}
		h.dir = dir
		t.Logf("logs and data kept in %s", dir)
	}
	if so.nodes > 1 {
		h.replicas = 3
	}
	t.Cleanup(h.close)

	ports := freePorts(t, 2*so.nodes)
	var routes []string
	for i := 0; i < so.nodes; i++ {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[so.nodes+i]))
	}
	for i := 0; i < so.nodes; i++ {
		name := fmt.Sprintf("n%d", i+1)
		args := []string{"-p", strconv.Itoa(ports[i]), "-sd", filepath.Join(h.dir, "data-"+name), "-n", name}
		if so.syncAlways {
			args = append(args, "--sync-always")
		}
		if so.maxPayload > 0 {
			args = append(args, "--max-payload", strconv.FormatInt(so.maxPayload, 10))
		}
		if so.maxStore > 0 {
			args = append(args, "--js-max-store", strconv.FormatInt(so.maxStore, 10))
		}
		if so.nodes > 1 {
			args = append(args, "--cluster_name", "chaos", "--cluster", fmt.Sprintf("127.0.0.1:%d", ports[so.nodes+i]), "--routes", strings.Join(routes, ","))
		}
		h.urls = append(h.urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
		h.servers = append(h.servers, h.newRole("nats-server", "nats-"+name, bin.server, args, false))
	}
	for _, s := range h.servers {
		s.start()
	}
	nc, err := nats.Connect(h.url(), nats.Name("chaos test"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	h.nc = nc
	if h.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	h.eventually(60*time.Second, "the topology could not be created", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return streams.Ensure(ctx, h.js, streams.Topology{Replicas: h.replicas}) == nil
	})
	return h
}

// url is the --nats value of every process: all client URLs.
func (h *harness) url() string { return strings.Join(h.urls, ",") }

func freePorts(t testing.TB, n int) []int {
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func (h *harness) logf(format string, args ...any) {
	h.t.Helper()
	h.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// fault records one injected fault of kind.
func (h *harness) fault(kind, target string) {
	h.mu.Lock()
	h.faults[kind]++
	h.mu.Unlock()
	h.logf("fault: %s (%s)", kind, target)
}

// faultCounts returns a copy of the faults injected so far, by kind.
func (h *harness) faultCounts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.faults))
	for k, v := range h.faults {
		out[k] = v
	}
	return out
}

// eventually polls cond every 100ms until it holds or within passes.
func (h *harness) eventually(within time.Duration, msg string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("not within %v: %s", within, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *harness) close() {
	h.mu.Lock()
	roles := append([]*role(nil), h.roles...)
	h.mu.Unlock()
	// Engine processes first, then the servers.
	for i := len(roles) - 1; i >= 0; i-- {
		roles[i].close()
	}
	if h.nc != nil {
		h.nc.Close()
	}
	if h.t.Failed() || os.Getenv("JETFLOW_CHAOS_LOGS") != "" {
		for _, r := range roles {
			h.t.Logf("--- last lines of %s (%s)\n%s", r.name, r.logPath, tail(r.logPath, 25))
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// --- processes -------------------------------------------------------------

// role is a process the harness runs, kills and restarts: a nats-server
// node, an orchestrator, a participant. With supervise set, a process that
// exits by itself (a fault point's exit, a crash) is restarted after
// restartDelay, as systemd or Kubernetes would.
type role struct {
	h    *harness
	name string
	// kind is "nats-server", "orchestrator" or "participant".
	kind      string
	path      string
	args      []string
	supervise bool
	logPath   string
	// env returns the extra environment of the n-th start (1-based).
	env func(n int) []string

	mu     sync.Mutex
	proc   *os.Process
	done   chan struct{}
	starts int
	armed  string // JETFLOW_FAILPOINTS of the next start only
	expect bool   // the running process is being killed by the harness
	closed bool
	// exits are the exit statuses of the processes that ended by
	// themselves; failpoint.ExitCode (137) for a fault point's exit.
	exits []int
}

func (h *harness) newRole(kind, name, path string, args []string, supervise bool) *role {
	r := &role{h: h, kind: kind, name: name, path: path, args: args, supervise: supervise, logPath: filepath.Join(h.dir, name+".log")}
	h.mu.Lock()
	h.roles = append(h.roles, r)
	h.mu.Unlock()
	return r
}

func (r *role) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.startLocked(); err != nil {
		r.h.t.Errorf("start %s: %v", r.name, err)
	}
}

// ensure starts the role unless its process is running.
func (r *role) ensure() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		select {
		case <-r.done:
		default:
			return
		}
	}
	if err := r.startLocked(); err != nil {
		r.h.t.Errorf("start %s: %v", r.name, err)
	}
}

func (r *role) startLocked() error {
	if r.closed {
		return nil
	}
	if r.done != nil {
		select {
		case <-r.done:
		default:
			return fmt.Errorf("%s is already running", r.name)
		}
	}
	r.starts++
	f, err := os.OpenFile(r.logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var extra []string
	if r.env != nil {
		extra = r.env(r.starts)
	}
	if r.armed != "" {
		extra = append(extra, "JETFLOW_FAILPOINTS="+r.armed)
		r.armed = ""
	}
	fmt.Fprintf(f, "=== start %d of %s at %s %v\n", r.starts, r.name, time.Now().Format("15:04:05.000"), extra)
	cmd := exec.Command(r.path, r.args...)
	cmd.Env = append(cleanEnv(), extra...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	r.proc, r.done, r.expect = cmd.Process, done, false
	go r.wait(cmd, done)
	return nil
}

// cleanEnv is this process's environment without the variables that
// configure fault points or helper roles.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "JETFLOW_FAILPOINTS=") || strings.HasPrefix(kv, roleEnv+"=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (r *role) wait(cmd *exec.Cmd, done chan struct{}) {
	_ = cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	r.mu.Lock()
	expected := r.expect || r.closed
	if !expected {
		r.exits = append(r.exits, code)
	}
	restart := !expected && r.supervise
	r.mu.Unlock()
	close(done)
	if !expected {
		r.h.t.Logf("%s %s exited by itself with status %d%s", time.Now().Format("15:04:05.000"), r.name, code, map[bool]string{true: ", restarting", false: ""}[restart])
	}
	if restart {
		time.AfterFunc(restartDelay, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.done != done {
				return // restarted by someone else meanwhile
			}
			if err := r.startLocked(); err != nil {
				r.h.t.Logf("restart %s: %v", r.name, err)
			}
		})
	}
}

// arm makes the next start of r run with the fault points of spec.
func (r *role) arm(spec string) {
	r.mu.Lock()
	r.armed = spec
	r.mu.Unlock()
}

// alive reports whether the role's process is running (or stopped).
func (r *role) alive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to the running process and waits until it is gone.
// The supervisor does not restart it: call start.
func (r *role) kill() {
	r.mu.Lock()
	p, done := r.proc, r.done
	if p == nil {
		r.mu.Unlock()
		return
	}
	select {
	case <-done:
		r.mu.Unlock()
		return
	default:
	}
	r.expect = true
	_ = p.Signal(syscall.SIGKILL)
	r.mu.Unlock()
	<-done
}

// signal sends sig (SIGSTOP, SIGCONT) to the running process.
func (r *role) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		_ = r.proc.Signal(sig)
	}
}

// waitExit waits until the running process exits by itself.
func (r *role) waitExit(within time.Duration) bool {
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	case <-time.After(within):
		return false
	}
}

// exitCodes returns the statuses of the exits the harness did not cause.
func (r *role) exitCodes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.exits...)
}

func (r *role) close() {
	r.mu.Lock()
	r.closed = true
	p, done := r.proc, r.done
	r.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.Signal(syscall.SIGCONT)
	_ = p.Signal(syscall.SIGKILL)
	<-done
}

// --- engine processes ------------------------------------------------------

func (h *harness) engineArgs(extra ...string) []string {
	return append(extra, "--nats", h.url(), "--log-level", "warn", "--ack-wait", ackWait.String(), "--replicas", strconv.Itoa(h.replicas))
}

// orchestrator starts `jetflow orchestrator`; fp, if set, returns the
// JETFLOW_FAILPOINTS of its n-th start ("" for none).
func (h *harness) orchestrator(name string, fp func(n int) string) *role {
	r := h.newRole("orchestrator", name, bin.jetflow, h.engineArgs("orchestrator"), true)
	r.env = failpoints(fp)
	r.start()
	return r
}

// participant starts `jetflow participant svc`.
func (h *harness) participant(name, svc string, fp func(n int) string) *role {
	r := h.newRole("participant", name, bin.jetflow, h.engineArgs("participant", svc, "--pickup-delay", "0"), true)
	r.env = failpoints(fp)
	r.start()
	return r
}

// participants starts one process of each reference participant.
func (h *harness) participants() map[string]*role {
	out := map[string]*role{}
	for _, svc := range reference.Names {
		out[svc] = h.participant(svc, svc, nil)
	}
	return out
}

func failpoints(fp func(n int) string) func(int) []string {
	if fp == nil {
		return nil
	}
	return func(n int) []string {
		if spec := fp(n); spec != "" {
			return []string{"JETFLOW_FAILPOINTS=" + spec}
		}
		return nil
	}
}

// firstStarts arms spec on the first n starts of a process.
func firstStarts(specs ...string) func(int) string {
	return func(n int) string {
		if n <= len(specs) {
			return specs[n-1]
		}
		return ""
	}
}

// failpointExits counts the exits of r that a fault point caused.
func failpointExits(r *role) int {
	n := 0
	for _, c := range r.exitCodes() {
		if c == 137 {
			n++
		}
	}
	return n
}

// --- orders ----------------------------------------------------------------

// mix returns n orders of fulfillment's deterministic outcome mix with
// their expected end. Unless manual is set, the orders whose compensation
// fails for good (2 in 100, ~36 s of retries each) are left out.
func mix(prefix string, n int, manual bool) []Expected {
	var out []Expected
	for i := 0; len(out) < n; i++ {
		o, want := fulfillment.MixedOrder(prefix, i)
		if want == schema.StatusManual && !manual {
			continue
		}
		out = append(out, Expected{Order: o, Want: want})
	}
	return out
}

func ids(exp []Expected) []string {
	out := make([]string, len(exp))
	for i, e := range exp {
		out[i] = e.Order.OrderID
	}
	return out
}

// load publishes orders in the background.
type load struct {
	done      chan struct{}
	mu        sync.Mutex
	acked     map[string]bool
	attempted map[string]bool
	tries     int
}

// drive publishes orders one by one, every interval, each retried until
// JetStream acknowledges it (or ctx ends), as a well-behaved producer does
// while servers die under it.
func (h *harness) drive(ctx context.Context, orders []Expected, every time.Duration) *load {
	l := &load{done: make(chan struct{}), acked: map[string]bool{}, attempted: map[string]bool{}}
	go func() {
		defer close(l.done)
		next := time.Now()
		for _, e := range orders {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			next = next.Add(every)
			body, _ := json.Marshal(e.Order)
			for ctx.Err() == nil {
				l.mu.Lock()
				l.tries++
				l.attempted[e.Order.OrderID] = true
				l.mu.Unlock()
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := h.js.Publish(pctx, streams.OrderCreated, body, jetstream.WithMsgID("order-"+e.Order.OrderID))
				cancel()
				if err == nil {
					l.mu.Lock()
					l.acked[e.Order.OrderID] = true
					l.mu.Unlock()
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}()
	return l
}

// wait waits for the load to end and marks the acknowledged orders.
func (l *load) wait(orders []Expected) []Expected {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Expected, len(orders))
	for i, e := range orders {
		e.Acked = l.acked[e.Order.OrderID]
		out[i] = e
	}
	return out
}

// published waits for the load to end and returns the orders it tried to
// publish, the acknowledged ones marked.
func (l *load) published(orders []Expected) []Expected {
	var out []Expected
	for _, e := range l.wait(orders) {
		l.mu.Lock()
		tried := l.attempted[e.Order.OrderID]
		l.mu.Unlock()
		if tried {
			out = append(out, e)
		}
	}
	return out
}

// publishAll publishes orders at once and returns them acknowledged.
func (h *harness) publishAll(orders []Expected) []Expected {
	h.t.Helper()
	return h.drive(context.Background(), orders, 0).wait(orders)
}

// --- waiting and checking ----------------------------------------------------

// statuses returns the status of every workflow, from the history stream.
func (h *harness) statuses(ctx context.Context) (map[string]schema.Status, error) {
	list, err := orchestrator.List(ctx, h.js, "")
	if err != nil {
		return nil, err
	}
	out := make(map[string]schema.Status, len(list))
	for _, s := range list {
		out[s.ID] = s.Status
	}
	return out, nil
}

// waitSettled polls the histories until every one of ids has ended
// (completed, compensated or manual) or bound passes, and returns how long
// it took.
func (h *harness) waitSettled(ids []string, bound time.Duration) (time.Duration, bool) {
	start := time.Now()
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := h.statuses(ctx)
		cancel()
		if err == nil {
			open := 0
			for _, id := range ids {
				if !st[id].Terminal() {
					open++
				}
			}
			if open == 0 {
				return time.Since(start), true
			}
			last = fmt.Sprintf("%d of %d not ended", open, len(ids))
		} else {
			last = err.Error()
		}
		if time.Since(start) > bound {
			h.t.Errorf("orders not settled within %v after the faults: %s", bound, last)
			return time.Since(start), false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// settleAndCheck waits for the orders to settle within bound and runs the
// invariant checker over them; every problem fails the test.
func (h *harness) settleAndCheck(orders []Expected, bound time.Duration) *Report {
	h.t.Helper()
	var want []string
	for _, e := range orders {
		if e.Acked {
			want = append(want, e.Order.OrderID)
		}
	}
	took, _ := h.waitSettled(want, bound)
	h.logf("settled %d orders %v after the faults stopped", len(want), took.Round(10*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Check(ctx, h.nc, h.js, orders)
	if err != nil {
		h.t.Fatalf("check: %v", err)
	}
	h.logf("check: %s; faults %v", rep, h.faultCounts())
	for _, p := range rep.Problems(30) {
		h.t.Error(p)
	}
	for _, o := range rep.Outages {
		h.logf("outcome changed by an outage (compensated correctly): %s", o)
	}
	for i, s := range rep.Stuck {
		if i == 5 {
			break
		}
		h.explain(strings.SplitN(s, ":", 2)[0])
	}
	if len(rep.Stuck) > 0 {
		h.explainConsumers()
	}
	h.explainViolations(rep)
	return rep
}

// explainViolations logs the histories of the first orders with a broken
// invariant other than being stuck.
func (h *harness) explainViolations(rep *Report) {
	seen := map[string]bool{}
	for _, v := range append(append([]string(nil), rep.DoubleEffects...), rep.Violations...) {
		id := strings.SplitN(v, ":", 2)[0]
		if !seen[id] && len(seen) < 3 {
			seen[id] = true
			h.explain(id)
		}
	}
}

// explainConsumers logs the state of the engine's consumers and, with
// JETFLOW_CHAOS_KEEP set, has every engine process dump its goroutines
// (SIGQUIT) into its log.
func (h *harness) explainConsumers() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, streams.HistoryStream)
	if err != nil {
		h.t.Logf("consumers: %v", err)
		return
	}
	for name := range s.ConsumerNames(ctx).Name() {
		c, err := s.Consumer(ctx, name)
		if err != nil {
			continue
		}
		info, err := c.Info(ctx)
		if err != nil {
			continue
		}
		h.t.Logf("consumer %s: pending %d, ack pending %d, redelivered %d, waiting pulls %d, delivered %d/%d acked %d",
			name, info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting, info.Delivered.Consumer, info.Delivered.Stream, info.AckFloor.Stream)
	}
	if os.Getenv("JETFLOW_CHAOS_KEEP") != "" {
		h.mu.Lock()
		for _, r := range h.roles {
			if r.kind != "nats-server" {
				r.signal(syscall.SIGQUIT)
			}
		}
		h.mu.Unlock()
		time.Sleep(time.Second)
	}
}

// explain logs where a workflow stands: what it waits for and its last
// events.
func (h *harness) explain(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := orchestrator.Describe(ctx, streams.NewHistory(h.nc, h.js), id)
	if err != nil {
		h.t.Logf("%s: %v", id, err)
		return
	}
	var evs []string
	for _, e := range d.History {
		evs = append(evs, fmt.Sprintf("#%d %s %s %s %s", e.Seq, e.Time.Format("15:04:05.000"), e.Type, e.Step, e.Error))
	}
	h.t.Logf("%s is %s %s, waiting for %v, timers %v; history:\n  %s", id, d.Status, d.Reason, d.Waiting, d.Timers, strings.Join(evs, "\n  "))
}

// deadLetters returns the dead letters on subject (dlq.<origin>), with
// their headers.
func (h *harness) deadLetters(subject string) []*nats.Msg {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := h.js.OrderedConsumer(ctx, streams.DeadLetterStream, jetstream.OrderedConsumerConfig{FilterSubjects: deadLetterFilters(subject)})
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*nats.Msg
	for n := info.NumPending; n > 0; n-- {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	}
	return out
}

// history reads the history of id.
func (h *harness) history(id string) []streams.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	evs, err := streams.NewHistory(h.nc, h.js).Read(ctx, id, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return evs
}

// logContains reports whether any log of the roles named prefix* holds s.
func (h *harness) logContains(prefix, s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.roles {
		if !strings.HasPrefix(r.name, prefix) {
			continue
		}
		f, err := os.Open(r.logPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				f.Close()
				return true
			}
		}
		f.Close()
	}
	return false
}

// selfExits summarizes the exits of the engine processes that the harness
// did not cause, by role.
func (h *harness) selfExits() map[string][]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]int{}
	for _, r := range h.roles {
		if c := r.exitCodes(); len(c) > 0 {
			out[r.name] = c
		}
	}
	return out
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// crashes returns the self-exits that no fault point caused (status other
// than 137), sorted.
func (h *harness) crashes() []string {
	var out []string
	for name, codes := range h.selfExits() {
		for _, c := range codes {
			if c != 137 {
				out = append(out, fmt.Sprintf("%s exited with status %d", name, c))
			}
		}
	}
	sort.Strings(out)
	return out
}

// --- cluster ---------------------------------------------------------------

// serverRole returns the nats-server role named name ("n1").
func (h *harness) serverRole(name string) *role {
	for _, s := range h.servers {
		if s.name == "nats-"+name {
			return s
		}
	}
	return nil
}

// streamLeader returns the name of the server leading stream.
func (h *harness) streamLeader(stream string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("no leader")
	}
	return info.Cluster.Leader, nil
}

// clusterHealthy reports whether every stream (KV buckets included) has a
// leader and all of its replicas are current.
func (h *harness) clusterHealthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names := h.js.StreamNames(ctx)
	n := 0
	for name := range names.Name() {
		n++
		s, err := h.js.Stream(ctx, name)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != h.replicas-1 {
			return false
		}
		for _, p := range info.Cluster.Replicas {
			if !p.Current || p.Offline {
				return false
			}
		}
	}
	return names.Err() == nil && n > 0
}

// deadLetterFilters matches the dead letters on subject and below it (a
// signal's are on dlq.signal.<seq>).
func deadLetterFilters(subject string) []string {
	if strings.HasSuffix(subject, ">") {
		return []string{subject}
	}
	return []string{subject, subject + ".>"}
}
