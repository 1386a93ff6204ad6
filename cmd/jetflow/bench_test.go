package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestBenchSmoke runs `jetflow bench --orders 200 --output json` in process
// and checks that the numbers are sane. It asserts nothing about speed.
func TestBenchSmoke(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := benchMain(context.Background(), []string{"--orders", "200", "--output", "json", "--ceiling", "2000"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	type dist struct{ N, P50, P90, P99, Max float64 }
	var r struct {
		Finished     int            `json:"finished"`
		Statuses     map[string]int `json:"statuses"`
		Unexpected   int            `json:"unexpected"`
		OrdersPerSec float64        `json:"orders_per_sec"`
		Ceiling      struct {
			AsyncMsgsPerSec float64 `json:"async_msgs_per_sec"`
			SyncMsgsPerSec  float64 `json:"sync_msgs_per_sec"`
		} `json:"ceiling"`
		Latency map[string]json.RawMessage `json:"latency_ms"`
		Writes  struct {
			PerOrder        float64 `json:"per_order"`
			HistoryPerOrder float64 `json:"history_per_order"`
			BytesPerOrder   float64 `json:"bytes_per_order"`
		} `json:"writes"`
		Resources struct {
			PeakRSSMB     float64 `json:"peak_rss_mb"`
			CPUMsPerOrder float64 `json:"cpu_ms_per_order"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	if r.Finished != 200 || r.Statuses["completed"] != 200 || r.Unexpected != 0 {
		t.Fatalf("finished %d, statuses %v, unexpected %d", r.Finished, r.Statuses, r.Unexpected)
	}
	if r.OrdersPerSec <= 0 || r.Ceiling.AsyncMsgsPerSec <= 0 || r.Ceiling.SyncMsgsPerSec <= 0 {
		t.Fatalf("orders/s %v, ceiling %+v", r.OrdersPerSec, r.Ceiling)
	}
	if r.Writes.PerOrder <= 0 || r.Writes.HistoryPerOrder <= 0 || r.Writes.BytesPerOrder <= 0 {
		t.Fatalf("writes %+v", r.Writes)
	}
	// The default case is the four steps with the pickup at creation: a
	// start, four commands, four results and the end.
	if r.Writes.HistoryPerOrder != 10 {
		t.Fatalf("%v history writes per order, want 10", r.Writes.HistoryPerOrder)
	}
	if r.Resources.PeakRSSMB <= 0 || r.Resources.CPUMsPerOrder <= 0 {
		t.Fatalf("resources %+v", r.Resources)
	}
	for _, name := range []string{"start_to_done", "publish_to_done", "step_overhead", "participant_step"} {
		var d dist
		if err := json.Unmarshal(r.Latency[name], &d); err != nil {
			t.Fatalf("latency %s: %v", name, err)
		}
		if d.N == 0 || d.P50 > d.P90 || d.P90 > d.P99 || d.P99 > d.Max {
			t.Errorf("latency %s: %+v", name, d)
		}
	}
	if !strings.Contains(stderr.String(), "bench:") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
}

func TestBenchRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--sync", "sometimes"},
		{"--output", "yaml"},
		{"--mix", "chaos"},
		{"--nats", "nats://127.0.0.1:1", "--sync", "always"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if err := benchMain(context.Background(), append(args, "--orders", "1"), &stdout, &stderr); err == nil {
			t.Errorf("jetflow bench %v: no error", args)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--orders", "0"}, "--orders 0: must be at least 1"},
		{[]string{"--concurrency", "-4"}, "--concurrency -4: must be at least 1"},
		{[]string{"--rate", "-10"}, "--rate -10: must be a finite number"},
		{[]string{"--latency", "-1ms"}, "--latency -1ms: must not be negative"},
		{[]string{"--pickup-delay", "-1s"}, "--pickup-delay -1s: must not be negative"},
		{[]string{"--timeout", "-1m"}, "--timeout -1m0s: must be positive"},
		{[]string{"--archive-retention", "-1h"}, "--archive-retention -1h0m0s: must not be negative"},
		{[]string{"--ceiling", "-2"}, "--ceiling -2: want -1"},
		{[]string{"--ceiling-streams", "0"}, "--ceiling-streams 0: want 1 to 64"},
		{[]string{"--ceiling-batch", "-1"}, "--ceiling-batch -1: want 0 (not measured) to 1000"},
	} {
		var stdout, stderr bytes.Buffer
		err := benchMain(context.Background(), append(tc.args, "--nats", "nats://127.0.0.1:1"), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("jetflow bench %v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
