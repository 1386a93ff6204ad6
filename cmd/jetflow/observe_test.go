package main

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/streams"
)

// httpGet returns the status and body of url, or 0 when nothing answers.
func httpGet(url string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEngineWaitsForItsServer starts `jetflow orchestrator` and `jetflow
// participant payment` with --metrics before their nats-server exists:
// they keep running, alive (/healthz) and not ready (/readyz 503); once
// the server starts they become ready and serve their metrics; through a
// server restart they stay up and become ready again. Neither exits.
func TestEngineWaitsForItsServer(t *testing.T) {
	natsAddr, dir := freeAddr(t), t.TempDir()
	url := "nats://" + natsAddr
	type proc struct {
		cmd     *exec.Cmd
		metrics string
		out     *syncBuffer
		exited  chan error
	}
	start := func(args ...string) *proc {
		p := &proc{metrics: "http://" + freeAddr(t), out: &syncBuffer{}, exited: make(chan error, 1)}
		args = append(args, "--nats", url, "--metrics", strings.TrimPrefix(p.metrics, "http://"), "--log-level", "info")
		p.cmd = exec.Command(binary, args...)
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.exited <- p.cmd.Wait() }()
		t.Cleanup(func() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(20 * time.Second):
				_ = p.cmd.Process.Kill()
			}
		})
		return p
	}
	procs := []*proc{start("orchestrator"), start("participant", "payment")}
	alive := func(p *proc) {
		t.Helper()
		select {
		case err := <-p.exited:
			t.Fatalf("%s exited (%v) while its server was away; want it to wait:\n%s", p.cmd.Args[1], err, p.out.String())
		default:
		}
	}
	for _, p := range procs {
		natstest.Eventually(t, 20*time.Second, func() bool { code, _ := httpGet(p.metrics + "/healthz"); return code == 200 },
			"%s: /healthz never answered 200:\n%s", p.cmd.Args[1], p.out.String())
		if code, body := httpGet(p.metrics + "/readyz"); code != 503 {
			t.Errorf("%s: /readyz with no server: %d %q, want 503", p.cmd.Args[1], code, body)
		}
		alive(p)
	}
	ready := func(what string) {
		t.Helper()
		for _, p := range procs {
			natstest.Eventually(t, 60*time.Second, func() bool { code, _ := httpGet(p.metrics + "/readyz"); return code == 200 },
				"%s: not ready %s:\n%s", p.cmd.Args[1], what, p.out.String())
			alive(p)
		}
	}
	srv, err := streams.StartServer(streams.ServerConfig{Listen: natsAddr, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ready("after its server started")
	if _, body := httpGet(procs[0].metrics + "/metrics"); !strings.Contains(body, `jetflow_ready{component="orchestrator"} 1`) {
		t.Errorf("orchestrator /metrics lacks jetflow_ready{component=\"orchestrator\"} 1")
	}
	if _, body := httpGet(procs[1].metrics + "/metrics"); !strings.Contains(body, `jetflow_ready{component="participant-payment"} 1`) {
		t.Errorf("participant /metrics lacks jetflow_ready{component=\"participant-payment\"} 1")
	}

	srv.Stop()
	for _, p := range procs {
		natstest.Eventually(t, 20*time.Second, func() bool { code, _ := httpGet(p.metrics + "/readyz"); return code == 503 },
			"%s: still ready with the server stopped", p.cmd.Args[1])
	}
	srv, err = streams.StartServer(streams.ServerConfig{Listen: natsAddr, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ready("after its server restarted")
	// The client's reconnect callback, which logs the line, runs on its
	// own goroutine: it can come a moment after readiness.
	for _, p := range procs {
		natstest.Eventually(t, 20*time.Second, func() bool { return strings.Contains(p.out.String(), "reconnected") },
			"%s logged no reconnection:\n%s", p.cmd.Args[1], p.out.String())
	}
}
