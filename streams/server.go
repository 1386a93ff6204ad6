package streams

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures an embedded nats-server.
type ServerConfig struct {
	// Listen is host:port for clients. Port -1 picks a free port; "" does not
	// listen on TCP at all (in-process connections only). Default "".
	Listen string
	// StoreDir holds the JetStream data. Required.
	StoreDir string
	// SyncAlways fsyncs every write before acknowledging it. Default false:
	// the server syncs every 2 minutes (see docs/ARCHITECTURE.md).
	SyncAlways bool
	// Name of the server. Default "jetflow".
	Name string
	// Logger receives the server's log: its notices (the banner, startup
	// and shutdown lines) at Debug, its warnings and errors at Warn and
	// Error. Default: discarded.
	Logger *slog.Logger
	// ConfigFile is a nats-server configuration file whose accounts, users
	// and permissions the server enforces (`jetflow dev --auth` passes the
	// one generated from the jetflow roles). The fields above win over the
	// file's listen address, store directory and server name. Default "":
	// no authentication, every client may do anything.
	ConfigFile string
}

// Server is a running embedded nats-server.
type Server struct {
	*server.Server
	tcp bool
}

// StartServer starts an embedded nats-server with JetStream and waits until
// it accepts connections.
func StartServer(cfg ServerConfig) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("streams: ServerConfig.StoreDir is required")
	}
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		var err error
		if opts, err = server.ProcessConfigFile(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("streams: server configuration %s: %w", cfg.ConfigFile, err)
		}
	}
	opts.ServerName = cfg.Name
	opts.JetStream = true
	opts.StoreDir = cfg.StoreDir
	opts.SyncAlways = cfg.SyncAlways
	opts.NoSigs = true
	opts.NoLog = cfg.Logger == nil
	if opts.ServerName == "" {
		opts.ServerName = "jetflow"
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("streams: listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("streams: listen port %q: %w", port, err)
		}
		opts.Host, opts.Port = host, p
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("streams: new server: %w", err)
	}
	if cfg.Logger != nil {
		s.SetLoggerV2(serverLogger{cfg.Logger}, false, false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("streams: embedded nats-server not ready after 30s")
	}
	return &Server{Server: s, tcp: !opts.DontListen}, nil
}

// Connect opens a client connection: in-process (no TCP) when possible.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.Server), nats.MaxReconnects(-1)}, opts...)
	return nats.Connect("", opts...)
}

// URL is the TCP client URL, or "" when the server does not listen.
func (s *Server) URL() string {
	if !s.tcp {
		return ""
	}
	return s.ClientURL()
}

// Stop shuts the server down and waits until it has.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// Connect dials a NATS URL with the reconnect behaviour jetflow wants: keep
// trying forever, buffer while disconnected.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, redacted{msg: "connect " + RedactURL(url) + ": " + RedactURL(err.Error()), err: err}
	}
	return nc, nil
}

// userinfo matches the user:password@ (or token@) part of the URLs in a
// text.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^@/\s,]*@`)

// RedactURL replaces the user information of every URL in s (nats://user:
// password@host, nats://token@host) with "***@", so a password never
// reaches an error message or a log.
func RedactURL(s string) string { return userinfo.ReplaceAllString(s, "${1}***@") }

// redacted is an error whose message has its secrets removed; errors.Is
// and errors.As still see the error it wraps.
type redacted struct {
	msg string
	err error
}

func (r redacted) Error() string { return r.msg }
func (r redacted) Unwrap() error { return r.err }

type serverLogger struct{ l *slog.Logger }

// Noticef logs the server's notices at Debug: its banner and startup lines
// say nothing a jetflow user acts on.
func (l serverLogger) Noticef(f string, a ...any) {
	l.l.Debug(fmt.Sprintf(f, a...), "src", "nats-server")
}
func (l serverLogger) Warnf(f string, a ...any) { l.l.Warn(fmt.Sprintf(f, a...), "src", "nats-server") }
func (l serverLogger) Fatalf(f string, a ...any) {
	l.l.Error(fmt.Sprintf(f, a...), "src", "nats-server")
}
func (l serverLogger) Errorf(f string, a ...any) {
	l.l.Error(fmt.Sprintf(f, a...), "src", "nats-server")
}
func (l serverLogger) Debugf(f string, a ...any) {
	l.l.Debug(fmt.Sprintf(f, a...), "src", "nats-server")
}
func (l serverLogger) Tracef(f string, a ...any) {}
