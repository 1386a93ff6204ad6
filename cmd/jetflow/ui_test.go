package main

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/natstest"
)

// TestUIRefusesOpenAddressWithoutAuth: the console binds to another
// address than loopback only with --ui-auth, and says so before connecting.
func TestUIRefusesOpenAddressWithoutAuth(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ui", "--listen", "0.0.0.0:8233"}, "--listen 0.0.0.0:8233 is not a loopback address"},
		{[]string{"dev", "--ui", "0.0.0.0:8233"}, "give --ui-auth token:SECRET or --ui-auth basic:USER:PASSWORD"},
		{[]string{"ui", "--listen", "127.0.0.1:8233", "--ui-auth", "basic:ops"}, "--ui-auth basic:ops: want basic:USER:PASSWORD"},
		{[]string{"ui", "--listen", ""}, `--listen "": want an address`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append(tc.args, "--nats", "nats://127.0.0.1:1")
			out, err := exec.Command(binary, args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("jetflow %v: err %v, output %q; want %q", args, err, out, tc.want)
			}
		})
	}
}

// TestDevServesConsole: `jetflow dev --ui ADDR` serves the console, prints
// its address, and the list shows the demo orders.
func TestDevServesConsole(t *testing.T) {
	ui := freeAddr(t)
	// At warn, as make run runs it: the address is on a line of its own.
	// No reconciliation schedule: its pending run would count as a workflow.
	dev := exec.Command(binary, "dev", "--listen", freeAddr(t), "--ui", ui, "--data", t.TempDir(), "--demo", "3", "--log-level", "warn", "--metrics", "", "--reconcile-schedule", "")
	devErr := &syncBuffer{}
	dev.Stderr = devErr
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Process.Kill(); _ = dev.Wait() })
	var page string
	natstest.Eventually(t, time.Minute, func() bool {
		resp, err := http.Get("http://" + ui + "/workflows")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
		return resp.StatusCode == 200 && strings.Contains(page, `data-count="all">3<`)
	}, "console on %s does not list the 3 demo orders; jetflow dev said:\n%s", ui, devErr)
	if !strings.Contains(devErr.String(), "jetflow dev: web console on http://"+ui+"/") {
		t.Errorf("jetflow dev did not print the console's address http://%s/:\n%s", ui, devErr.String())
	}
}
