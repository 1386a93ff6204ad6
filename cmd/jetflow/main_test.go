package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/streams"
)

// The CLI as a user runs it: a real `jetflow dev` process, orders published
// with a plain NATS client as `nats pub` would, and the inspection commands
// with --output json.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jetflow-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "jetflow")
	if out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func jetflow(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jetflow %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func TestDevShowListLedgerDecode(t *testing.T) {
	addr := freeAddr(t)
	url := "nats://" + addr
	dev := exec.Command(binary, "dev", "--listen", addr, "--data", t.TempDir(), "--demo", "10", "--log-level", "warn")
	devErr := &syncBuffer{}
	dev.Stderr = devErr
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Process.Kill(); _ = dev.Wait() })

	var nc *nats.Conn
	natstest.Eventually(t, 60*time.Second, func() bool {
		var err error
		nc, err = nats.Connect(url)
		return err == nil
	}, "jetflow dev did not listen on %s", addr)
	defer nc.Close()
	js, _ := jetstream.New(nc)

	// The README's order, published as `nats pub order.created '...'` does.
	order := `{"order_id":"o-1001","customer_id":"c-7","amount_cents":12999,"currency":"EUR","items":[{"sku":"sku-1","qty":2}]}`
	natstest.Eventually(t, 30*time.Second, func() bool {
		_, err := js.Publish(context.Background(), streams.OrderCreated, []byte(order))
		return err == nil
	}, "publish order")

	var show struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		History []struct {
			Seq  uint64          `json:"seq"`
			Type string          `json:"type"`
			Time time.Time       `json:"time"`
			Data json.RawMessage `json:"data"`
		} `json:"history"`
	}
	natstest.Eventually(t, 60*time.Second, func() bool {
		cmd := exec.Command(binary, "show", "o-1001", "--nats", url, "--output", "json")
		out, err := cmd.Output()
		if err != nil {
			return false
		}
		if err := json.Unmarshal(out, &show); err != nil {
			t.Fatalf("show output is not JSON: %v\n%s", err, out)
		}
		return show.Status == "completed"
	}, "o-1001 did not complete; last status %q", show.Status)
	if show.ID != "o-1001" || len(show.History) < 10 || show.History[0].Type != "workflow.started" || show.History[0].Seq == 0 || show.History[0].Time.IsZero() {
		t.Fatalf("show JSON: %+v", show)
	}
	text := string(jetflow(t, nil, "show", "o-1001", "--nats", url))
	for _, want := range []string{"status    completed", "payment.charge", "done.completed"} {
		if !strings.Contains(text, want) {
			t.Errorf("show text lacks %q:\n%s", want, text)
		}
	}

	// NATS_URL is honoured like the nats CLI does.
	cmd := exec.Command(binary, "list", "--status", "completed", "--output", "json")
	cmd.Env = append(os.Environ(), "NATS_URL="+url)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Workflows []struct {
			ID, Status, Type string
			StartedAt        time.Time `json:"started_at"`
		}
		Next string
	}
	if err := json.Unmarshal(out, &page); err != nil {
		t.Fatalf("list JSON: %v\n%s", err, out)
	}
	found := false
	for _, w := range page.Workflows {
		found = found || w.ID == "o-1001"
		if w.Status != "completed" {
			t.Errorf("--status completed listed %+v", w)
		}
	}
	if !found {
		t.Errorf("o-1001 not in list: %s", out)
	}
	// The text list pages in start order and prints the next page's cursor.
	text = string(jetflow(t, nil, "list", "--limit", "2", "--nats", url))
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "STARTED") || !strings.Contains(lines[3], "next page: --cursor ") {
		t.Fatalf("list --limit 2:\n%s", text)
	}
	cursor := lines[3][strings.LastIndex(lines[3], " ")+1:]
	if next := string(jetflow(t, nil, "list", "--limit", "2", "--cursor", cursor, "--nats", url)); strings.Contains(next, strings.Fields(lines[1])[0]+" ") {
		t.Fatalf("the next page repeats %s:\n%s", strings.Fields(lines[1])[0], next)
	}

	var effects []struct {
		OrderID     string `json:"order_id"`
		Kind        string `json:"kind"`
		AmountCents int64  `json:"amount_cents"`
	}
	if err := json.Unmarshal(jetflow(t, nil, "ledger", "payment", "--order", "o-1001", "--nats", url, "--output", "json"), &effects); err != nil {
		t.Fatal(err)
	}
	if len(effects) != 1 || effects[0].Kind != "charge" || effects[0].AmountCents != 12999 || effects[0].OrderID != "o-1001" {
		t.Fatalf("payment ledger of o-1001: %+v", effects)
	}

	// decode: a history message body, as `nats stream view --translate` passes it.
	hs, err := js.Stream(context.Background(), streams.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := hs.GetLastMsgForSubject(context.Background(), streams.StartSubject("o-1001"))
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	if err := json.Unmarshal(jetflow(t, msg.Data, "decode"), &decoded); err != nil {
		t.Fatalf("decode output: %v", err)
	}
	if decoded["type"] != "order.fulfillment" || decoded["input"].(map[string]any)["order_id"] != "o-1001" {
		t.Fatalf("decoded %v", decoded)
	}

	// A bad order is refused with a reason and does not stop anything.
	if _, err := js.Publish(context.Background(), streams.OrderCreated, []byte(`{"order_id":"bad",`)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, func() bool {
		ds, err := js.Stream(context.Background(), streams.DeadLetterStream)
		if err != nil {
			return false
		}
		m, err := ds.GetLastMsgForSubject(context.Background(), "dlq.order.created")
		return err == nil && strings.Contains(m.Header.Get("Jetflow-Reason"), "invalid JSON")
	}, "bad order not dead-lettered")

	// The progress line is printed.
	natstest.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(devErr.String(), "progress: workflows")
	}, "no progress line in: %s", devErr.String())

	// SIGTERM stops it cleanly.
	if err := dev.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- dev.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("jetflow dev exit: %v\n%s", err, devErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("jetflow dev did not stop on SIGTERM")
	}
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine of exec.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestUsageAndBadFlags(t *testing.T) {
	out, _ := exec.Command(binary).CombinedOutput()
	if !strings.Contains(string(out), "Commands:") {
		t.Fatalf("usage: %s", out)
	}
	out, err := exec.Command(binary, "list", "--output", "yaml", "--nats", "nats://127.0.0.1:1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "want text or json") {
		t.Fatalf("bad --output accepted: %s", out)
	}
}

// TestBadFlagValuesRefused: a flag value that makes no sense is refused
// with the flag and the value in the error, before any connection is made,
// instead of being replaced by a default.
func TestBadFlagValuesRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"orchestrator", "--pickup-timeout", "-1h"}, "--pickup-timeout -1h0m0s: must be positive"},
		{[]string{"orchestrator", "--ack-wait", "-1s"}, "--ack-wait -1s: must be positive"},
		{[]string{"orchestrator", "--ack-wait", "0s"}, "--ack-wait 0s: must be positive"},
		{[]string{"orchestrator", "--payment-timeout", "-5m"}, "--payment-timeout -5m0s: must be positive"},
		{[]string{"orchestrator", "--max-order-size", "-1"}, "--max-order-size -1: must be positive"},
		{[]string{"orchestrator", "--orders-max-bytes", "1000"}, "--orders-max-bytes 1000: want 0 (no bound) or at least 16777216 (16 MiB)"},
		{[]string{"orchestrator", "--signals-max-bytes", "65536"}, "--signals-max-bytes 65536: want 0 (no bound) or at least 16777216 (16 MiB)"},
		{[]string{"orchestrator", "--dead-letter-max-bytes", "-1"}, "--dead-letter-max-bytes -1: want 0 (no bound) or at least 16777216 (16 MiB)"},
		{[]string{"orchestrator", "--archive-max-bytes", "-1"}, "--archive-max-bytes -1: must not be negative"},
		{[]string{"participant", "payment", "--latency", "-1ms"}, "--latency -1ms: must not be negative"},
		{[]string{"participant", "shipping", "--pickup-delay", "-2s"}, "--pickup-delay -2s: must not be negative"},
		{[]string{"participant", "payment", "--payment-decline-rate", "1.5"}, "--payment-decline-rate 1.5: want a share from 0 to 1"},
		{[]string{"participant", "inventory", "--out-of-stock-rate", "-0.1"}, "--out-of-stock-rate -0.1: want a share from 0 to 1"},
		{[]string{"participant", "shipping", "--shipping-fail-rate", "NaN"}, "--shipping-fail-rate NaN: want a share from 0 to 1"},
		{[]string{"orchestrator", "--replicas", "0"}, "--replicas 0: want 1 to 5"},
		{[]string{"dev", "--demo", "-3"}, "--demo -3: must not be negative"},
		{[]string{"orchestrator", "--reconcile-nkey", "reconcile.nk"}, "--reconcile-nkey reconcile.nk: want --reconcile-schedule too"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			// A server nobody listens on: a refused flag never gets as far
			// as connecting.
			args := append(tc.args, "--nats", "nats://127.0.0.1:1")
			out, err := exec.Command(binary, args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("jetflow %v: err %v, output %q; want %q", args, err, out, tc.want)
			}
		})
	}
}
