// Package bench measures jetflow end to end: it runs the reference order
// workflow with the orchestrator and the four reference participants in
// this process, against an embedded nats-server (or a server given by URL),
// and reports throughput, latencies taken from the history timestamps,
// JetStream writes and bytes per order, and the process's CPU and memory.
//
// One run also measures the raw JetStream publish ceiling of the same
// server with messages of a history event's size, so the workflow numbers
// can be read against what the machine allows.
//
// `jetflow bench` is the command-line front end; docs/BENCHMARKS.md has the
// measurements and how to read them.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// Mixes of outcomes.
const (
	// MixNone: every order completes.
	MixNone = "none"
	// MixDefault: fulfillment.MixedOrder's mix of declines, missing stock,
	// rejected shipments and failing refunds (2% end in manual after the
	// compensation retries run out, about 35 s).
	MixDefault = "default"
)

// Pickup cases.
const (
	// PickupAtCreation: the simulated carrier takes the parcel as the
	// shipment is created ("pickup":"at_creation"), so an order is the four
	// steps alone: no pickup timer, no signal.
	PickupAtCreation = "at_creation"
	// PickupSignal: the carrier signals carrier.picked_up PickupDelay after
	// the shipment; the workflow waits for it under its 72 h pickup timer.
	PickupSignal = "signal"
)

// Config says what to run.
type Config struct {
	// Orders is the number of orders to push through. Default 2000.
	Orders int
	// Concurrency is the most orders in flight: published and not yet
	// terminal. Default 512.
	Concurrency int
	// Rate caps publishing at this many orders per second; 0 publishes as
	// fast as Concurrency allows (closed loop).
	Rate float64
	// Mix is MixNone (default) or MixDefault.
	Mix string
	// Latency is the simulated latency of every participant call.
	Latency time.Duration
	// Pickup is PickupAtCreation (default) or PickupSignal.
	Pickup string
	// PickupDelay is how long after a shipment the simulated carrier
	// signals the pickup the workflow waits for. Default 0: at once, so the
	// latencies are the engine's (`jetflow dev` waits 2s).
	PickupDelay time.Duration
	// SyncAlways makes the embedded server fsync every write before it
	// acknowledges it.
	SyncAlways bool
	// SplitConns gives the orchestrator and each participant a connection
	// of its own. Default: one connection for the whole engine, as
	// `jetflow dev` has it.
	SplitConns bool
	// NatsURL runs against that server instead of an embedded one. A
	// server whose jetflow streams hold messages is refused unless Reuse.
	NatsURL string
	// Reuse runs against NatsURL even when it holds a jetflow deployment
	// already (one kept for benchmarks: a run before this one). The bench
	// runs its own orchestrators and simulated participants on the
	// deployment's consumers, writes its orders into it and sets its
	// streams to the bench's configuration (bounds off, its retention):
	// never on a deployment in use.
	Reuse bool
	// Orchestrators is the number of orchestrators run side by side, each
	// with its connection, cache and metrics, as separate processes would
	// be; Result.Decisions reports their cache hit rate and fence
	// conflicts. Default 1.
	Orchestrators int
	// Replicas of every stream and bucket the run creates: 3 on a
	// cluster. Default 1.
	Replicas int
	// Affinity turns the orchestrators' affinity on: each hands the wakes
	// of a workflow another owns to that one (orchestrator.Config.Affinity).
	Affinity bool
	// NatsOptions are added to every connection to NatsURL: credentials,
	// TLS. The bench creates the topology, so the credentials must allow
	// it (the orchestrator's do not allow the rest: use admin's).
	NatsOptions []nats.Option
	// StoreDir is the embedded server's data directory. Default: a
	// temporary directory, removed afterwards.
	StoreDir string
	// CeilingMsgs is the number of async publishes of the raw JetStream
	// ceiling (a tenth of it sync). Default 50,000; negative skips it.
	CeilingMsgs int
	// CeilingStreams, when above 1, also measures the ceiling's async
	// publishes spread over that many scratch streams. Default 1.
	CeilingStreams int
	// CeilingAtomicBatch, when above 1, also measures the ceiling's
	// messages written as atomic batches of that many. Default 0 (not
	// measured).
	CeilingAtomicBatch int
	// Flood, if positive, is the number of signals sent to one order that
	// waits for a pickup that never comes, published as the measured orders
	// start: what one busy workflow costs the others. Default 0.
	Flood int
	// Timeout bounds the wait for every order to finish. Default 10 min.
	Timeout time.Duration
	// CPUProfile, if set, receives a CPU profile of the order run (not of
	// the ceiling measurement).
	CPUProfile string
	// MemProfile, if set, receives the allocation profile of the whole
	// process, written right after the order run.
	MemProfile string
	// Progress receives one line per second while orders run. Default: none.
	Progress io.Writer
	// Logger is the engine's log. Default: discarded.
	Logger *slog.Logger
	// Retention, if positive, archives finished orders that long after
	// their end (orchestrator.Config.Retention), and the run samples the
	// server's state every 10 s (Result.Retention). With it, the write
	// counts are not meaningful: archival removes history messages.
	Retention time.Duration
	// LedgerTTL is how long the simulated systems' ledgers keep an effect
	// (0: for ever). A long run keeps them shorter: they are the external
	// systems' records, not the engine's, and in process their subject
	// index weighs on the heap the run measures.
	LedgerTTL time.Duration
	// ArchiveRetention is how long an archived history is kept
	// (streams.Topology.ArchiveMaxAge; 0: for ever). A run through a
	// retention window keeps it short to show the archive bounded too:
	// without it, the archive's subject index grows the heap by a record
	// per order.
	ArchiveRetention time.Duration
	// HistoryPartitions spreads the histories over this many streams
	// (streams.Topology.HistoryPartitions); 0 or 1: one stream.
	HistoryPartitions int
}

func (c *Config) defaults() error {
	if c.Orders <= 0 {
		c.Orders = 2000
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 512
	}
	switch c.Mix {
	case "":
		c.Mix = MixNone
	case MixNone, MixDefault:
	default:
		return fmt.Errorf("mix %q: want %s or %s", c.Mix, MixNone, MixDefault)
	}
	switch c.Pickup {
	case "":
		c.Pickup = PickupAtCreation
	case PickupAtCreation, PickupSignal:
	default:
		return fmt.Errorf("pickup %q: want %s or %s", c.Pickup, PickupAtCreation, PickupSignal)
	}
	if c.Flood < 0 {
		return fmt.Errorf("flood %d: want 0 (none) or more signals", c.Flood)
	}
	if c.Rate < 0 {
		return fmt.Errorf("rate %v: want 0 (unlimited) or more", c.Rate)
	}
	if c.SyncAlways && c.NatsURL != "" {
		return errors.New("sync always applies to the embedded server only; configure the external server instead")
	}
	if c.CeilingMsgs == 0 {
		c.CeilingMsgs = 50000
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.Orchestrators < 0 || c.Replicas < 0 {
		return fmt.Errorf("orchestrators %d, replicas %d: want 0 (default 1) or more", c.Orchestrators, c.Replicas)
	}
	c.Orchestrators, c.Replicas = max(c.Orchestrators, 1), max(c.Replicas, 1)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = discardLogger()
	}
	return nil
}

// Run sets up the server and the engine, measures the JetStream ceiling,
// runs cfg.Orders orders and returns the measurements. It returns an error
// with the partial result when not every order finished in time.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	res := &Result{Config: cfg.describe(), Machine: machine()}

	var (
		srv      *streams.Server
		dial     func(name string) (*nats.Conn, error)
		storeDir string
	)
	if cfg.NatsURL == "" {
		dir := cfg.StoreDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "jetflow-bench-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		var err error
		storeDir = dir
		srv, err = streams.StartServer(streams.ServerConfig{StoreDir: dir, SyncAlways: cfg.SyncAlways, Name: "jetflow-bench"})
		if err != nil {
			return nil, err
		}
		defer srv.Stop()
		dial = func(name string) (*nats.Conn, error) { return srv.Connect(nats.Name(name)) }
	} else {
		dial = func(name string) (*nats.Conn, error) { return streams.Connect(cfg.NatsURL, name, cfg.NatsOptions...) }
	}

	// The client side: publisher, observer, ceiling and history reads.
	nc, err := dial("jetflow bench")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if cfg.NatsURL != "" && !cfg.Reuse {
		if err := refuseDeployment(ctx, js, cfg.NatsURL); err != nil {
			return nil, err
		}
	}
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = streams.Ensure(ectx, js, streams.Topology{Replicas: cfg.Replicas, LedgerTTL: cfg.LedgerTTL, ArchiveMaxAge: cfg.ArchiveRetention, HistoryPartitions: cfg.HistoryPartitions})
	cancel()
	if err != nil {
		return nil, err
	}
	res.Config.HistoryPartitions = streams.HistoryPartitions()

	if cfg.CeilingMsgs > 0 {
		fmt.Fprintf(cfg.Progress, "bench: measuring the JetStream ceiling (%d async, %d sync publishes)\n", cfg.CeilingMsgs, max(cfg.CeilingMsgs/10, 1))
		c, err := measureCeiling(ctx, js, cfg.CeilingMsgs)
		if err != nil {
			return nil, fmt.Errorf("ceiling: %w", err)
		}
		if cfg.CeilingStreams > 1 {
			fmt.Fprintf(cfg.Progress, "bench: measuring the ceiling over %d streams\n", cfg.CeilingStreams)
			if c.StreamsMsgsPerSec, err = measureStreams(ctx, js, cfg.CeilingMsgs, cfg.CeilingStreams); err != nil {
				return nil, fmt.Errorf("ceiling over %d streams: %w", cfg.CeilingStreams, err)
			}
			c.Streams = cfg.CeilingStreams
		}
		if cfg.CeilingAtomicBatch > 1 {
			fmt.Fprintf(cfg.Progress, "bench: measuring atomic batches of %d\n", cfg.CeilingAtomicBatch)
			if c.AtomicBatchMsgsPerSec, err = measureAtomicBatches(ctx, nc, js, max(cfg.CeilingMsgs/10, cfg.CeilingAtomicBatch), cfg.CeilingAtomicBatch); err != nil {
				return nil, fmt.Errorf("ceiling of atomic batches of %d: %w", cfg.CeilingAtomicBatch, err)
			}
			c.AtomicBatch = cfg.CeilingAtomicBatch
		}
		res.Ceiling = c
	}

	// The engine, on connections of its own, wired as `jetflow dev` wires
	// it: one connection for every part unless SplitConns.
	var conns []*nats.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var shared *nats.Conn
	connect := func(part string) (*nats.Conn, jetstream.JetStream, error) {
		c := shared
		if c == nil {
			name := "jetflow bench engine"
			if cfg.SplitConns {
				name += " " + part
			}
			var err error
			if c, err = dial(name); err != nil {
				return nil, nil, err
			}
			conns = append(conns, c)
			if !cfg.SplitConns {
				shared = c
			}
		}
		js, err := jetstream.New(c)
		return c, js, err
	}
	stopEngine, decisions, err := startEngine(ctx, connect, cfg)
	if err != nil {
		return nil, err
	}
	engineStopped := false
	defer func() {
		if !engineStopped {
			_ = stopEngine()
		}
	}()

	var target string
	if cfg.Flood > 0 {
		prefix := "bf-" + strconv.FormatInt(time.Now().UnixNano()/1e6%1e9, 36) + "-"
		if target, err = floodTarget(ctx, js, streams.NewHistory(nc, js), prefix); err != nil {
			return nil, err
		}
	}

	before, err := snapshot(ctx, js)
	if err != nil {
		return nil, err
	}
	orders, body := buildOrders(cfg)
	ru0 := rusage()
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	var waitFlood func() (*FloodResult, error)
	if cfg.Flood > 0 {
		fctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		fmt.Fprintf(cfg.Progress, "bench: flooding %s with %d %s signals\n", target, cfg.Flood, FloodSignal)
		waitFlood = flood(fctx, js, target, cfg.Flood)
	}
	var stopSampling func() []RetentionSample
	if cfg.Retention > 0 {
		stopSampling = sampleRetention(ctx, js, storeDir, 10*time.Second, cfg.Progress)
	}
	runErr := drive(ctx, nc, js, cfg, orders, body, res)
	if waitFlood != nil {
		f, err := waitFlood()
		res.Flood = f
		if err != nil && runErr == nil {
			runErr = fmt.Errorf("flood: %w", err)
		}
	}
	if cfg.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	if cfg.MemProfile != "" {
		if err := writeHeapProfile(cfg.MemProfile); err != nil {
			return nil, err
		}
	}
	ru1 := rusage()
	if runErr == nil && cfg.Retention == 0 {
		// A subscriber can see a done event before the stream has stored
		// it: count the writes once every end is in the stream. (With a
		// retention window the archiver removes ends meanwhile.)
		runErr = waitStored(ctx, js, res.Finished)
	}
	if stopSampling != nil {
		res.Retention = stopSampling()
	}
	after, err := snapshot(ctx, js)
	if err != nil {
		return nil, err
	}
	res.Writes = writesOf(before, after, cfg.Orders)
	res.Resources = resourcesOf(ru0, ru1, cfg.Orders, srv != nil)
	if res.Decisions, err = decisions(); err != nil {
		return nil, err
	}

	if err := stopEngine(); err != nil && runErr == nil {
		runErr = err
	}
	engineStopped = true

	fmt.Fprintf(cfg.Progress, "bench: reading %d histories\n", len(orders))
	if err := analyse(ctx, streams.NewHistory(nc, js), orders, res); err != nil && runErr == nil {
		runErr = err
	}
	return res, runErr
}

// startEngine runs cfg.Orchestrators orchestrators with the reference
// workflow and the four reference participants, and returns the function
// that stops them and the one that sums the orchestrators' decision metrics.
func startEngine(ctx context.Context, connect func(part string) (*nats.Conn, jetstream.JetStream, error), cfg Config) (func() error, func() (*Decisions, error), error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, max(cfg.Orchestrators, 1)+len(reference.Names))
	stop := func() error {
		cancel()
		wg.Wait()
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return errors.Join(all...)
	}
	var (
		regs   []*metrics.Metrics
		lastJS jetstream.JetStream
	)
	for i := range max(cfg.Orchestrators, 1) {
		part := "orchestrator"
		if cfg.Orchestrators > 1 {
			part = fmt.Sprintf("orchestrator %d", i+1)
		}
		nc, js, err := connect(part)
		if err != nil {
			_ = stop()
			return nil, nil, err
		}
		lastJS = js
		reg := workflow.NewRegistry()
		fulfillment.Register(reg, fulfillment.Config{})
		m := metrics.New()
		regs = append(regs, m)
		o, err := orchestrator.New(orchestrator.Config{
			NC: nc, JS: js, Registry: reg, Intake: fulfillment.Intake(), LateSignals: fulfillment.LateSignals(), SignalRules: fulfillment.SignalRules(),
			Logger: cfg.Logger.With("component", part), Metrics: m, Affinity: cfg.Affinity, Retention: cfg.Retention,
		})
		if err != nil {
			_ = stop()
			return nil, nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.Run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", part, err)
			}
		}()
	}
	for _, name := range reference.Names {
		nc, js, err := connect(name)
		if err != nil {
			_ = stop()
			return nil, nil, err
		}
		svc, err := reference.Service(ctx, js, streams.Topology{Replicas: cfg.Replicas, LedgerTTL: cfg.LedgerTTL}, name, sim.Faults{Latency: cfg.Latency, PickupDelay: cfg.PickupDelay})
		if err != nil {
			_ = stop()
			return nil, nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := participants.Run(ctx, participants.Config{NC: nc, JS: js, Logger: cfg.Logger.With("component", name)}, svc); err != nil {
				errs <- fmt.Errorf("participant %s: %w", name, err)
			}
		}()
	}
	// The consumers exist once every part has created its own; the first
	// orders would otherwise wait for them and count as latency.
	if err := waitConsumers(ctx, lastJS); err != nil {
		_ = stop()
		return nil, nil, err
	}
	return stop, func() (*Decisions, error) { return decisionsOf(regs) }, nil
}

func waitConsumers(ctx context.Context, js jetstream.JetStream) error {
	want := []struct{ stream, consumer string }{
		{streams.OrdersStream, streams.IntakeConsumer},
	}
	for _, hs := range streams.HistoryStreams() {
		want = append(want, struct{ stream, consumer string }{hs, streams.OrchestratorConsumer})
		for _, n := range reference.Names {
			want = append(want, struct{ stream, consumer string }{hs, streams.ParticipantConsumerPrefix + n})
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, w := range want {
		for {
			if _, err := js.Consumer(ctx, w.stream, w.consumer); err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("consumer %s on %s not created within 30s", w.consumer, w.stream)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// order is one benchmark order and what was observed of it. Its body is
// built when it is published (body), not kept: a run of millions of orders
// would otherwise hold a gigabyte of bodies, and the collector would scan
// them all through the run, taking CPU from what is measured.
type order struct {
	id        string
	want      schema.Status
	published time.Time // client clock, just before the publish
	done      time.Time // client clock, when its terminal event arrived
	status    schema.Status
}

// buildOrders returns the run's orders and the function that encodes
// order i's body.
func buildOrders(cfg Config) ([]*order, func(i int) []byte) {
	prefix := "b-" + strconv.FormatInt(time.Now().UnixNano()/1e6%1e9, 36) + "-"
	gen := func(i int) (fulfillment.Order, schema.Status) {
		o, want := fulfillment.MixedOrder(prefix, i)
		if cfg.Mix == MixNone {
			o.Simulate, want = nil, schema.StatusCompleted
		}
		if cfg.Pickup == PickupAtCreation {
			if o.Simulate == nil {
				o.Simulate = map[string]string{}
			}
			o.Simulate["pickup"] = PickupAtCreation
		}
		return o, want
	}
	out := make([]*order, cfg.Orders)
	for i := range out {
		o, want := gen(i)
		out[i] = &order{id: o.OrderID, want: want}
	}
	body := func(i int) []byte {
		o, _ := gen(i)
		b, _ := json.Marshal(o) // an Order of strings and numbers always encodes
		return b
	}
	return out, body
}

// drive publishes the orders, keeping at most cfg.Concurrency unfinished
// and at most cfg.Rate per second, and waits until every one is terminal.
func drive(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg Config, orders []*order, body func(int) []byte, res *Result) error {
	// byID holds the orders in flight only: an order leaves it at its
	// first terminal (or blocked) event.
	byID := make(map[string]*order, cfg.Concurrency)
	slots := make(chan struct{}, cfg.Concurrency)
	var (
		mu       sync.Mutex
		finished int
		lastDone time.Time
		statuses = map[schema.Status]int{}
		allDone  = make(chan struct{})
	)
	var published atomic.Int64
	onEnd := func(m *nats.Msg) {
		now := time.Now()
		id, rest, ok := streams.ParseSubject(streams.StoredSubject(m.Subject))
		if !ok {
			return
		}
		st := schema.StatusBlocked
		if s, ok := strings.CutPrefix(rest, "done."); ok {
			st = schema.Status(s)
		}
		mu.Lock()
		defer mu.Unlock()
		o := byID[id]
		if o == nil {
			return // not in flight: seen already (a duplicate delivery, or blocked and then done), or not the run's
		}
		delete(byID, id)
		o.status, o.done = st, now
		statuses[st]++
		finished++
		lastDone = now
		<-slots
		if finished == len(orders) {
			close(allDone)
		}
	}
	var subs []*nats.Subscription
	for _, f := range []string{streams.DoneFilter, streams.BlockedFilter} {
		s, err := nc.Subscribe(streams.LiveFilter(f), onEnd)
		if err != nil {
			return err
		}
		_ = s.SetPendingLimits(-1, -1)
		subs = append(subs, s)
	}
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	if err := nc.Flush(); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	// Progress, one line a second.
	start := time.Now()
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	progressWG.Add(1)
	go func() {
		defer progressWG.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		prev := 0
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				mu.Lock()
				f := finished
				line := statusLine(statuses)
				mu.Unlock()
				p := int(published.Load())
				fmt.Fprintf(cfg.Progress, "bench: %4.0fs | published %d/%d | finished %d (%s) | in flight %d | %d orders/s\n",
					time.Since(start).Seconds(), p, len(orders), f, line, p-f, f-prev)
				prev = f
			}
		}
	}()
	defer func() { close(progressDone); progressWG.Wait() }()

	var first time.Time
	pubErr := func() error {
		for i, o := range orders {
			if cfg.Rate > 0 && i > 0 {
				due := first.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return ctx.Err()
					}
				}
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			b := body(i)
			mu.Lock()
			byID[o.id] = o
			o.published = time.Now()
			mu.Unlock()
			if i == 0 {
				first = o.published
			}
			if _, err := js.PublishAsync(streams.OrderCreated, b, jetstream.WithStallWait(time.Minute)); err != nil {
				return fmt.Errorf("publish order %s: %w", o.id, err)
			}
			published.Add(1)
		}
		select {
		case <-js.PublishAsyncComplete():
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}()
	if pubErr == nil {
		select {
		case <-allDone:
		case <-ctx.Done():
			pubErr = fmt.Errorf("waiting for the orders to finish: %w", ctx.Err())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// An end event still being handled when the subscriptions go (they
	// do not wait for a running callback) finds no order in flight, so
	// nothing writes to an order once the analysis reads them.
	clear(byID)
	res.Published = int(published.Load())
	res.Finished = finished
	if finished > 0 {
		res.WallSeconds = lastDone.Sub(first).Seconds()
		if res.WallSeconds > 0 {
			res.OrdersPerSec = float64(finished) / res.WallSeconds
		}
	}
	if pubErr != nil {
		return fmt.Errorf("%w (%d of %d orders finished: %s)", pubErr, finished, len(orders), statusLine(statuses))
	}
	return nil
}

func statusLine(counts map[schema.Status]int) string {
	if len(counts) == 0 {
		return "none yet"
	}
	s := ""
	for _, st := range []schema.Status{schema.StatusCompleted, schema.StatusCompensated, schema.StatusManual, schema.StatusBlocked} {
		if counts[st] > 0 {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%s %d", st, counts[st])
		}
	}
	return s
}

// machine describes where the run happened.
func machine() Machine {
	m := Machine{
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(string(b))
	}
	return m
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// writeHeapProfile writes the process's allocation profile to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// waitStored waits until the history stream holds n end events.
func waitStored(ctx context.Context, js jetstream.JetStream, n int) error {
	h := streams.NewHistory(js.Conn(), js)
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored, err := h.Count(ctx, streams.DoneFilter)
		if err == nil && stored >= uint64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the history stream does not hold the %d end events seen (%v)", n, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// refuseDeployment returns an error when the server at url holds a jetflow
// deployment that was ever written to: a history stream (any partition)
// or the orders stream with a message stored. The bench would take that
// deployment's commands on its consumers and reset its streams' bounds
// (Config.Reuse).
func refuseDeployment(ctx context.Context, js jetstream.JetStream, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var ours []string
	for name := range names.Name() {
		if name == streams.OrdersStream || streams.IsHistoryStream(name) {
			ours = append(ours, name)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("look for a deployment on %s: %w", url, err)
	}
	for _, name := range ours {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("look for a deployment on %s: %w", url, err)
		}
		if st := s.CachedInfo().State; st.LastSeq > 0 {
			return fmt.Errorf("%s already holds a jetflow deployment (%s has stored %d messages): the bench runs its own orchestrators and simulated participants on that deployment's consumers, writes its orders into it and sets its streams to the bench's configuration; run it against a server of its own, or pass --reuse if this server is kept for benchmarks", url, name, st.LastSeq)
		}
	}
	return nil
}
