package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jetflow-io/jetflow/streams"
)

// ReasonClass reduces a dead-letter reason to its label value
// (streams.ReasonClass).
func ReasonClass(reason string) string { return streams.ReasonClass(reason) }

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Addr is the address the server listens on (with the port chosen when
// the address asked for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve listens on addr and serves, until ctx ends:
//
//   - /metrics: the registry of m, in the Prometheus text format;
//   - /healthz: 200 while the process is alive;
//   - /readyz: 200 when every connection given to Watch is connected and
//     every component that reported through SetReady is ready, else 503
//     with what is not.
//
// A process starts it before it connects, so it answers /healthz (and a
// 503 on /readyz) while it waits for its server.
func Serve(ctx context.Context, addr string, m *Metrics, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := m.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	log.Info("serving metrics", "addr", "http://"+s.Addr()+"/metrics")
	return s, nil
}

// Wait returns once the server has stopped (its context ended).
func (s *Server) Wait() { <-s.done }

// Watch makes readiness depend on nc being connected.
func (m *Metrics) Watch(nc *nats.Conn) {
	if m == nil || nc == nil {
		return
	}
	m.mu.Lock()
	m.conns = append(m.conns, nc)
	m.mu.Unlock()
}

// Ready returns nil when every watched connection is connected and every
// component that reported through SetReady is ready; else an error naming
// what is not. A process whose components have not reported yet is not
// ready.
func (m *Metrics) Ready() error {
	var why []string
	m.mu.Lock()
	conns := append([]*nats.Conn(nil), m.conns...)
	m.mu.Unlock()
	for _, nc := range conns {
		if nc != nil && !nc.IsConnected() {
			why = append(why, fmt.Sprintf("NATS connection %q is %s", nc.Opts.Name, status(nc.Status())))
		}
	}
	missing, any := m.notReady()
	if !any {
		why = append(why, "no component has started yet")
	}
	sort.Strings(missing)
	for _, c := range missing {
		why = append(why, c+" is not running")
	}
	if len(why) > 0 {
		return errors.New(strings.Join(why, "; "))
	}
	return nil
}

// status names a connection status in lower case.
func status(s nats.Status) string { return strings.ToLower(s.String()) }
