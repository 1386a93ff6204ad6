// Command jetflow runs and inspects the jetflow workflow engine.
//
//	jetflow dev [--demo N]             embedded NATS + orchestrator + participants
//	jetflow orchestrator               the orchestrator alone
//	jetflow participant NAME           one reference participant alone
//	jetflow show WORKFLOW_ID           status and decoded history
//	jetflow list [--status S]          workflows and their status
//	jetflow ledger SYSTEM [--order ID] a simulated system's effects
//	jetflow reconcile [--fix]          payment ledger against the orders' outcomes
//	jetflow schedule                   the schedules, their next and last runs
//	jetflow signal ID NAME [JSON]      send a signal to a workflow
//	jetflow query ID NAME [JSON]       ask a workflow's query handler
//	jetflow update ID NAME [JSON]      update a workflow, wait for the result
//	jetflow ui [--listen ADDR]         the web console (127.0.0.1:8233)
//	jetflow decode                     msgpack on stdin → JSON on stdout
//	jetflow auth config|keys           role permissions for nats-server, nkeys
//	jetflow help [COMMAND]             a command's usage and flags
//	jetflow completion bash|zsh        shell completion of commands and flags
//
// Each command has flags of its own (jetflow help COMMAND); a command that
// prints data takes --output json. Client commands take --nats URL (or the
// nats CLI's -s and --server), else $NATS_URL, else nats://127.0.0.1:4222,
// and the nats CLI's credentials flags: --creds, --nkey, --tls-ca,
// --tls-cert, --tls-key, --context (defaults $NATS_CREDS, $NATS_NKEY,
// $NATS_CA, $NATS_CERT, $NATS_KEY, $NATS_CONTEXT; $NATS_USER and
// $NATS_PASSWORD). The engine's commands log to stderr with --log-level
// and --log-format (console on a terminal, JSON lines otherwise).
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
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetflow-io/jetflow/internal/failpoint"
	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/internal/natsconn"
	"github.com/jetflow-io/jetflow/streams"
)

// command is one subcommand of jetflow. Every command builds its flags on a
// flag set of its own and parses them with parse, which gives it the usage
// line ("Usage: jetflow NAME [flags] ARGS"), `jetflow help NAME` and the
// shell completion of its flags.
type command struct {
	// name is the subcommand; args its positional arguments, as the usage
	// line shows them; help one line saying what it does.
	name, args, help string
	run              func(ctx context.Context, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"dev", "", "run an embedded nats-server, the orchestrator and all participants in one process", runDev},
		{"orchestrator", "", "run the orchestrator against a NATS server", runOrchestrator},
		{"participant", "NAME", "run one reference participant: payment, inventory, shipping or notification", runParticipant},
		{"show", "WORKFLOW_ID", "show a workflow's status and decoded history", runShow},
		{"list", "", "list workflows with their status", runList},
		{"export", "", "write archived workflows as JSON lines (one show --output json per run) to stdout, to keep them past --archive-retention; replay reads them", runExport},
		{"ledger", "SYSTEM", "list the effects recorded by a simulated system", runLedger},
		{"signal", "WORKFLOW_ID NAME [JSON]", "send a signal to a workflow (signal.<name>.<id>)", runSignal},
		{"ui", "", "serve the web console: workflows, timelines, actions, dead letters", runUI},
		{"query", "WORKFLOW_ID NAME [JSON]", "ask a workflow's query handler; any orchestrator answers by replaying the history", runQuery},
		{"update", "WORKFLOW_ID NAME [JSON]", "send an update to a workflow and wait for its handler's result", runUpdate},
		{"decode", "", "decode one msgpack message body from stdin and print JSON", runDecode},
		{"auth", "config|keys", "write the nats-server permissions of the jetflow roles, or an nkey seed per role", runAuth},
		{"bench", "", "measure orders/s, latency and JetStream writes per order, in process", runBench},
		{"reconcile", "", "compare the payment ledger with the orders' outcomes; --fix refunds what was charged and neither fulfilled nor refunded; exit 3 on critical findings", runReconcile},
		{"schedule", "", "list the schedules: spec, next run, last run and its result", runSchedule},
		{"replay", "", "replay saved histories (jetflow show ID --output json, or jetflow export, with --history FILE) against this build's workflows; print the first divergence", runReplay},
		{"help", "[COMMAND]", "show a command's usage and flags", runHelp},
		{"completion", "bash|zsh", "print a shell completion script: source <(jetflow completion bash)", runCompletion},
	}
	commands = append(commands, verbCommands()...)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "jetflow: durable workflows and sagas on NATS JetStream")
	fmt.Fprintln(w, "\nUsage: jetflow COMMAND [flags] [args]")
	fmt.Fprintln(w, "\nCommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.help)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRun 'jetflow help COMMAND' (or 'jetflow COMMAND -h') for a command's arguments and flags.")
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	if os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage(os.Stdout)
		return
	}
	if err := failpoint.Enable(os.Getenv("JETFLOW_FAILPOINTS")); err != nil {
		fmt.Fprintln(os.Stderr, "jetflow: JETFLOW_FAILPOINTS: "+err.Error())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, ok := lookup(os.Args[1])
	if !ok {
		fmt.Fprintf(os.Stderr, "jetflow: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
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
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// lookup finds a command by name.
func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usageError is a command line a command cannot run: an unknown flag, a
// flag value that does not parse, wrong positional arguments. It exits
// with status 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// errUsage reports wrong positional arguments of the command whose flag set
// is fs, with its usage line.
func errUsage(fs *flag.FlagSet, format string, a ...any) error {
	return usageError{fmt.Sprintf(format, a...) + "\n" + usageLine(fs.Name())}
}

// usageLine is "Usage: jetflow NAME [flags] ARGS" of the command named by a
// flag set's name ("auth", "show", ...).
func usageLine(name string) string {
	line := "Usage: jetflow " + name + " [flags]"
	if c, ok := lookup(strings.Fields(name + " x")[0]); ok && c.args != "" {
		line += " " + c.args
	}
	return line
}

// printUsage writes a command's usage line, what it does and its flags.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	name := fs.Name()
	fmt.Fprintln(w, usageLine(name))
	if c, ok := lookup(strings.Fields(name + " x")[0]); ok {
		fmt.Fprintln(w, "\n"+strings.ToUpper(c.help[:1])+c.help[1:]+".")
	}
	var n int
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	// An alias (a flag sharing another's value: -s and --server for
	// --nats) is shown on its flag's line.
	aliases := map[flag.Value][]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if isAlias(f) {
			aliases[f.Value] = append(aliases[f.Value], dashed(f.Name))
		}
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		if isAlias(f) {
			return
		}
		kind, help := flag.UnquoteUsage(f)
		if kind != "" {
			kind = " " + kind
		}
		// A help text that names its default says it once.
		if !isZero(f) && !strings.Contains(help, "default") {
			help += " (default " + f.DefValue + ")"
		}
		names := append([]string{dashed(f.Name)}, aliases[f.Value]...)
		fmt.Fprintf(tw, "  %s%s\t%s\n", strings.Join(names, ", "), kind, help)
	})
	tw.Flush()
}

// aliasUsage starts the help of a flag that is another name of a flag.
const aliasUsage = "the same as --"

func isAlias(f *flag.Flag) bool { return strings.HasPrefix(f.Usage, aliasUsage) }

// dashed is a flag as typed: --name, or -s for a one-letter name.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// isZero reports whether a flag's default is its type's zero value, as the
// flag package decides whether to print it.
func isZero(f *flag.Flag) bool {
	t := reflect.TypeOf(f.Value)
	if t.Kind() != reflect.Pointer {
		return f.DefValue == ""
	}
	return f.DefValue == reflect.New(t.Elem()).Interface().(flag.Value).String()
}

// describing, when set, receives the flag set of the command that parse is
// called for, and parse stops the command with flag.ErrHelp before it
// parses anything: `jetflow help` and `jetflow completion` learn a
// command's flags this way.
var describing func(*flag.FlagSet)

// describe returns the flag set a command builds, without running it (nil
// if the command parses no flags with parse).
func describe(c command) *flag.FlagSet {
	var got *flag.FlagSet
	describing = func(fs *flag.FlagSet) {
		if got == nil {
			got = fs
		}
	}
	defer func() { describing = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = c.run(ctx, nil)
	return got
}

// runHelp is `jetflow help [COMMAND]`.
func runHelp(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("help", flag.ContinueOnError)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch len(pos) {
	case 0:
		usage(os.Stdout)
		return nil
	case 1:
	default:
		return errUsage(fs, "want one command, got %q", pos)
	}
	c, ok := lookup(pos[0])
	if !ok {
		return usageError{fmt.Sprintf("%q: no such command; want one of %s", pos[0], strings.Join(commandNames(), ", "))}
	}
	if cfs := describe(c); cfs != nil {
		printUsage(os.Stdout, cfs)
	} else {
		printUsage(os.Stdout, flag.NewFlagSet(c.name, flag.ContinueOnError))
	}
	return nil
}

func commandNames() []string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return names
}

// lastDenied holds the first permission violation the server reported to
// this process's client connections.
var lastDenied atomic.Value

// common are the flags every client command shares.
type common struct {
	conn   natsconn.Flags
	output string
}

// register adds the connection flags and, for a command that prints data,
// --output.
func (c *common) register(fs *flag.FlagSet, output bool) {
	c.conn.Register(fs, os.Getenv)
	if output {
		registerOutput(fs, &c.output)
	}
}

// registerOutput adds --output text|json.
func registerOutput(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "output", "text", "output format: text or json")
}

func (c *common) json() (bool, error) { return outputJSON(c.output) }

// outputJSON reports whether --output asks for JSON, refusing a format
// that is neither text nor json.
func outputJSON(output string) (bool, error) {
	switch output {
	case "", "text":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("--output %q: want text or json", output)
}

// logFlags are the logging flags of the commands that run parts of the
// engine.
type logFlags struct {
	level, format string
}

func (l *logFlags) register(fs *flag.FlagSet, level string) {
	fs.StringVar(&l.level, "log-level", level, "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", "auto", "log format: console (for a person), json (one object a line), or auto (console on a terminal, else json)")
}

// parse parses flags that may come before or after positional arguments.
// It gives fs the usage of the command it belongs to (fs.Name()).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.Usage = func() { printUsage(fs.Output(), fs) }
	if describing != nil {
		describing(fs)
		return nil, flag.ErrHelp
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// logger builds the process logger: zerolog on stderr, in the console
// format for a person or JSON lines (format auto: console on a terminal);
// library packages get it as *slog.Logger.
func logger(l logFlags) (*slog.Logger, zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(l.level))
	if err != nil || lvl == zerolog.NoLevel {
		return nil, zerolog.Logger{}, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	tty := isTerminal(os.Stderr)
	var w io.Writer = os.Stderr
	switch l.format {
	case "auto", "":
		if tty {
			w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}
		}
	case "console":
		w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly, NoColor: !tty}
	case "json":
	default:
		return nil, zerolog.Logger{}, fmt.Errorf("--log-format %q: want auto, console or json", l.format)
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
func connect(ctx context.Context, c *common, name, role string, ensure bool, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
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
	opts = append(opts, extra...)
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
	} else if role == "" || role == natsauth.Operator || role == natsauth.Reconcile {
		// Where the histories are: one stream, or a partitioned history's
		// streams. The engine's own roles find out when they start.
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := streams.Discover(ctx, js); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	return nc, js, nil
}
