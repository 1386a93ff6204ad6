package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/console"
	"github.com/jetflow-io/jetflow/internal/natsauth"
)

// defaultUI is where the web console listens unless told otherwise.
const defaultUI = "127.0.0.1:8233"

// uiFlags are the web console's flags; listen is --listen of `jetflow ui`
// and --ui of `jetflow dev`.
type uiFlags struct {
	listen   string
	auth     string
	readOnly bool
	// bound is the address the console listens on, once it does.
	bound string
}

func (u *uiFlags) register(fs *flag.FlagSet, listenFlag, listenHelp string) {
	fs.StringVar(&u.listen, listenFlag, defaultUI, listenHelp)
	fs.StringVar(&u.auth, "ui-auth", "", "web console authentication, required on a non-loopback address: token:SECRET or basic:USER:PASSWORD")
	fs.BoolVar(&u.readOnly, "ui-read-only", false, "web console without actions: it shows and never changes anything")
}

func runUI(ctx context.Context, args []string) error {
	var c common
	var u uiFlags
	var lf logFlags
	fs := flag.NewFlagSet("ui", flag.ContinueOnError)
	c.register(fs, false)
	lf.register(fs, "info")
	u.register(fs, "listen", "address the web console listens on")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if u.listen == "" {
		return errors.New("--listen \"\": want an address such as 127.0.0.1:8233")
	}
	if err := console.CheckListen(u.listen, u.auth); err != nil {
		return err
	}
	log, _, err := logger(lf)
	if err != nil {
		return err
	}
	nc, js, err := connect(ctx, &c, "jetflow ui", natsauth.Operator, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	if err := startUI(ctx, &wg, &u, nc, js, log, errs); err != nil {
		cancel()
		return err
	}
	return wait(ctx, cancel, &wg, errs)
}

// startUI serves the web console on u.listen until ctx is done; it
// returns once the address is bound.
func startUI(ctx context.Context, wg *sync.WaitGroup, u *uiFlags, nc *nats.Conn, js jetstream.JetStream, log *slog.Logger, errs chan<- error) error {
	if err := console.CheckListen(u.listen, u.auth); err != nil {
		return err
	}
	h, err := console.New(console.Config{
		Backend: console.NewNATSBackend(nc, js), ReadOnly: u.readOnly, Auth: u.auth,
		Logger: log.With("component", "console"),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", u.listen)
	if err != nil {
		return fmt.Errorf("web console: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	u.bound = ln.Addr().String()
	log.Info("web console ready", "url", "http://"+u.bound+"/", "auth", authKind(u.auth), "read_only", u.readOnly)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("web console: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return nil
}

// startDevUI serves the console of `jetflow dev`, unless --ui "". When
// the default address is taken (another jetflow dev), dev runs on without
// a console and says so; an address given with --ui must be free.
func startDevUI(ctx context.Context, wg *sync.WaitGroup, u *uiFlags, explicit bool, nc *nats.Conn, js jetstream.JetStream, log *slog.Logger, errs chan<- error) error {
	if u.listen == "" {
		return nil
	}
	err := startUI(ctx, wg, u, nc, js, log, errs)
	if err != nil && !explicit && errors.Is(err, syscall.EADDRINUSE) {
		log.Warn("web console not started: its address is taken", "addr", u.listen, "hint", "--ui ADDR picks another")
		return nil
	}
	if err == nil {
		// On a line of its own: make run quiets the log.
		fmt.Fprintf(os.Stderr, "jetflow dev: web console on http://%s/\n", u.bound)
	}
	return err
}

// isSet reports whether flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// authKind names the authentication without its secret.
func authKind(auth string) string {
	a, err := console.ParseAuth(auth)
	if err != nil || a.Kind == "" {
		return "none"
	}
	return a.Kind
}
