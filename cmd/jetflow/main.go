// Command jetflow runs and inspects the jetflow workflow engine.
//
//	jetflow dev [--demo N]            embedded NATS + orchestrator + participants
//	jetflow orchestrator              the orchestrator alone
//	jetflow participant NAME          one reference participant alone
//	jetflow show ORDER_ID             status and decoded history
//	jetflow list [--status S]         workflows and their status
//	jetflow ledger SYSTEM [--order ID] a simulated system's effects
//	jetflow signal ID NAME [JSON]     send a signal to a workflow
//	jetflow query ID NAME [JSON]      ask a workflow's query handler
//	jetflow update ID NAME [JSON]     update a workflow, wait for the result
//	jetflow decode                    msgpack on stdin → JSON on stdout
//	jetflow auth config|keys          role permissions for nats-server, nkeys
//
// Client commands take --nats URL, else $NATS_URL, else nats://127.0.0.1:4222,
// and the nats CLI's credentials flags: --creds, --nkey, --tls-ca,
// --tls-cert, --tls-key, --context (defaults $NATS_CREDS, $NATS_NKEY,
// $NATS_CA, $NATS_CERT, $NATS_KEY, $NATS_CONTEXT; $NATS_USER and
// $NATS_PASSWORD).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natsconn"
	"github.com/jetflow-io/jetflow/streams"
)

type command struct {
	name, args, help string
	run              func(ctx context.Context, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"dev", "[flags]", "run an embedded nats-server, the orchestrator and all participants in one process", runDev},
		{"orchestrator", "[flags]", "run the orchestrator against a NATS server", runOrchestrator},
		{"participant", "NAME [flags]", "run one reference participant: payment, inventory, shipping or notification", runParticipant},
		{"show", "WORKFLOW_ID [--output json]", "show a workflow's status and decoded history", runShow},
		{"list", "[--status S] [--output json]", "list workflows with their status", runList},
		{"ledger", "SYSTEM [--order ID] [--output json]", "list the effects recorded by a simulated system", runLedger},
		{"signal", "WORKFLOW_ID NAME [JSON]", "send a signal to a workflow (signal.<name>.<id>)", runSignal},
		{"query", "WORKFLOW_ID NAME [JSON]", "ask a workflow's query handler; any orchestrator answers by replaying the history", runQuery},
		{"update", "WORKFLOW_ID NAME [JSON]", "send an update to a workflow and wait for its handler's result", runUpdate},
		{"decode", "", "decode one msgpack message body from stdin and print JSON", runDecode},
		{"auth", "config|keys [--out DIR]", "write the nats-server permissions of the jetflow roles, or an nkey seed per role", runAuth},
		{"bench", "[--orders N] [flags]", "measure orders/s, latency and JetStream writes per order, in process", runBench},
		{"replay", "--history FILE", "replay saved histories (jetflow show ID --output json) against this build's workflows; print the first divergence", runReplay},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "jetflow: durable workflows and sagas on NATS JetStream")
	fmt.Fprintln(w, "\nUsage: jetflow COMMAND [args]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %-36s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintln(w, "\nRun 'jetflow COMMAND -h' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stdout)
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	if err := failpoint.Enable(os.Getenv("JETFLOW_FAILPOINTS")); err != nil {
		fmt.Fprintln(os.Stderr, "jetflow: JETFLOW_FAILPOINTS: "+err.Error())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands {
		if c.name == os.Args[1] {
			if err := c.run(ctx, os.Args[2:]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return
				}
				msg := err.Error()
				if denied := lastDenied.Load(); denied != nil {
					// A refused publish or subscription surfaces as a timeout;
					// say what the server refused.
					msg += " (the server refused it: " + denied.(string) + "; check the credentials' role)"
				}
				fmt.Fprintln(os.Stderr, "jetflow "+c.name+": "+streams.RedactURL(msg))
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "jetflow: unknown command %q\n\n", os.Args[1])
	usage(os.Stderr)
	os.Exit(2)
}

// lastDenied holds the first permission violation the server reported to
// this process's client connections.
var lastDenied atomic.Value

// common are the flags every client command shares.
type common struct {
	conn     natsconn.Flags
	output   string
	logLevel string
}

func (c *common) register(fs *flag.FlagSet, output bool) {
	c.conn.Register(fs, os.Getenv)
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if output {
		fs.StringVar(&c.output, "output", "text", "output format: text or json")
	}
}

func (c *common) json() (bool, error) {
	switch c.output {
	case "", "text":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("--output %q: want text or json", c.output)
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// logger builds the process logger: zerolog on stderr, readable on a
// terminal, JSON lines otherwise; library packages get it as *slog.Logger.
func logger(level string) (*slog.Logger, zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || lvl == zerolog.NoLevel {
		return nil, zerolog.Logger{}, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	var w io.Writer = os.Stderr
	if isTerminal(os.Stderr) {
		w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}
	}
	zl := zerolog.New(w).Level(lvl).With().Timestamp().Logger()
	return slog.New(zerolog.NewSlogHandler(zl)), zl, nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// connect dials the server named by the connection flags, as role (whose
// inbox prefix the connection uses unless the flags name one), and ensures
// the topology.
func connect(ctx context.Context, c *common, name, role string, ensure bool) (*nats.Conn, jetstream.JetStream, error) {
	flags, err := c.conn.Resolve(os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	inbox := ""
	if role != "" {
		inbox = natsauth.InboxPrefix(role)
	}
	url, opts, err := flags.Options(inbox)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		fmt.Fprintln(os.Stderr, "jetflow: "+name+": "+err.Error())
		if errors.Is(err, nats.ErrPermissionViolation) {
			v := strings.TrimPrefix(err.Error(), "nats: permissions violation: ")
			// A refused publish says more than the refused reply inbox
			// that comes with it.
			if !lastDenied.CompareAndSwap(nil, v) && strings.Contains(v, "Publish") {
				if old, _ := lastDenied.Load().(string); !strings.Contains(old, "Publish") {
					lastDenied.Store(v)
				}
			}
		}
	}))
	nc, err := streams.Connect(url, name, opts...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if ensure {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := streams.Ensure(ctx, js, streams.Topology{}); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	return nc, js, nil
}
