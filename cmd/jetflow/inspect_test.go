package main

import (
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
)

// show prints a waiting step with its last failed attempt and when the
// next one is due, or says that none failed.
func TestWaitingLine(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	w := orchestrator.WaitingStep{CommandID: 5, Step: "payment.refund", Compensation: true, SentAt: now.Add(-time.Minute)}
	if got := waitingLine(w, now); !strings.HasPrefix(got, "#5 payment.refund (compensation), sent ") || !strings.HasSuffix(got, ", no attempt failed") {
		t.Errorf("no failure yet: %q", got)
	}
	w.FailedAttempts, w.LastErrorKind, w.LastError = 3, "unavailable", "gateway\ndown"
	w.LastFailedAt, w.NextRetry = now.Add(-2*time.Second), now.Add(8*time.Second)
	got := waitingLine(w, now)
	for _, want := range []string{"attempt 3 failed at ", ": unavailable: gateway down;", "attempt 4 due ", "(in 8s)"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if got := waitingLine(w, now.Add(time.Minute)); !strings.Contains(got, "attempt 4 due since ") {
		t.Errorf("overdue retry: %q", got)
	}
}
