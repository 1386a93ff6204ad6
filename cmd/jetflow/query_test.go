package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/internal/natstest"
	"github.com/jetflow-io/jetflow/streams"
)

// TestQueryAndUpdateCommands: `jetflow query` and `jetflow update` reach an
// orchestrator of `jetflow dev`, which replays the order's history and
// answers (the reference order workflow sets no handler, so the answer
// says which it has); bad arguments are refused before connecting.
func TestQueryAndUpdateCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"query", "o-1", "status", "--timeout", "-1s"}, "--timeout -1s: must be positive"},
		{[]string{"update", "o-1", "add", "{bad"}, "argument is not valid JSON: {bad"},
		{[]string{"query", "o-1"}, "usage: jetflow query WORKFLOW_ID NAME [JSON]"},
		{[]string{"query", "o 1", "status"}, `invalid workflow id "o 1"`},
	} {
		out, err := exec.Command(binary, append(tc.args, "--nats", "nats://127.0.0.1:1")...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("jetflow %v: err %v, output %q; want %q", tc.args, err, out, tc.want)
		}
	}

	addr := freeAddr(t)
	url := "nats://" + addr
	dev := exec.Command(binary, "dev", "--listen", addr, "--data", t.TempDir(), "--log-level", "warn")
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
	order := `{"order_id":"o-7","customer_id":"c-7","amount_cents":100,"currency":"EUR","items":[{"sku":"sku-1","qty":1}]}`
	natstest.Eventually(t, 30*time.Second, func() bool {
		_, err := js.Publish(context.Background(), streams.OrderCreated, []byte(order))
		return err == nil
	}, "publish order")

	var out []byte
	natstest.Eventually(t, 60*time.Second, func() bool {
		out, _ = exec.Command(binary, "query", "o-7", "status", "--nats", url, "--timeout", "5s").CombinedOutput()
		return strings.Contains(string(out), `query "status" is not set by the workflow (it has: none)`)
	}, "jetflow query o-7 status: no answer naming the handlers")
	out, err := exec.Command(binary, "update", "o-7", "add", "5", "--nats", url, "--timeout", "10s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `update "add" is not set by the workflow (it has: none)`) {
		t.Fatalf("jetflow update: err %v, output %s", err, out)
	}
}
