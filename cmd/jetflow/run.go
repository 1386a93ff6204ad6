package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/console"
	"github.com/jetflow-io/jetflow/internal/metrics"
	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natsconn"
	"github.com/jetflow-io/jetflow/internal/reconcile"
	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/fulfillment"
	"github.com/jetflow-io/jetflow/orchestrator/schedule"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/participants/sim"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
)

// engineFlags are the flags of the commands that run parts of the engine.
// Each command registers only the groups it uses: every engine command the
// connection, logging, --replicas and --ack-wait; the orchestrator the
// workflow's (registerOrchestrator); a participant the simulated systems'
// (registerSimulation); dev both.
type engineFlags struct {
	common
	log      logFlags
	replicas int
	ackWait  time.Duration

	// orchestrator: the flags of registerOrchestrator are registered.
	orchestrator bool
	workflow     fulfillment.Config
	// maxOrderSize is the orchestrator's intake limit (Intake.MaxSize).
	maxOrderSize int
	// maxPendingSignals caps each workflow's signals recorded and not yet
	// received (orchestrator.Config.MaxPendingSignals).
	maxPendingSignals int
	// reconcileSchedule is when the reconciliation runs ("" never).
	reconcileSchedule string
	// affinity turns the routing of wakes to their owner on
	// (orchestrator.Config.Affinity).
	affinity bool
	// stickyWorkflows bounds the workflows kept live between decisions
	// (orchestrator.Config.StickyWorkflows); 0 turns it off.
	stickyWorkflows int
	// retention, archiveRetention, archiveMaxBytes: how long finished
	// workflows stay in the history, and the archive's limits.
	retention        time.Duration
	archiveRetention time.Duration
	archiveMaxBytes  int64
	// ordersMaxBytes, signalsMaxBytes and deadLetterMaxBytes bound the streams anyone
	// permitted may fill (streams.Topology).
	ordersMaxBytes     int64
	signalsMaxBytes    int64
	deadLetterMaxBytes int64
	historyPartitions  int
	// ledgerTTL is how long the simulated systems keep an effect.
	ledgerTTL time.Duration

	// simulation: the flags of registerSimulation are registered.
	simulation bool
	faults     sim.Faults
	// obs: --metrics, and the process's metrics and tracing.
	obs obsFlags
}

func (e *engineFlags) register(fs *flag.FlagSet) {
	e.common.register(fs, false)
	e.log.register(fs, "info")
	e.obs.register(fs)
	fs.IntVar(&e.replicas, "replicas", 1, "replicas of every stream and bucket (3 on a cluster)")
	fs.DurationVar(&e.ackWait, "ack-wait", 30*time.Second, "how long a command or event may stay unacknowledged before JetStream redelivers it")
}

// registerOrchestrator adds the flags of the orchestrator and the reference
// workflow.
func (e *engineFlags) registerOrchestrator(fs *flag.FlagSet) {
	e.orchestrator = true
	fs.DurationVar(&e.workflow.PickupTimeout, "pickup-timeout", 72*time.Hour, "how long an order waits for carrier.picked_up before it is cancelled")
	fs.DurationVar(&e.workflow.PaymentTimeout, "payment-timeout", 48*time.Hour, "how long an order waits for payment.settled on a pending charge")
	fs.IntVar(&e.maxPendingSignals, "max-pending-signals", orchestrator.DefaultMaxPendingSignals, "signals a workflow may hold recorded and not yet received; more are dead-lettered")
	fs.BoolVar(&e.affinity, "affinity", true, "hand the wakes of a workflow another orchestrator owns to that one, which has it cached, instead of deciding every wake this process pulls (needs the orchestrator role's permission on jetflow.orchestrators.>; --affinity=false turns it off)")
	fs.IntVar(&e.stickyWorkflows, "sticky-workflows", orchestrator.DefaultStickyWorkflows, "workflows kept live between decisions, so a wake replays only its new events (0: off, every decision replays the whole history)")
	fs.IntVar(&e.maxOrderSize, "max-order-size", orchestrator.DefaultMaxOrderSize, "largest order.created body in bytes; a larger order is dead-lettered (at most a quarter of the server's max payload)")
	fs.StringVar(&e.reconcileSchedule, "reconcile-schedule", "", "run the payment reconciliation with --fix on this schedule (cron fields in UTC, @daily, @every 6h; \"\" never), and serve `jetflow reconcile --fix`")
	fs.DurationVar(&e.retention, "retention", orchestrator.DefaultRetention, "how long a finished workflow stays in the history after its end before it is archived and removed (0: kept for ever)")
	fs.DurationVar(&e.archiveRetention, "archive-retention", DefaultArchiveRetention, "how long an archived history is kept (0: for ever); its order id is refused as a duplicate meanwhile")
	fs.Int64Var(&e.archiveMaxBytes, "archive-max-bytes", 0, "bound of the archive stream's size in bytes, the oldest records dropped first (0: none)")
	// Bounds are off by default: the server reserves a stream's bound
	// against its JetStream storage when the stream is made, so a default
	// sized for production would stop jetflow from starting on a small
	// disk. deploy/README.md says how to size them.
	fs.Int64Var(&e.ordersMaxBytes, "orders-max-bytes", 0, "bound of the JETFLOW_ORDERS stream in bytes, at least 16 MiB: an order.created past it is refused, so a flood of orders fills that stream and not the storage the histories need (0: none)")
	fs.Int64Var(&e.signalsMaxBytes, "signals-max-bytes", 0, "bound of the JETFLOW_SIGNALS stream in bytes, at least 16 MiB: a signal past it is refused, so a flood of signals fills that stream and not the storage the histories need (0: none)")
	fs.Int64Var(&e.deadLetterMaxBytes, "dead-letter-max-bytes", 0, "bound of the JETFLOW_DLQ stream in bytes, at least 16 MiB, the oldest dead letters dropped first (0: none)")
	fs.IntVar(&e.historyPartitions, "history-partitions", 0, "spread a new deployment's histories over this many streams (JETFLOW_HISTORY_0 ...), whose writes and fsyncs run side by side (0: the layout the server has, one stream for a new one; a history keeps the layout it was made with)")
}

// minStreamBound is the smallest --orders-max-bytes, --signals-max-bytes
// and --dead-letter-max-bytes: 16 MiB.
const minStreamBound = 16 << 20

// DefaultArchiveRetention is --archive-retention's default: 90 days.
const DefaultArchiveRetention = 90 * 24 * time.Hour

// DefaultLedgerTTL is --ledger-ttl's default: 30 days, well above the
// reconciliation's 24 h look-back.
const DefaultLedgerTTL = 30 * 24 * time.Hour

// registerSimulation adds the flags of the simulated external systems the
// reference participants call.
func (e *engineFlags) registerSimulation(fs *flag.FlagSet) {
	e.simulation = true
	fs.Float64Var(&e.faults.PaymentDeclineRate, "payment-decline-rate", 0, "share of orders the simulated payment gateway declines (0..1)")
	fs.Float64Var(&e.faults.OutOfStockRate, "out-of-stock-rate", 0, "share of orders the simulated warehouse cannot serve (0..1)")
	fs.Float64Var(&e.faults.ShippingFailRate, "shipping-fail-rate", 0, "share of orders the simulated carrier rejects (0..1)")
	fs.DurationVar(&e.faults.Latency, "latency", 0, "latency of every simulated external call")
	fs.DurationVar(&e.faults.PickupDelay, "pickup-delay", 2*time.Second, "how long after a shipment the simulated carrier signals carrier.picked_up")
	fs.DurationVar(&e.ledgerTTL, "ledger-ttl", DefaultLedgerTTL, "how long the simulated systems' ledgers keep an effect (0: for ever)")
}

// validate refuses flag values that make no sense, naming flag and value,
// rather than replacing them with defaults.
func (e *engineFlags) validate() error {
	var errs []error
	if e.replicas < 1 || e.replicas > 5 {
		errs = append(errs, fmt.Errorf("--replicas %d: want 1 to 5", e.replicas))
	}
	errs = append(errs, positive("ack-wait", e.ackWait))
	if e.simulation {
		for _, r := range []struct {
			name string
			v    float64
		}{
			{"payment-decline-rate", e.faults.PaymentDeclineRate},
			{"out-of-stock-rate", e.faults.OutOfStockRate},
			{"shipping-fail-rate", e.faults.ShippingFailRate},
		} {
			if !(r.v >= 0 && r.v <= 1) { // also NaN
				errs = append(errs, fmt.Errorf("--%s %v: want a share from 0 to 1", r.name, r.v))
			}
		}
		errs = append(errs,
			notNegative("latency", e.faults.Latency),
			notNegative("pickup-delay", e.faults.PickupDelay),
			notNegative("ledger-ttl", e.ledgerTTL),
		)
	}
	if e.orchestrator {
		errs = append(errs,
			positive("pickup-timeout", e.workflow.PickupTimeout),
			positive("payment-timeout", e.workflow.PaymentTimeout),
		)
		if e.maxOrderSize <= 0 {
			errs = append(errs, fmt.Errorf("--max-order-size %d: must be positive", e.maxOrderSize))
		}
		errs = append(errs, notNegative("retention", e.retention), notNegative("archive-retention", e.archiveRetention))
		if e.historyPartitions < 0 || e.historyPartitions > streams.MaxHistoryPartitions {
			errs = append(errs, fmt.Errorf("--history-partitions %d: want 0 (as on the server) or 1 to %d", e.historyPartitions, streams.MaxHistoryPartitions))
		}
		if e.archiveMaxBytes < 0 {
			errs = append(errs, fmt.Errorf("--archive-max-bytes %d: must not be negative", e.archiveMaxBytes))
		}
		// A bound must hold many of the largest messages (a dead letter
		// of one is up to the max payload and 64 KiB): below that, one
		// message takes the whole stream.
		for _, b := range []struct {
			name string
			v    int64
		}{
			{"orders-max-bytes", e.ordersMaxBytes},
			{"signals-max-bytes", e.signalsMaxBytes},
			{"dead-letter-max-bytes", e.deadLetterMaxBytes},
		} {
			if b.v != 0 && b.v < minStreamBound {
				errs = append(errs, fmt.Errorf("--%s %d: want 0 (no bound) or at least %d (16 MiB)", b.name, b.v, minStreamBound))
			}
		}
	}
	return errors.Join(errs...)
}

// positive refuses a duration flag that is zero or negative.
func positive(name string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("--%s %s: must be positive", name, d)
	}
	return nil
}

// notNegative refuses a negative duration flag.
func notNegative(name string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("--%s %s: must not be negative", name, d)
	}
	return nil
}

// parseEngine parses the flags of an engine command and validates them.
func parseEngine(fs *flag.FlagSet, e *engineFlags, args []string) ([]string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	return pos, e.validate()
}

func (e *engineFlags) topology() streams.Topology {
	return streams.Topology{Replicas: e.replicas, ArchiveMaxAge: e.archiveRetention, ArchiveMaxBytes: e.archiveMaxBytes,
		OrdersMaxBytes: e.ordersMaxBytes, SignalsMaxBytes: e.signalsMaxBytes, DeadLetterMaxBytes: e.deadLetterMaxBytes, LedgerTTL: e.ledgerTTL,
		HistoryPartitions: e.historyPartitions}
}

// startOrchestrator runs the orchestrator with the reference workflow.
func startOrchestrator(ctx context.Context, wg *sync.WaitGroup, nc *nats.Conn, js jetstream.JetStream, log *slog.Logger, e *engineFlags, errs chan<- error) error {
	if limit := streams.MaxPayload(nc) / 4; e.maxOrderSize > limit {
		return fmt.Errorf("--max-order-size %d: more than a quarter of the server's max payload (%d), so the commands derived from an order may not fit", e.maxOrderSize, limit)
	}
	if e.maxPendingSignals <= 0 {
		return fmt.Errorf("--max-pending-signals %d: must be positive", e.maxPendingSignals)
	}
	sticky := e.stickyWorkflows
	switch {
	case sticky < 0:
		return fmt.Errorf("--sticky-workflows %d: want 0 (off) or more", sticky)
	case sticky == 0:
		sticky = -1 // Config's "off"
	}
	reg := workflow.NewRegistry()
	fulfillment.Register(reg, e.workflow)
	reconcile.Register(reg, reconcile.Config{})
	schedule.Register(reg)
	intake := fulfillment.Intake()
	intake.MaxSize = e.maxOrderSize
	var o *orchestrator.Orchestrator
	err := streams.Await(ctx, log, "open the timers bucket", func(context.Context) (err error) {
		o, err = orchestrator.New(orchestrator.Config{
			NC: nc, JS: js, Registry: reg, Intake: intake,
			LateSignals: fulfillment.LateSignals(), SignalRules: fulfillment.SignalRules(),
			MaxPendingSignals: e.maxPendingSignals, StickyWorkflows: sticky,
			Logger: log.With("component", "orchestrator"), AckWait: e.ackWait,
			Metrics: e.obs.metrics, Affinity: e.affinity, Retention: e.retention,
		})
		return err
	})
	if err != nil || o == nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); errs <- supervise(ctx, log, o.Run) }()
	return nil
}

// startParticipant runs one reference participant; its simulated system
// calls back through cb (nil: through js).
func startParticipant(ctx context.Context, wg *sync.WaitGroup, nc *nats.Conn, js, cb jetstream.JetStream, log *slog.Logger, e *engineFlags, name string, errs chan<- error) error {
	var opts []reference.Option
	if cb != nil {
		opts = append(opts, reference.CallbacksVia(cb))
	}
	var svc participants.Service
	err := streams.AwaitTopology(ctx, log, "open the "+name+" buckets", func(ctx context.Context) (err error) {
		svc, err = reference.Service(ctx, js, e.topology(), name, e.faults, opts...)
		return err
	})
	if err != nil || svc.Name == "" {
		return err
	}
	cfg := participants.Config{NC: nc, JS: js, Logger: log.With("component", name), AckWait: e.ackWait, Metrics: e.obs.metrics}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs <- supervise(ctx, log, func(ctx context.Context) error { return participants.Run(ctx, cfg, svc) })
	}()
	return nil
}

// wait blocks until ctx is done or a part fails, then stops every part.
func wait(ctx context.Context, cancel context.CancelFunc, wg *sync.WaitGroup, errs chan error) error {
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	cancel()
	wg.Wait()
	return first
}

func runOrchestrator(ctx context.Context, args []string) error {
	var e engineFlags
	var reconcileNKey string
	fs := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
	e.register(fs)
	e.registerOrchestrator(fs)
	fs.StringVar(&reconcileNKey, "reconcile-nkey", "", "nkey seed of the reconcile role the reconciliation's scan and the schedules run as (with --reconcile-schedule); default: the orchestrator's own connection")
	if _, err := parseEngine(fs, &e, args); err != nil {
		return err
	}
	if reconcileNKey != "" && e.reconcileSchedule == "" {
		return errUsage(fs, "--reconcile-nkey %s: want --reconcile-schedule too", reconcileNKey)
	}
	log, _, err := logger(e.log)
	if err != nil {
		return err
	}
	flush, err := e.obs.init(ctx, log, "jetflow-orchestrator")
	if err != nil {
		return err
	}
	defer flush()
	nc, js, err := connectEngine(ctx, &e, log, "jetflow orchestrator", natsauth.Orchestrator)
	if err != nil || nc == nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 3) // the orchestrator, the reconciliation's two services
	e.obs.poll(ctx, log, metrics.PollConfig{NC: nc, JS: js, Queues: true, QueueDepth: queueDepth(js), Consumers: metrics.EngineConsumers}, nc)
	if err := startOrchestrator(ctx, &wg, nc, js, log, &e, errs); err != nil {
		cancel()
		return err
	}
	rnc, rjs := nc, js
	if reconcileNKey != "" {
		cc := e.common
		if cc.conn, err = e.conn.Resolve(os.Getenv); err != nil {
			cancel()
			wg.Wait()
			return err
		}
		// The same server and TLS, as the reconcile role.
		cc.conn.Context, cc.conn.NKey, cc.conn.Creds, cc.conn.User, cc.conn.Token, cc.conn.InboxPrefix = "", reconcileNKey, "", "", "", ""
		if rnc, rjs, err = connect(ctx, &cc, "jetflow reconcile (scan and schedules)", natsauth.Reconcile, false, e.obs.connOptions(log)...); err != nil {
			cancel()
			wg.Wait()
			return err
		}
		defer rnc.Close()
	}
	if err := startReconcile(ctx, &wg, rnc, rjs, log, &e, e.reconcileSchedule, errs); err != nil {
		cancel()
		wg.Wait()
		return err
	}
	return wait(ctx, cancel, &wg, errs)
}

func runParticipant(ctx context.Context, args []string) error {
	var e engineFlags
	var callbackNKey string
	fs := flag.NewFlagSet("participant", flag.ContinueOnError)
	e.register(fs)
	e.registerSimulation(fs)
	fs.StringVar(&callbackNKey, "callback-nkey", "", "nkey seed of the party the simulated system calls back as (payment-gateway for payment, carrier for shipping), which schedules and forwards its callbacks; default: the participant's own connection (under the role permissions it may do neither)")
	pos, err := parseEngine(fs, &e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !contains(reference.Names, pos[0]) {
		return errUsage(fs, "want one participant: %s; got %q", strings.Join(reference.Names, ", "), pos)
	}
	log, _, err := logger(e.log)
	if err != nil {
		return err
	}
	flush, err := e.obs.init(ctx, log, "jetflow-participant-"+pos[0])
	if err != nil {
		return err
	}
	defer flush()
	nc, js, err := connectEngine(ctx, &e, log, "jetflow participant "+pos[0], natsauth.Participant(pos[0]))
	if err != nil || nc == nil {
		return err
	}
	defer nc.Close()
	var cb jetstream.JetStream
	if callbackNKey != "" {
		role := natsauth.CallbackRole(pos[0])
		if role == "" {
			return fmt.Errorf("--callback-nkey: participant %s makes no callbacks", pos[0])
		}
		cc := e.common
		if cc.conn, err = e.conn.Resolve(os.Getenv); err != nil {
			return err
		}
		// The same server and TLS, as the calling party.
		cc.conn.Context, cc.conn.NKey, cc.conn.Creds, cc.conn.User, cc.conn.Token, cc.conn.InboxPrefix = "", callbackNKey, "", "", "", ""
		cnc, cjs, err := connect(ctx, &cc, "jetflow "+role+" (simulated)", role, false, e.obs.connOptions(log)...)
		if err != nil {
			return err
		}
		defer cnc.Close()
		cb = cjs
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	e.obs.poll(ctx, log, metrics.PollConfig{NC: nc, JS: js, Consumers: []metrics.Consumer{metrics.ParticipantConsumer(pos[0]), metrics.CallbackConsumer(pos[0])}}, nc)
	if err := startParticipant(ctx, &wg, nc, js, cb, log, &e, pos[0], errs); err != nil {
		cancel()
		return err
	}
	log.Info("participant running", "name", pos[0])
	return wait(ctx, cancel, &wg, errs)
}

// partitionsOnDisk is the number of history partition streams of the
// jetflow account in the data directory of an embedded server that ran
// with --auth before (0: none), read from their directories, before the
// server starts.
func partitionsOnDisk(data string) int {
	dirs, _ := filepath.Glob(filepath.Join(data, "jetstream", natsauth.Account, "streams", streams.HistoryPartitionStreamPrefix+"*"))
	for i, d := range dirs {
		dirs[i] = filepath.Base(d)
	}
	return streams.PartitionsNamed(dirs)
}

// connectEngine connects a part of the engine as role. The orchestrator
// ensures the topology; a participant, whose credentials may not create
// streams, checks that it exists. A server that is not there yet is waited
// for, as long as ctx lasts (nil connection and error when ctx ended).
func connectEngine(ctx context.Context, e *engineFlags, log *slog.Logger, name, role string) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := connect(ctx, &e.common, name, role, false, e.obs.connOptions(log)...)
	if err != nil {
		return nil, nil, err
	}
	what := "check the streams"
	if role == natsauth.Orchestrator {
		what = "ensure the streams"
	}
	err = streams.AwaitTopology(ctx, log, what, func(ctx context.Context) error {
		ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if role == natsauth.Orchestrator {
			return streams.Ensure(ectx, js, e.topology())
		}
		if _, err := streams.Discover(ectx, js); err != nil {
			return err
		}
		return streams.Check(ectx, js, append(streams.HistoryStreams(), "KV_"+streams.IdempotencyBucket)...)
	})
	if err == nil && ctx.Err() != nil {
		nc.Close()
		return nil, nil, nil
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func runDev(ctx context.Context, args []string) error {
	var e engineFlags
	var listen, data string
	var demo int
	var demoExit, syncAlways, auth bool
	var ui uiFlags
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	e.register(fs)
	e.registerOrchestrator(fs)
	e.registerSimulation(fs)
	ui.register(fs, "ui", "address the web console listens on; \"\" for none")
	fs.StringVar(&listen, "listen", "127.0.0.1:4222", "address the embedded nats-server listens on")
	fs.StringVar(&data, "data", "./.jetflow", "directory of the embedded server's JetStream data")
	fs.BoolVar(&syncAlways, "sync-always", false, "fsync every write before acknowledging it")
	fs.BoolVar(&auth, "auth", false, "enforce the role permissions (deploy/nats-server.conf): every part connects with its own role's nkey, kept in <data>/auth")
	fs.IntVar(&demo, "demo", 0, "publish N sample orders with a mix of outcomes")
	fs.BoolVar(&demoExit, "demo-exit", false, "exit once every demo order has finished")
	e.obs.devDefaults(fs)
	devReconcileDefault(fs)
	if _, err := parseEngine(fs, &e, args); err != nil {
		return err
	}
	if demo < 0 {
		return fmt.Errorf("--demo %d: must not be negative", demo)
	}
	if ui.listen != "" {
		if err := console.CheckListen(ui.listen, ui.auth); err != nil {
			return err
		}
	}
	// With --nats, use that server and start no embedded one.
	external := false
	fs.Visit(func(f *flag.Flag) { external = external || contains(natsconn.URLFlags, f.Name) })
	if external && auth {
		return errors.New("--auth starts the embedded server with permissions; against --nats, run each part with its own credentials (jetflow orchestrator, jetflow participant)")
	}
	log, _, err := logger(e.log)
	if err != nil {
		return err
	}
	flush, err := e.obs.init(ctx, log, "jetflow-dev")
	if err != nil {
		return err
	}
	defer flush()
	var dial func(role string) (*nats.Conn, jetstream.JetStream, error)
	if external {
		nc, js, err := connect(ctx, &e.common, "jetflow dev", "", false, e.obs.connOptions(log)...)
		if err != nil {
			return err
		}
		defer nc.Close()
		dial = func(string) (*nats.Conn, jetstream.JetStream, error) { return nc, js, nil }
	} else {
		srvCfg := streams.ServerConfig{Listen: listen, StoreDir: data, SyncAlways: syncAlways, Logger: log.With("component", "nats-server")}
		authDir := filepath.Join(data, "auth")
		if auth {
			// The permissions name the history's streams: those of the
			// layout asked for, or, without the flag, of the one the
			// data directory holds (Ensure refuses a layout other than
			// the server's).
			k := e.historyPartitions
			if k == 0 {
				k = partitionsOnDisk(data)
			}
			streams.SetHistoryPartitions(k)
			if srvCfg.ConfigFile, err = natsauth.WriteServerConfig(authDir, natsauth.Roles(nil)); err != nil {
				return err
			}
		}
		srv, err := streams.StartServer(srvCfg)
		if err != nil {
			return err
		}
		defer srv.Stop()
		if auth {
			dial = devRoleDialer(srv, authDir)
		} else {
			nc, err := srv.Connect(nats.Name("jetflow dev"))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			dial = func(string) (*nats.Conn, jetstream.JetStream, error) { return nc, js, nil }
		}
		log.Debug("embedded nats-server ready", "url", srv.URL(), "data", data, "sync_always", syncAlways, "auth", auth)
		fmt.Fprintf(os.Stderr, "jetflow dev: NATS on %s, data in %s; Ctrl-C stops\n", srv.URL(), data)
		if auth {
			log.Info("role credentials (nkey seeds, one file per role)", "dir", authDir, "config", srvCfg.ConfigFile,
				"hint", "jetflow show ID --nkey "+natsauth.SeedFile(authDir, natsauth.Operator))
		}
	}
	nc, js, err := dial(natsauth.Orchestrator)
	if err != nil {
		return err
	}
	ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
	err = streams.Ensure(ectx, js, e.topology())
	ecancel()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4+len(reference.Names))
	poll := metrics.PollConfig{NC: nc, JS: js, Queues: true, QueueDepth: queueDepth(js), Consumers: append(append([]metrics.Consumer(nil), metrics.EngineConsumers...), participantConsumers()...)}
	e.obs.poll(ctx, log, poll, nc)
	if err := startOrchestrator(ctx, &wg, nc, js, log, &e, errs); err != nil {
		return err
	}
	rnc, rjs := nc, js
	if auth && e.reconcileSchedule != "" {
		if rnc, rjs, err = dial(natsauth.Reconcile); err != nil {
			cancel()
			wg.Wait()
			return err
		}
	}
	if err := startReconcile(ctx, &wg, rnc, rjs, log, &e, e.reconcileSchedule, errs); err != nil {
		cancel()
		wg.Wait()
		return err
	}
	for _, name := range reference.Names {
		err := func() error {
			pnc, pjs, err := dial(natsauth.Participant(name))
			if err != nil {
				return err
			}
			var cb jetstream.JetStream
			if role := natsauth.CallbackRole(name); role != "" {
				if _, cb, err = dial(role); err != nil {
					return err
				}
			}
			return startParticipant(ctx, &wg, pnc, pjs, cb, log, &e, name, errs)
		}()
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
	}
	onc, ojs, err := dial(natsauth.Operator)
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	prog, err := newProgress(ctx, onc, ojs)
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	go prog.report(ctx, os.Stderr)
	if err := startDevUI(ctx, &wg, &ui, isSet(fs, "ui"), onc, ojs, log, errs); err != nil {
		cancel()
		wg.Wait()
		return err
	}

	var demoIDs []string
	if demo > 0 {
		_, cjs, err := dial(natsauth.Client)
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		if demoIDs, err = publishDemo(ctx, cjs, demo); err != nil {
			cancel()
			wg.Wait()
			return err
		}
		log.Debug("demo orders published", "count", demo, "first", demoIDs[0])
		fmt.Fprintf(os.Stderr, "jetflow dev: %s published (%s to %s); look at one: jetflow show %s\n",
			count(demo, "demo order", "demo orders"), demoIDs[0], demoIDs[len(demoIDs)-1], demoIDs[0])
	}
	if demoExit && len(demoIDs) > 0 {
		go func() {
			for ctx.Err() == nil {
				if prog.finished(demoIDs) {
					prog.countDead(ctx)
					prog.print(os.Stderr)
					fmt.Fprintf(os.Stderr, "all %d demo orders finished\n", len(demoIDs))
					cancel()
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	return wait(ctx, cancel, &wg, errs)
}

// devRoleDialer connects in process to srv as a role, with that role's
// nkey seed in dir and its inbox prefix; connections are closed when srv
// stops.
func devRoleDialer(srv *streams.Server, dir string) func(role string) (*nats.Conn, jetstream.JetStream, error) {
	return func(role string) (*nats.Conn, jetstream.JetStream, error) {
		nkey, err := nats.NkeyOptionFromSeed(natsauth.SeedFile(dir, role))
		if err != nil {
			return nil, nil, fmt.Errorf("credentials of %s: %w", role, err)
		}
		nc, err := srv.Connect(nats.Name("jetflow dev "+role), nkey, nats.CustomInboxPrefix(natsauth.InboxPrefix(role)))
		if err != nil {
			return nil, nil, fmt.Errorf("connect as %s: %w", role, err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return nc, js, nil
	}
}

// publishDemo publishes n orders of the mixed demo set as JSON, as `nats
// pub` would, and returns their IDs.
func publishDemo(ctx context.Context, js jetstream.JetStream, n int) ([]string, error) {
	prefix := "o-" + strconv.FormatInt(time.Now().Unix()%1e6, 36) + "-"
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		o, _ := fulfillment.MixedOrder(prefix, i)
		body, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		if _, err := js.Publish(ctx, streams.OrderCreated, body); err != nil {
			return nil, fmt.Errorf("publish demo order: %w", err)
		}
		ids = append(ids, o.OrderID)
	}
	return ids, nil
}

// progress counts workflow starts and ends as they are written, and the
// dead letters stored in the dead-letter stream.
type progress struct {
	js       jetstream.JetStream
	mu       sync.Mutex
	status   map[string]schema.Status
	dead     atomic.Uint64
	last     string
	shownAny bool
}

func newProgress(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) (*progress, error) {
	p := &progress{js: js, status: map[string]schema.Status{}}
	on := func(m *nats.Msg) {
		id, rest, ok := streams.ParseSubject(streams.StoredSubject(m.Subject))
		if !ok {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case rest == "start":
			if p.status[id] == "" {
				p.status[id] = schema.StatusRunning
			}
		case strings.HasPrefix(rest, "blocked."):
			p.status[id] = schema.StatusBlocked
		case strings.HasPrefix(rest, "done."):
			if status, _, ok := streams.ParseDone(rest); ok {
				p.status[id] = schema.Status(status)
			}
		default:
			// An operator's retry of a manual workflow, or resume of a
			// blocked one, runs it again.
			if _, verb, ok := streams.ParseOperator(rest); ok && (verb == schema.VerbRetry || verb == schema.VerbResume) {
				p.status[id] = schema.StatusRunning
			}
		}
	}
	for _, f := range []string{streams.StartFilter, streams.DoneFilter, streams.BlockedFilter, streams.OperatorFilter} {
		if _, err := nc.Subscribe(streams.LiveFilter(f), on); err != nil {
			return nil, err
		}
	}
	// Workflows from before this process started.
	existing, err := orchestrator.List(ctx, js, "")
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	for _, s := range existing {
		if p.status[s.ID] == "" {
			p.status[s.ID] = s.Status
		}
	}
	p.mu.Unlock()
	p.countDead(ctx)
	return p, nil
}

// countDead reads how many dead letters the dead-letter stream stores:
// what is there, across restarts, not how many were published. On error
// the last count stays.
func (p *progress) countDead(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := p.js.Stream(ctx, streams.DeadLetterStream)
	if err != nil {
		return
	}
	p.dead.Store(s.CachedInfo().State.Msgs)
}

// scheduleRunPrefix starts the IDs of the schedules' runs
// (schedule.RunID): one always waits for its next slot, so a running one
// is counted apart from the workflows the line is about (one that ended
// otherwise than completed is counted with them, so it shows).
var scheduleRunPrefix = streams.DerivedID("schedule")

func (p *progress) line() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	counts := map[schema.Status]int{}
	workflows, waiting := 0, 0
	for id, s := range p.status {
		if strings.HasPrefix(id, scheduleRunPrefix) && (s == schema.StatusRunning || s == schema.StatusCompleted) {
			if s == schema.StatusRunning {
				waiting++
			}
			continue
		}
		workflows++
		counts[s]++
	}
	line := fmt.Sprintf("workflows %d | running %d | completed %d | compensated %d | manual %d | blocked %d",
		workflows, counts[schema.StatusRunning], counts[schema.StatusCompleted], counts[schema.StatusCompensated],
		counts[schema.StatusManual], counts[schema.StatusBlocked])
	// The ends an operator or an application error makes, once there are
	// any: the counts add up to the workflows.
	for _, st := range []schema.Status{schema.StatusFailed, schema.StatusCancelled, schema.StatusTerminated, schema.StatusResolved} {
		if n := counts[st]; n > 0 {
			line += fmt.Sprintf(" | %s %d", st, n)
		}
	}
	line += fmt.Sprintf(" | dead letters %d", p.dead.Load())
	if waiting > 0 {
		line += fmt.Sprintf(" (schedules waiting %d)", waiting)
	}
	return line
}

func (p *progress) print(w io.Writer) {
	fmt.Fprintln(w, "progress: "+p.line())
}

func (p *progress) report(ctx context.Context, w io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.countDead(ctx)
			if l := p.line(); l != p.last {
				p.last = l
				p.print(w)
			}
		}
	}
}

func (p *progress) finished(ids []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if !p.status[id].Terminal() {
			return false
		}
	}
	return true
}

// queueDepth is the metrics' reading of the manual queue and the blocked
// workflows.
func queueDepth(js jetstream.JetStream) metrics.QueueDepth {
	return func(ctx context.Context) (int, int, error) { return orchestrator.QueueDepth(ctx, js) }
}
