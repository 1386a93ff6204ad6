package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/jetflow-io/jetflow/internal/bench"
	"github.com/jetflow-io/jetflow/internal/natsconn"
	"github.com/jetflow-io/jetflow/streams"
)

func runBench(ctx context.Context, args []string) error {
	return benchMain(ctx, args, os.Stdout, os.Stderr)
}

// benchMain is `jetflow bench`: it runs the reference order workflow end to
// end and reports throughput, latencies, JetStream writes per order and the
// process's CPU and memory. The table or JSON goes to stdout, progress to
// stderr.
func benchMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		cfg      bench.Config
		syncMode string
		output   string
		logs     logFlags
	)
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Orders, "orders", 2000, "orders to run")
	fs.IntVar(&cfg.Concurrency, "concurrency", 512, "orders in flight: the publisher keeps at most this many unfinished")
	fs.Float64Var(&cfg.Rate, "rate", 0, "publish at most this many orders per second (0: as fast as --concurrency allows)")
	fs.StringVar(&cfg.Mix, "mix", bench.MixNone, "outcomes: none (every order completes) or default (the demo mix of declines, missing stock, failing refunds, ...)")
	fs.DurationVar(&cfg.Latency, "latency", 0, "latency of every simulated external call")
	fs.StringVar(&cfg.Pickup, "pickup", bench.PickupAtCreation, "at_creation: the carrier takes the parcel with the shipment, an order is its 4 steps; signal: the workflow waits for the carrier's signal under its 72h pickup timer")
	fs.DurationVar(&cfg.PickupDelay, "pickup-delay", 0, "with --pickup signal: how long after a shipment the simulated carrier signals the pickup (jetflow dev: 2s)")
	fs.IntVar(&cfg.Flood, "flood", 0, "send this many signals to one order waiting for its carrier while the measured orders run (0: none)")
	fs.StringVar(&syncMode, "sync", "default", "embedded server fsync: default (every 2 minutes) or always (every write)")
	fs.BoolVar(&cfg.SplitConns, "split-conns", false, "give the orchestrator and each participant a connection of its own (jetflow dev shares one)")
	fs.IntVar(&cfg.Orchestrators, "orchestrators", 1, "orchestrators run side by side, each with its own connection and cache, as separate processes: the report gives their cache hit rate and fence conflicts")
	fs.BoolVar(&cfg.Affinity, "affinity", true, "the orchestrators' affinity: each hands the wakes of a workflow another owns to that one (--affinity=false turns it off)")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "replicas of every stream and bucket the run creates (3 on a cluster: with --nats)")
	fs.StringVar(&cfg.NatsURL, "nats", "", "run against this NATS server instead of an embedded one (one that holds a jetflow deployment is refused without --reuse)")
	fs.BoolVar(&cfg.Reuse, "reuse", false, "with --nats: run on a server that holds a jetflow deployment already, one kept for benchmarks (the bench takes its commands and resets its streams' bounds: never on a deployment in use)")
	fs.Var(fs.Lookup("nats").Value, "server", "the same as --nats (the nats CLI's name)")
	fs.Var(fs.Lookup("nats").Value, "s", "the same as --nats")
	fs.StringVar(&cfg.StoreDir, "data", "", "embedded server data directory (default: a temporary directory, removed afterwards)")
	fs.IntVar(&cfg.CeilingMsgs, "ceiling", 50000, "async publishes of the raw JetStream ceiling measurement (-1 skips it)")
	fs.IntVar(&cfg.HistoryPartitions, "history-partitions", 0, "spread the histories over this many streams, whose writes and fsyncs run side by side (0: one stream, or the layout of --nats's server)")
	fs.IntVar(&cfg.CeilingStreams, "ceiling-streams", 1, "also measure the ceiling's async publishes spread over this many streams (1: not measured)")
	fs.IntVar(&cfg.CeilingAtomicBatch, "ceiling-batch", 0, "also measure the ceiling's messages written as atomic batches of this many (0: not measured)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "give up when the orders have not finished within this time")
	fs.DurationVar(&cfg.Retention, "retention", 0, "archive finished orders this long after their end, and report the server's memory, subjects and disk every 10 s (0: keep them; the write counts are not meaningful with it)")
	fs.DurationVar(&cfg.LedgerTTL, "ledger-ttl", DefaultLedgerTTL, "how long the simulated systems' ledgers keep an effect (0: for ever); a long run with --retention keeps them shorter, like the history")
	fs.DurationVar(&cfg.ArchiveRetention, "archive-retention", DefaultArchiveRetention, "how long an archived order is kept (0: for ever); a long run with --retention keeps it short to show the archive bounded as well")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the order run to this file")
	fs.StringVar(&cfg.MemProfile, "memprofile", "", "write the allocation profile of the process to this file after the order run")
	registerOutput(fs, &output)
	logs.register(fs, "warn")
	var conn natsconn.Flags
	conn.RegisterCredentials(fs, os.Getenv)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if cfg.NatsURL != "" || conn.Context != "" {
		resolved, err := conn.Resolve(os.Getenv)
		if err != nil {
			return err
		}
		if cfg.NatsURL == "" {
			cfg.NatsURL = resolved.URL
		}
		if _, cfg.NatsOptions, err = resolved.Options(""); err != nil {
			return err
		}
	}
	if len(pos) > 0 {
		return errUsage(fs, "unexpected arguments %q", pos)
	}
	if err := validateBench(cfg); err != nil {
		return err
	}
	switch syncMode {
	case "default":
	case "always":
		cfg.SyncAlways = true
	default:
		return fmt.Errorf("--sync %q: want default or always", syncMode)
	}
	asJSON, err := outputJSON(output)
	if err != nil {
		return err
	}
	log, _, err := logger(logs)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Progress = stderr

	res, runErr := bench.Run(ctx, cfg)
	if res == nil {
		return runErr
	}
	if asJSON {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteText(stdout)
	}
	if runErr != nil {
		return runErr
	}
	return err
}

// validateBench refuses the numeric flags of bench that make no sense,
// naming flag and value.
func validateBench(cfg bench.Config) error {
	var errs []error
	if cfg.Orders < 1 {
		errs = append(errs, fmt.Errorf("--orders %d: must be at least 1", cfg.Orders))
	}
	if cfg.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency %d: must be at least 1", cfg.Concurrency))
	}
	if !(cfg.Rate >= 0) || math.IsInf(cfg.Rate, 0) {
		errs = append(errs, fmt.Errorf("--rate %v: must be a finite number, not negative", cfg.Rate))
	}
	if cfg.Orchestrators < 1 {
		errs = append(errs, fmt.Errorf("--orchestrators %d: must be at least 1", cfg.Orchestrators))
	}
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		errs = append(errs, fmt.Errorf("--replicas %d: want 1 to 5", cfg.Replicas))
	}
	if cfg.CeilingMsgs < -1 {
		errs = append(errs, fmt.Errorf("--ceiling %d: want -1 (skip) or a count", cfg.CeilingMsgs))
	}
	if cfg.HistoryPartitions < 0 || cfg.HistoryPartitions > streams.MaxHistoryPartitions {
		errs = append(errs, fmt.Errorf("--history-partitions %d: want 0 to %d", cfg.HistoryPartitions, streams.MaxHistoryPartitions))
	}
	if cfg.CeilingStreams < 1 || cfg.CeilingStreams > 64 {
		errs = append(errs, fmt.Errorf("--ceiling-streams %d: want 1 to 64", cfg.CeilingStreams))
	}
	if cfg.CeilingAtomicBatch < 0 || cfg.CeilingAtomicBatch > 1000 {
		errs = append(errs, fmt.Errorf("--ceiling-batch %d: want 0 (not measured) to 1000", cfg.CeilingAtomicBatch))
	}
	errs = append(errs,
		notNegative("latency", cfg.Latency),
		notNegative("pickup-delay", cfg.PickupDelay),
		positive("timeout", cfg.Timeout),
		notNegative("retention", cfg.Retention), notNegative("ledger-ttl", cfg.LedgerTTL),
		notNegative("archive-retention", cfg.ArchiveRetention),
	)
	return errors.Join(errs...)
}
