package streams

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	// Logger receives the server's log at Info and above. Default: discarded.
	Logger *slog.Logger
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
	opts := &server.Options{
		ServerName: cfg.Name,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
	}
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
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	return nc, nil
}

type serverLogger struct{ l *slog.Logger }

func (l serverLogger) Noticef(f string, a ...any) {
	l.l.Info(fmt.Sprintf(f, a...), "src", "nats-server")
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
